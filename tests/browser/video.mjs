// A video's moments in Debian's headless Chromium: a search that finds a video shows one tile,
// marked with the moment it found; its viewer plays the video from that moment, and links the
// video's other moments, which move the player there.
// With `unplayable` (a video this browser cannot play): the viewer keeps the moment's frame and
// says why, instead of a black player.
// Usage: node video.mjs BASE_URL QUERY [unplayable]
import { launch, resultsPage } from "./chromium.mjs";

const [base, query, mode] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await resultsPage(browser, fail, base, query);
  const tiles = await page.$$eval("#grid .tile", (all) => all.map((t) => ({
    id: t.dataset.id,
    moment: t.querySelector(".moment")?.textContent,
    also: t.querySelector(".also")?.textContent,
  })));
  if (tiles.length !== 1) await fail(`the video has ${tiles.length} tiles: ${JSON.stringify(tiles)}`);
  const marked = /^\u25B6 0:0(\d)$/.exec(tiles[0].moment || "");
  if (!marked) await fail(`the tile is not marked with its moment: ${JSON.stringify(tiles[0])}`);
  if (tiles[0].also) await fail(`the video's own moments are shown as other files: ${tiles[0].also}`);
  const seconds = Number(marked[1]);

  await page.click("#grid .tile");
  if (mode === "unplayable") {
    await page.waitForSelector("#unplayable:not([hidden])", { timeout: 10000 });
    const still = () => { const img = document.querySelector("#large"); return !img.hidden && img.src.endsWith("/preview") && img.complete && img.naturalWidth > 0; };
    await page.waitForFunction(still, null, { timeout: 10000 }).catch(() => fail("the moment's frame is not shown in place of the player"));
    console.log("video test (unplayable) passed");
    await browser.close();
    process.exit(0);
  }
  // The player starts at the moment (media fragment #t=), the frame shown until it plays.
  const position = () => page.$eval("#clip", (v) => v.readyState >= 1 && !v.hidden ? v.currentTime : null);
  const playsFrom = async (wanted, what) => {
    for (let i = 0; i < 100; i++) {
      const at = await position();
      if (at != null && Math.abs(at - wanted) < 0.5) return;
      await page.waitForTimeout(100);
    }
    await fail(`${what}: the player is at ${await position()}, not ${wanted} s`);
  };
  await playsFrom(seconds, "opened");
  if (await page.$eval("#large", (img) => !img.hidden)) await fail("the still picture shows beside the player");

  // The other moments move the player.
  const links = page.locator("#viewer[open] #also a");
  await links.first().waitFor({ timeout: 10000 });
  const times = await links.allTextContents();
  if (times.length !== 2 || !times.every((t) => /^0:0\d$/.test(t))) await fail(`the other moments are linked as ${times}`);
  // Where the click's seek lands, read when it lands: the player plays on from there, and on a
  // busy machine a poll can come seconds later. Every landing is kept: the opening's own seek
  // can land after the listener is in place, and was once taken for the click's.
  await page.$eval("#clip", (v) => { window.landings = []; v.addEventListener("seeked", () => { window.landings.push(v.currentTime); }); });
  await links.nth(1).click();
  const wanted = Number(times[1].slice(2));
  await page.waitForFunction((w) => window.landings.some((t) => Math.abs(t - w) < 0.5), wanted, { timeout: 10000 })
    .catch(async () => fail(`after a click on ${times[1]}: the player went to ${await page.evaluate(() => window.landings)}, not ${wanted} s`));
  console.log("video test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
