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
