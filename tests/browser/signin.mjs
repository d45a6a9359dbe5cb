// Sign-in in Debian's headless Chromium: the UI sends a stranger to the sign-in page, a wrong
// password is refused on the page, the right one leads to the search, and after signing out the
// back button does not show results again.
// Usage: node signin.mjs BASE_URL USER PASSWORD
import { checkIcon, launch } from "./chromium.mjs";

const [base, user, password] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 800 } });
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(base + "/");
  if (!page.url().endsWith("/login")) await fail(`not sent to the sign-in page: ${page.url()}`);
  await checkIcon(page, fail); // reachable before signing in

  await page.fill("#user", user);
  await page.fill("#password", "not the password");
  await page.click("button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#status")?.textContent.includes("wrong"), null, { timeout: 10000 })
    .catch(async () => fail(`a wrong password is not reported: ${await page.textContent("#status")}`));

  await page.fill("#password", password);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/", { timeout: 10000 }).catch(() => fail(`not signed in: ${page.url()}`));
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "imgsearch_session");
  if (!session || !session.httpOnly || session.sameSite !== "Strict") await fail(`session cookie: ${JSON.stringify(session)}`);

  await page.fill("#q", "a photo of a cat");
  await page.waitForSelector(".tile img", { timeout: 10000 });
  await page.waitForSelector("#sign-out:not([hidden])", { timeout: 10000 });
  if (!(await page.textContent("#sign-out")).includes(user)) await fail("the sign-out button does not say who is signed in");

  // A second results page in the history, so that "back" after signing out has one to show.
  await page.goto(base + "/?q=a+photo");
  await page.waitForSelector(".tile img", { timeout: 10000 });
  await page.waitForSelector("#sign-out:not([hidden])", { timeout: 10000 });
  await page.click("#sign-out");
  await page.waitForURL(base + "/login", { timeout: 10000 }).catch(() => fail(`not signed out: ${page.url()}`));
  await page.goBack();
  if (!page.url().startsWith(base)) await fail(`"back" left the site: ${page.url()}`);
  await page.waitForTimeout(1000);
  if ((await page.$$(".tile")).length > 0) await fail(`the back button shows results after signing out: ${page.url()}`);
  const answer = await page.evaluate(async (url) => (await fetch(url)).status, base + "/api/search?q=cat");
  if (answer !== 401) await fail(`the old session still answers: ${answer}`);
  console.log("sign-in test passed");
  await browser.close();
} catch (e) {
  await fail(String(e.stack || e));
}
