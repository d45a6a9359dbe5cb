// Drives the imgsearch web UI in Debian's headless Chromium (no browser download):
// type a query and see result tiles (asked for in the browser's language); a composed query shows how it was read; pick three
// pictures for "more like these"; the address reflects the search; upload a picture (an
// iPhone's HEIC) and see its original first; open a result (its preview shows, the original is linked) and ask for similar ones;
// open a photo with a GPS position: it names its city, and lists those taken near it.
// Usage: node ui.mjs BASE_URL UPLOAD_FILE EXPECTED_PATH_SUFFIX PLACED_NAME ITS_CITY NEAR_NAMES(comma-separated)
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { checkIcon, launch } from "./chromium.mjs";

const [base, upload, expected, placed, placeName, nearNames] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  // Phone width, a German browser.
  const page = await browser.newPage({ viewport: { width: 390, height: 800 }, locale: "de-DE" });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/");
  // The upload button is a drawn icon (an emoji showed as a missing-glyph box without an emoji font).
  const icon = await page.locator(".upload svg").boundingBox();
  if (!icon || icon.width < 16 || icon.height < 16) await fail(`upload icon not drawn: ${JSON.stringify(icon)}`);
  await checkIcon(page, fail);
  if (process.env.IMGSEARCH_SCREENSHOT) await page.screenshot({ path: process.env.IMGSEARCH_SCREENSHOT });
  await page.fill("#q", "a photo of a cat");
  await page.waitForSelector(".tile img", { timeout: 10000 });
  const tiles = await page.$$eval(".tile", (els) => els.map((e) => e.dataset.path));
  if (tiles.length < 2) await fail(`expected result tiles, got ${tiles.length}`);
  // Queries go with the browser's language, for models that read texts by it (NLLB-CLIP).
  const searches = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name)
    .filter((name) => name.includes("/api/search?")));
  if (!searches.length || !searches.every((url) => url.includes("lang=de-DE"))) await fail(`searches without the browser's language: ${searches}`);
  if (!page.url().includes("q=a+photo+of+a+cat") && !page.url().includes("q=a%20photo%20of%20a%20cat")) await fail(`address does not reflect the search: ${page.url()}`);
  await page.waitForFunction(() => {
    const img = document.querySelector(".tile img");
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 10000 }).catch(() => fail("thumbnail did not load"));

  // A composed, filtered query: the page says how it read it.
  await page.fill("#q", '2:a photo of a cat -"a dog" type:png');
  await page.waitForFunction(() => document.querySelector("#understood")?.textContent.includes('away from "a dog"'), null, { timeout: 10000 })
    .catch(async () => fail(`the reading of a composed query is not shown: ${JSON.stringify(await page.textContent("#understood"))}`));
  const reading = await page.textContent("#understood");
  if (!reading.includes('"a photo of a cat" ×2') || !reading.includes("type:png")) await fail(`reading: ${reading}`);
  await page.waitForFunction(() => [...document.querySelectorAll(".tile")].length > 0
    && [...document.querySelectorAll(".tile")].every((t) => t.dataset.path.endsWith(".png")), null, { timeout: 10000 })
    .catch(() => fail("type:png did not filter the composed query's results"));
  // A date in words is read out of the text.
  await page.fill("#q", "a photo of a cat, July 2023");
  await page.waitForFunction(() => document.querySelector("#understood")?.textContent.includes("taken July 2023"), null, { timeout: 10000 })
    .catch(async () => fail(`the date of "a photo of a cat, July 2023" is not shown: ${JSON.stringify(await page.textContent("#understood"))}`));
  await page.fill("#q", "a photo of a cat");
  await page.waitForFunction(() => document.querySelector("#understood")?.textContent === "", null, { timeout: 10000 })
    .catch(() => fail("a plain query still shows a reading"));

  // Reload from the address: same search comes back.
  await page.goto(page.url());
  await page.waitForSelector(".tile");
  if ((await page.inputValue("#q")) !== "a photo of a cat") await fail("reloaded page lost the query");

  // Reverse search with the file picker, handed over as a browser hands a HEIC or RAW file whose
  // type it does not know (playwright would otherwise give it one from its name).
  const file = { name: basename(upload), mimeType: "application/octet-stream", buffer: readFileSync(upload) };
  await page.setInputFiles("#file", file);
  await page.waitForFunction((suffix) => document.querySelector(".tile")?.dataset.path.endsWith(suffix), expected, { timeout: 10000 });

  // Open the first result, then "Similar images".
  await page.click(".tile");
  await page.waitForSelector("#viewer[open] #meta dt");
  // The viewer shows the picture's preview (the file is a TIFF, which Chromium cannot show) and
  // links the original file.
  await page.waitForFunction(() => {
    const img = document.querySelector("#large");
    return img.complete && img.naturalWidth > 0;
  }, null, { timeout: 10000 }).catch(() => fail("the viewer's picture did not load"));
  const original = await page.getAttribute("#original", "href");
  if (!/^\/api\/images\/\d+\/file$/.test(original || "")) await fail(`link to the original: ${original}`);
  await page.click("#similar");
  await page.waitForFunction(() => location.search.includes("similar="));
  await page.waitForSelector(".tile");

  // Pick three pictures, ask for more like these: the list starts with them, the address holds
  // them, and a reload brings the same search back.
  await page.keyboard.press("Escape");
  await page.fill("#q", "a photo of a cat");
  // The search starts (address, fresh grid) a moment after typing: pick from its tiles only.
  await page.waitForFunction(() => location.search.startsWith("?q=")
    && document.querySelectorAll(".tile .pick").length >= 4, null, { timeout: 10000 });
  const picks = await page.$$(".tile .pick");
  const pickedIds = [];
  for (const pick of picks.slice(0, 3)) {
    await pick.click();
    pickedIds.push(Number(await pick.evaluate((p) => p.closest(".tile").dataset.id)));
  }
  if ((await page.textContent("#selected-count")) !== "3 picked") await fail(`selection: ${await page.textContent("#selected-count")}`);
  await page.click("#like-these");
  await page.waitForFunction(() => location.search.includes("like="), null, { timeout: 10000 });
  const likeUrl = page.url();
  const heads = async () => page.$$eval("#examples img", (imgs) => imgs.map((i) => Number(i.dataset.id)));
  await page.waitForSelector(".tile");
  if (JSON.stringify(await heads()) !== JSON.stringify(pickedIds)) await fail(`list head ${await heads()} is not the picks ${pickedIds}`);
  if (!(await page.isHidden("#selection"))) await fail("the selection bar stayed after searching");
  // The text in the box joins the pictures ("like these, but at night").
  const combined = 'like 3 pictures and "a photo of a cat"';
  await page.waitForFunction((text) => document.querySelector("#understood")?.textContent === text, combined, { timeout: 10000 })
    .catch(async () => fail(`a like search says ${JSON.stringify(await page.textContent("#understood"))}`));
  await page.goto(likeUrl);
  await page.waitForSelector(".tile");
  if (JSON.stringify(await heads()) !== JSON.stringify(pickedIds)) await fail(`after reload the list head is ${await heads()}`);
  if ((await page.textContent("#understood")) !== combined) await fail(`after reload: ${await page.textContent("#understood")}`);
  // An address cut after a comma still means the pictures it names, not also picture 0.
  await page.goto(`${base}/?like=${pickedIds[0]},`);
  await page.waitForSelector(".tile");
  if (JSON.stringify(await heads()) !== JSON.stringify([pickedIds[0]])) await fail(`?like=${pickedIds[0]}, starts with ${await heads()}`);
  // An address naming no picture says so, and searches nothing.
  for (const address of ["/?similar=abc", "/?like=3,x", "/?similar="]) {
    await page.goto(base + address);
    await page.waitForFunction(() => document.querySelector("#status.error")?.textContent.includes("names no picture"), null, { timeout: 10000 })
      .catch(async () => fail(`${address} says ${JSON.stringify(await page.textContent("#status"))}`));
    if ((await page.$$(".tile")).length) await fail(`${address} shows results`);
  }

  // A photo with a GPS position: "Taken near here" lists the photos within a kilometre of it.
  await page.keyboard.press("Escape");
  await page.fill("#q", `name:${placed}`);
  await page.waitForFunction((name) => location.search.includes("name%3A")
    && document.querySelector(".tile")?.dataset.path.endsWith(name), placed, { timeout: 10000 });
  await page.click(".tile");
  await page.waitForSelector("#viewer[open] #nearby:not([hidden])", { timeout: 10000 })
    .catch(() => fail(`no "Taken near here" for ${placed}, which has a GPS position`));
  const details = await page.textContent("#meta");
  if (!details.includes(placeName)) await fail(`the viewer does not name the city: ${details}`);
  await page.click("#nearby");
  const near = nearNames.split(",").sort();
  await page.waitForFunction((names) => {
    const shown = [...document.querySelectorAll(".tile")].map((t) => t.dataset.path.split("/").pop()).sort();
    return location.search.includes("near%3A") && JSON.stringify(shown) === JSON.stringify(names);
  }, near, { timeout: 10000 }).catch(async () => fail(`near ${placed}: ${await page.$$eval(".tile", (els) => els.map((e) => e.dataset.path))}, not ${near}`));
  await page.waitForFunction(() => document.querySelector("#understood")?.textContent.includes("near:"), null, { timeout: 10000 })
    .catch(async () => fail(`the near: filter is not shown: ${JSON.stringify(await page.textContent("#understood"))}`));
  // A photo without a position has no such button.
  await page.fill("#q", "name:coffee");
  await page.waitForFunction(() => location.search.includes("name%3Acoffee")
    && document.querySelector(".tile")?.dataset.path.endsWith("coffee.png"), null, { timeout: 10000 });
  await page.click(".tile");
  await page.waitForSelector("#viewer[open] #meta dt");
  if (!(await page.isHidden("#nearby"))) await fail("a photo without a GPS position offers photos near it");

  // A search made while another's answer is still on its way replaces it: the slow answer
  // comes after and is dropped (the new search used to be dropped instead).
  await page.keyboard.press("Escape");
  await page.route("**/api/search?*", async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await route.continue();
  }, { times: 1 });
  await page.fill("#q", "name:coffee");
  await page.waitForRequest("**/api/search?*");
  await page.fill("#q", `name:${placed}`);
  await page.press("#q", "Enter");
  const onlyPlaced = (name) => {
    const shown = [...document.querySelectorAll(".tile")].map((t) => t.dataset.path);
    return shown.length === 1 && shown[0].endsWith(name);
  };
  await page.waitForFunction(onlyPlaced, placed, { timeout: 10000 })
    .catch(async () => fail(`the second search was not shown: ${await page.$$eval(".tile", (els) => els.map((e) => e.dataset.path))}`));
  await page.waitForTimeout(2000);
  if (!(await page.evaluate(onlyPlaced, placed))) {
    await fail(`the first, slower answer replaced the second search's: ${await page.$$eval(".tile", (els) => els.map((e) => e.dataset.path))}`);
  }

  // Keyboard: "/" focuses the search box.
  await page.keyboard.press("Escape");
  await page.evaluate(() => document.activeElement?.blur());
  await page.keyboard.press("/");
  if (!(await page.evaluate(() => document.activeElement?.id === "q"))) await fail("'/' did not focus the search box");
  console.log(JSON.stringify({ ok: true, tiles: tiles.length }));
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
