// The header on a phone's screen, over a library whose pictures carry many long keywords: it
// takes at most half the screen, the frequent keywords sit in one row with each chip cut to a
// width (its tooltip holding it whole), and the first result is in view and opens.
// Usage: node header.mjs BASE_URL LONG_KEYWORD
import { launch } from "./chromium.mjs";

const [base, longKeyword] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/?q=coffee");
  await page.waitForSelector("#grid .tile img", { timeout: 10000 });
  await page.waitForSelector("#keyword-chips .keyword", { timeout: 10000 });
  const header = await page.$eval("header", (h) => h.getBoundingClientRect().height);
  if (header > 844 / 2 + 1) await fail(`the header is ${header}px tall on an 844px screen`);
  const rows = await page.$$eval("#keyword-chips .keyword", (chips) => new Set(chips.map((c) => c.getBoundingClientRect().top)).size);
  if (rows !== 1) await fail(`the frequent keywords take ${rows} rows`);
  const chip = await page.$eval("#keyword-chips .keyword", (c) => ({ width: c.getBoundingClientRect().width, title: c.title }));
  if (chip.width > 390) await fail(`a keyword chip is ${chip.width}px wide`);
  if (!chip.title.startsWith(longKeyword.slice(0, 40))) await fail(`the chip's tooltip is ${JSON.stringify(chip.title)}`);
  const tile = await page.$eval("#grid .tile", (t) => t.getBoundingClientRect().top);
  if (tile > 844 - 50) await fail(`the first result starts at ${tile}px, below the screen`);
  await page.click("#grid .tile");
  await page.waitForSelector("#viewer[open]", { timeout: 10000 });
  console.log("header test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
