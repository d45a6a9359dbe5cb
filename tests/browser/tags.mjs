// Tag chips in Debian's headless Chromium: the frequent tags show under the filters; a chip
// lists exactly the pictures with that tag (the address holds the query); a picture's viewer
// shows its tags as chips that search too.
// Usage: node tags.mjs BASE_URL TAG EXPECTED_PATHS_JSON
import { launch } from "./chromium.mjs";

const [base, tag, expectedJson] = process.argv.slice(2);
const expected = JSON.parse(expectedJson).sort();
const { browser, fail } = await launch();
const shownPaths = (page) => page.$$eval("#grid .tile", (tiles) => tiles.map((t) => t.dataset.path).sort());
const filter = tag.includes(" ") ? `tag:"${tag}"` : `tag:${tag}`;
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/");
  const chip = page.locator(`#tag-chips .tag[data-tag="${tag}"]`);
  await chip.waitFor({ timeout: 10000 });
  await chip.click();
  await page.waitForFunction((n) => document.querySelectorAll("#grid .tile").length === n, expected.length, { timeout: 10000 });
  const shown = await shownPaths(page);
  if (JSON.stringify(shown) !== JSON.stringify(expected)) await fail(`chip ${tag}: shown ${JSON.stringify(shown)}, expected ${expectedJson}`);
  if (await page.inputValue("#q") !== filter) await fail(`the search box says ${await page.inputValue("#q")}, not ${filter}`);
  if (new URL(page.url()).searchParams.get("q") !== filter) await fail(`the address does not hold the query: ${page.url()}`);

  // The viewer's chips: the picture's tags, and a click on one searches it. First a free-text
  // search, so that the grid and the box no longer hold the tag (clearing the box instead
  // would empty the grid under the click). The grid is emptied in the same task that changes
  // the address, so a tagged tile seen after the address changed is one of the new hits.
  const other = "a picture";
  await page.fill("#q", other);
  await page.waitForFunction(([text, path]) => new URL(location.href).searchParams.get("q") === text
    && [...document.querySelectorAll("#grid .tile")].some((t) => t.dataset.path === path), [other, expected[0]], { timeout: 10000 });
  await page.click(`#grid .tile[data-path=${JSON.stringify(expected[0])}]`);
  await page.waitForSelector("#viewer[open] #tags .tag", { timeout: 10000 });
  const viewerTags = await page.$$eval("#tags .tag", (chips) => chips.map((c) => c.dataset.tag));
  if (!viewerTags.includes(tag)) await fail(`the viewer's tags ${JSON.stringify(viewerTags)} lack ${tag}`);
  await page.click(`#tags .tag[data-tag="${tag}"]`);
  await page.waitForFunction(() => !document.querySelector("#viewer").open, null, { timeout: 10000 });
  if (await page.inputValue("#q") !== filter) await fail(`after the viewer's chip the search box says ${await page.inputValue("#q")}, not ${filter}`);
  await page.waitForFunction(([text, n]) => new URL(location.href).searchParams.get("q") === text
    && document.querySelectorAll("#grid .tile").length === n, [filter, expected.length], { timeout: 10000 });
  const shownAfter = await shownPaths(page);
  if (JSON.stringify(shownAfter) !== JSON.stringify(expected)) await fail(`viewer chip ${tag}: shown ${JSON.stringify(shownAfter)}, expected ${expectedJson}`);
  await page.screenshot({ path: process.env.SCREENSHOT || "/tmp/imgsearch-tags.png" });
  console.log("tag chips test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
