// Drives hookd's web console in headless Chromium (Debian's `chromium`, through playwright-core):
// log in, filter the table, watch it refresh live, open an event, redrive a dead letter and see
// its status change, pause and resume a provider, read the audit log, log out. Screenshots go to
// $ARTIFACTS. Run by tests/console.rs, which starts hookd with the data this script expects.
import { createHmac } from "node:crypto";
import { check, env, launch } from "./common.mjs";

const URL = env("HOOKD_URL");
const TOKEN = env("HOOKD_TOKEN");
const ARTIFACTS = env("ARTIFACTS");
const DEAD_ID = env("DEAD_ID");
const OTHER_DEAD_ID = env("OTHER_DEAD_ID");
const XSS_ID = env("XSS_ID");
const XSS_TYPE = env("XSS_TYPE");
const STRIPE_SECRET = env("STRIPE_SECRET");
const INVOICES = Number(env("INVOICES"));

const browser = await launch();
const problems = [];
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
page.setDefaultTimeout(15000);
page.on("pageerror", (e) => problems.push(`page error: ${e}`));
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error: ${m.text()}`);
});
page.on("dialog", async (d) => {
  if (d.type() === "confirm") return d.accept();
  problems.push(`unexpected ${d.type()} dialog: ${d.message()}`); // e.g. an injected alert()
  return d.dismiss();
});
const shot = (name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const rows = () => page.locator("#rows tr[data-id]").count();
const step = (what) => console.log(`- ${what}`);

try {
  step("the console asks for a login");
  await page.goto(`${URL}/ui`);
  check(page.url().endsWith("/ui/login"), `not sent to the login: ${page.url()}`);
  await shot("01-login");
  await page.fill("#token", "not-a-token");
  await page.click("button[type=submit]");
  check((await page.textContent("#login-error")).includes("not an admin token"), "no error for a bad token");
  problems.length = 0; // the browser logs the refused login's 401 as a console error
  await page.fill("#token", TOKEN);
  await Promise.all([page.waitForURL("**/ui/events"), page.click("button[type=submit]")]);
  const session = (await context.cookies()).find((c) => c.name === "hookd_session");
  check(session, "no session cookie");
  check(session.httpOnly && session.sameSite === "Strict", `cookie flags: ${JSON.stringify(session)}`);
  check((await page.textContent("#who")).includes("admin"), "who am I missing");

  step("the events table and the chart");
  await page.waitForSelector("#rows tr[data-id]");
  const all = await rows();
  check(all >= INVOICES + 2, `only ${all} rows`);
  check((await page.locator("#chart rect").count()) > 0, "the chart has no bars");
  await shot("02-events");

  step("the type filter narrows the table");
  await page.fill("input[name=event_type]", "invoice.*");
  await Promise.all([page.waitForURL(/event_type=invoice/), page.click("#filters button[type=submit]")]);
  check((await rows()) === INVOICES, `invoice filter shows ${await rows()} rows`);
  await page.selectOption("select[name=status]", "dead_letter");
  await Promise.all([page.waitForURL(/status=dead_letter/), page.click("#filters button[type=submit]")]);
  check((await rows()) === 2, `dead invoices: ${await rows()}`);

  step("the table refreshes itself when an event arrives");
  await page.click("#filters a.clear");
  await page.waitForURL(`${URL}/ui/events`);
  const before = await rows();
  const body = JSON.stringify({ id: `evt_live_${Date.now()}`, object: "event", type: "customer.created" });
  const t = Math.floor(Date.now() / 1000);
  const sig = createHmac("sha256", STRIPE_SECRET).update(`${t}.${body}`).digest("hex");
  const r = await fetch(`${URL}/webhooks/stripe`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": `t=${t},v1=${sig}` },
    body,
  });
  check(r.status === 202, `webhook answered ${r.status}`);
  await page.waitForFunction((n) => document.querySelectorAll("#rows tr[data-id]").length > n, before);

  step("an event: timeline and pretty payload");
  await page.click("#rows tr[data-id] td a >> nth=0");
  await page.waitForFunction(() => document.querySelectorAll("#timeline li").length >= 3);
  check((await page.textContent("#payload")).includes('"object": "event"'), "payload not pretty-printed");

  step("values are escaped, never run");
  await page.goto(`${URL}/ui/events/${XSS_ID}`);
  check((await page.textContent("main h1")) === XSS_TYPE, "the event type was not shown as text");
  check((await page.locator("main h1 img").count()) === 0, "markup from the payload was rendered");

  step("a dead letter is redriven and its status changes");
  await page.goto(`${URL}/ui/dlq`);
  check((await page.locator(`#dead-letters tr[data-id="${DEAD_ID}"]`).count()) === 1, "dead letter not listed");
  await shot("03-dead-letters");
  await Promise.all([
    page.waitForURL(`**/ui/events/${DEAD_ID}?done=redrive`),
    page.click(`#dead-letters tr[data-id="${DEAD_ID}"] button.redrive`),
  ]);
  check((await page.textContent("#flash")).includes("Redriven"), "no confirmation");
  await page.waitForFunction(() => document.querySelector("#status")?.textContent.trim() === "completed");
  await shot("04-redriven");
  await page.goto(`${URL}/ui/dlq`);
  check((await page.locator(`#dead-letters tr[data-id="${DEAD_ID}"]`).count()) === 0, "still a dead letter");
  check((await page.locator(`#dead-letters tr[data-id="${OTHER_DEAD_ID}"]`).count()) === 1, "the other one vanished");

  step("providers: pause with a reason, then resume");
  await page.goto(`${URL}/ui/providers`);
  const stripe = page.locator('#providers tr[data-provider="stripe"]');
  await stripe.locator("input[name=reason]").fill("browser test");
  await Promise.all([page.waitForURL("**/ui/providers?done=pause"), stripe.locator("button").click()]);
  check((await stripe.textContent()).includes("paused"), "not paused");
  await shot("05-providers");
  await Promise.all([page.waitForURL("**/ui/providers?done=resume"), stripe.locator("button").click()]);
  check((await stripe.textContent()).includes("running"), "not running again");

  step("the audit log names the console");
  await page.goto(`${URL}/ui/audit`);
  const audit = await page.textContent("#audit");
  for (const action of ["event.redrive", "provider.pause", "provider.resume", "console.login"]) {
    check(audit.includes(action), `${action} not in the audit log`);
  }
  check(audit.includes("admin (console)"), "actor not named");

  step("back to the overview for the picture, then log out");
  await page.goto(`${URL}/ui/events`);
  await page.waitForSelector("#rows tr[data-id]");
  await shot("06-overview");
  await Promise.all([page.waitForURL("**/ui/login"), page.click("header form button")]);
  await page.goto(`${URL}/ui/events`);
  check(page.url().endsWith("/ui/login"), "the session survived the logout");

  check(problems.length === 0, problems.join("\n"));
  console.log("console test passed");
} catch (e) {
  await shot("failure").catch(() => {});
  console.error(`console test failed at ${page.url()}: ${e.stack || e}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
