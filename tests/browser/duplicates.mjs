// The duplicates view in Debian's headless Chromium: it lists the planted re-encode with its
// original (the original marked to keep) and keeps the planted burst in a group of its own;
// the address holds the view, so a reload shows it again.
// Usage: node duplicates.mjs BASE_URL
import { launch } from "./chromium.mjs";

const [base] = process.argv.slice(2);
const { browser, fail } = await launch();
const groups = (page) => page.$$eval(".group", (sections) => sections.map((s) => ({
  kind: s.dataset.kind,
  names: [...s.querySelectorAll(".tile")].map((t) => t.dataset.path.split("/").pop()).sort(),
  keep: s.querySelector(".tile.keep")?.dataset.path.split("/").pop(),
})));
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/");
  await page.click("#show-duplicates");
  await page.waitForSelector(".group .tile img", { timeout: 10000 });
  for (const attempt of ["after the click", "after a reload"]) {
    const shown = await groups(page);
    const near = shown.find((g) => g.kind === "near");
    const burst = shown.find((g) => g.kind === "burst");
    if (!near || near.names.join() !== "astronaut.jpg,astronaut_small.jpg" || near.keep !== "astronaut.jpg") await fail(`${attempt}: near group ${JSON.stringify(near)}`);
    if (!burst || burst.names.join() !== "burst_1.jpg,burst_2.jpg") await fail(`${attempt}: burst group ${JSON.stringify(burst)}`);
    if (shown.some((g) => g.kind !== "burst" && g.names.some((n) => n.startsWith("burst")))) await fail(`${attempt}: a burst shot is listed as a duplicate: ${JSON.stringify(shown)}`);
    if (!page.url().includes("?duplicates")) await fail(`the address does not hold the view: ${page.url()}`);
    await page.reload();
    await page.waitForSelector(".group .tile img", { timeout: 10000 });
  }
  console.log("duplicates view test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
