// One shot, one tile, in Debian's headless Chromium: a search that finds a RAW + JPEG pair (here
// a JPEG and a PNG of one name) shows one tile marked with the other file's extension; its
// viewer links that file's original.
// Usage: node stacks.mjs BASE_URL QUERY SHOT_NAME OTHER_EXTENSION
import { launch, resultsPage } from "./chromium.mjs";

const [base, query, shot, otherExtension] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await resultsPage(browser, fail, base, query);
  const tiles = await page.$$eval("#grid .tile", (all) => all.map((t) => ({
    name: t.dataset.path.split("/").pop(),
    also: t.querySelector(".also")?.textContent,
  })));
  const ofShot = tiles.filter((t) => t.name.startsWith(shot + "."));
  if (ofShot.length !== 1) await fail(`the shot ${shot} has ${ofShot.length} tiles: ${JSON.stringify(tiles)}`);
  if (ofShot[0].also !== `+${otherExtension}`) await fail(`its tile is marked ${ofShot[0].also}, not +${otherExtension}`);
  if (tiles.some((t) => t !== ofShot[0] && t.also)) await fail(`another tile is marked: ${JSON.stringify(tiles)}`);

  await page.click(`#grid .tile[data-path$="/${ofShot[0].name}"]`);
  const link = page.locator("#viewer[open] #also a");
  await link.waitFor({ timeout: 10000 });
  const href = await link.getAttribute("href");
  if (!(await link.textContent()).toUpperCase().endsWith(`.${otherExtension}`)) await fail(`the viewer links ${await link.textContent()}`);
  const original = await page.evaluate(async (url) => (await fetch(url)).status, href);
  if (original !== 200) await fail(`the other file's original (${href}) answered ${original}`);
  console.log("stacks test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
