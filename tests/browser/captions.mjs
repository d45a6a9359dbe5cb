// Captions and keywords in Debian's headless Chromium: a text query finds the picture described
// with its word first, its tile shows its stars, and its tooltip gives the title and why; the viewer shows the
// title and description, and the keywords as chips; a keyword chip, there or among the library's
// frequent keywords, lists the pictures with that keyword.
// Usage: node captions.mjs BASE_URL QUERY PATH TITLE KEYWORD
import { launch } from "./chromium.mjs";

const [base, query, path, title, keyword] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/?q=" + encodeURIComponent(query));
  await page.waitForSelector("#grid .tile", { timeout: 10000 });
  const first = await page.$eval("#grid .tile", (t) => ({ path: t.dataset.path, title: t.title, alt: t.querySelector("img").alt }));
  if (first.path !== path) await fail(`the first tile for ${query} is ${first.path}, not ${path}`);
  if (!first.title.includes(title) || !first.title.includes(`described with: ${query}`)) await fail(`its tooltip says ${JSON.stringify(first.title)}`);
  if (first.alt !== title) await fail(`its picture's text is ${JSON.stringify(first.alt)}, not its title`);
  const stars = await page.$eval("#grid .tile", (t) => t.querySelector(".rating")?.textContent);
  if (stars !== "\u2605".repeat(5)) await fail(`its stars read ${JSON.stringify(stars)}, not five`);

  await page.click("#grid .tile");
  await page.waitForSelector("#viewer[open] #keywords .keyword", { timeout: 10000 });
  const meta = await page.$$eval("#meta dt", (dts) => Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));
  if (meta.title !== title) await fail(`the viewer's title is ${JSON.stringify(meta.title)}: ${JSON.stringify(meta)}`);
  if (!meta.description) await fail(`the viewer shows no description: ${JSON.stringify(meta)}`);
  if ("keywords" in meta) await fail("the keywords are chips, not a line of the details");
  const chips = await page.$$eval("#keywords .keyword", (chips) => chips.map((c) => c.textContent));
  if (!chips.includes(keyword)) await fail(`the viewer's keywords ${JSON.stringify(chips)} lack ${keyword}`);

  const filter = keyword.includes(" ") ? `keyword:"${keyword}"` : `keyword:${keyword}`;
  const listsThePicture = async () => {
    if (await page.inputValue("#q") !== filter) await fail(`after the chip the search box says ${await page.inputValue("#q")}, not ${filter}`);
    await page.waitForFunction(([text, expected]) => new URL(location.href).searchParams.get("q") === text
      && [...document.querySelectorAll("#grid .tile")].map((t) => t.dataset.path).join() === expected, [filter, path], { timeout: 10000 });
  };
  await page.click(`#keywords .keyword >> text="${keyword}"`);
  await page.waitForFunction(() => !document.querySelector("#viewer").open, null, { timeout: 10000 });
  await listsThePicture();

  // The frequent keywords (people's names among them) sit under the search box, with counts.
  await page.goto(base + "/");
  const frequent = page.locator("#keyword-chips .keyword", { hasText: keyword });
  await frequent.waitFor({ timeout: 10000 });
  if (await frequent.textContent() !== `${keyword} 1`) await fail(`the frequent keyword chip reads ${await frequent.textContent()}`);
  await frequent.click();
  await listsThePicture();
  await page.screenshot({ path: process.env.SCREENSHOT || "/tmp/imgsearch-captions.png" });
  console.log("captions test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
