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

// The page's icon (so that a tab or bookmark shows imgsearch, and no request for it fails).
export async function checkIcon(page, fail) {
  const icon = await page.evaluate(async () => {
    const href = document.querySelector("link[rel=icon]")?.href;
    if (!href) return null;
    const response = await fetch(href);
    return { status: response.status, type: response.headers.get("content-type") };
  });
  if (icon?.status !== 200 || !icon.type.startsWith("image/")) await fail(`the page's icon: ${JSON.stringify(icon)}`);
}
