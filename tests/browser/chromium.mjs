// Debian's headless Chromium for the UI tests (no browser download), with the flags this
// machine's closed network needs, and a `fail` that reports and exits.
import { chromium } from "playwright-core";

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const fail = async (msg) => { console.error(msg); await browser.close(); process.exit(1); };
  return { browser, fail };
}

// A page of results for `query`, its tiles shown, failing on any error the page raises.
export async function resultsPage(browser, fail, base, query) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(`${base}/?q=${encodeURIComponent(query)}`);
  await page.waitForSelector("#grid .tile img", { timeout: 10000 });
  return page;
}
