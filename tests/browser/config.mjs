// Drives the console's configuration pages in headless Chromium (Debian's `chromium`, through
// playwright-core): create a provider (its secret shown once, not on reload), a route with a
// mistake (the server's message next to the field), a destination, the route fixed, a signed
// test event accepted and listed, then the route, the destination and the provider deleted with
// their Delete buttons (after a confirmation); a file-managed provider is read-only, and a
// read-only session cannot write. Screenshots go to $ARTIFACTS. Run by tests/it/console.rs.
import { check, env, launch } from "./common.mjs";

const URL = env("HOOKD_URL");
const TOKEN = env("HOOKD_TOKEN");
const READ_TOKEN = env("HOOKD_READ_TOKEN");
const TARGET_URL = env("TARGET_URL");
const ARTIFACTS = env("ARTIFACTS");

const browser = await launch();
const problems = [];
// The start of the confirmation the next Delete button asks for (accepted once).
let confirming = null;
const step = (what) => console.log(`- ${what}`);

async function session(token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on("pageerror", (e) => problems.push(`page error: ${e}`));
  page.on("dialog", async (d) => {
    if (d.type() === "confirm" && confirming && d.message().startsWith(confirming)) {
      confirming = null;
      return d.accept();
    }
    problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
    return d.dismiss();
  });
  await page.goto(`${URL}/ui/login`);
  await page.fill("#token", token);
  await Promise.all([page.waitForURL("**/ui/events"), page.click("button[type=submit]")]);
  return page;
}

let page;
const shot = (name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
const fieldError = (form, field) => page.locator(`${form} .field-error[data-field="${field}"]`);

try {
  page = await session(TOKEN);

  step("create a provider: its secret is shown once");
  await page.goto(`${URL}/ui/config`);
  await page.fill("#provider-form input[name=name]", "acme");
  await page.fill("#provider-form input[name=scheme]", "github");
  await Promise.all([page.waitForURL("**/ui/config/providers"), page.click("#provider-form button")]);
  const secret = (await page.textContent("#secret-value")).trim();
  check(/^[0-9a-f]{64}$/.test(secret), `no generated secret shown: ${secret}`);
  await shot("config-01-secret-once");

  step("the secret is not shown on reload");
  await page.goto(`${URL}/ui/config/providers/acme`);
  check((await page.locator("#secret-once").count()) === 0, "the secret box came back");
  check(!(await page.content()).includes(secret), "the secret is on the page again");
  check((await page.locator("#secrets tbody tr").count()) === 1, "the secret is not listed");

  step("a route with a mistake: the server's message next to the field");
  await page.goto(`${URL}/ui/config`);
  const route = (dest) =>
    JSON.stringify({ provider: "acme", events: ["push"], steps: [{ action: "forward", destination: dest }] });
  await page.fill("#route-form input[name=name]", "acme-push");
  await page.fill("#route-form textarea[name=route]", route("ci"));
  await Promise.all([page.waitForURL("**/ui/config/routes"), page.click("#route-form button")]);
  const err = await fieldError("#route-form", "route").textContent();
  check(err.includes("steps[0].destination") && err.includes('no destination named "ci"'), `message: ${err}`);
  check((await page.inputValue("#route-form input[name=name]")) === "acme-push", "the form lost its name");
  await shot("config-02-route-error");

  step("a destination with a bad URL, then a good one");
  await page.fill("#destination-form input[name=name]", "ci");
  await page.fill("#destination-form input[name=url]", "ftp://nowhere");
  await Promise.all([page.waitForURL("**/ui/config/destinations"), page.click("#destination-form button")]);
  check((await fieldError("#destination-form", "url").textContent()).includes("must be http or https"), "no url error");
  await page.fill("#destination-form input[name=url]", TARGET_URL);
  await Promise.all([page.waitForURL(`${URL}/ui/config`), page.click("#destination-form button")]);
  check((await page.textContent('#config-destinations tr[data-destination="ci"]')).includes(TARGET_URL), "destination not listed");

  step("the route fixed");
  await page.fill("#route-form input[name=name]", "acme-push");
  await page.fill("#route-form textarea[name=route]", route("ci"));
  await Promise.all([page.waitForURL("**/ui/config/routes/acme-push"), page.click("#route-form button")]);
  check((await page.inputValue("#route-form textarea[name=route]")).includes('"destination": "ci"'), "route not saved");

  step("send a signed test event: accepted, processed and listed");
  await page.goto(`${URL}/ui/config/providers/acme`);
  await page.selectOption("#test-form select[name=sample]", "push");
  await Promise.all([page.waitForURL("**/ui/config/providers/acme/test"), page.click("#test-form button")]);
  check((await page.textContent("#test-result")).includes("Accepted"), await page.textContent("#test-result"));
  await shot("config-03-test-event");
  const id = (await page.textContent("#test-event")).trim();
  await Promise.all([page.waitForURL(`**/ui/events/${id}`), page.click("#test-event")]);
  await page.waitForFunction(() => document.querySelector("#status")?.textContent.trim() === "completed");
  await page.goto(`${URL}/ui/events?provider=acme`);
  check((await page.locator(`#rows tr[data-id="${id}"]`).count()) === 1, "the test event is not listed");

  step("a file-managed provider is read-only");
  await page.goto(`${URL}/ui/config`);
  check((await page.textContent('#config-providers tr[data-provider="stripe"]')).includes("managed by file"), "no label");
  await page.goto(`${URL}/ui/config/providers/stripe`);
  check((await page.textContent("#readonly")).includes("managed by file"), "not read-only");
  check((await page.locator("#secret-form").count()) === 0, "a secret form on a file-managed provider");

  step("delete the route, the destination and the provider, each after a confirmation");
  await page.goto(`${URL}/ui/config/routes/acme-push`);
  confirming = "Delete route acme-push?";
  await Promise.all([page.waitForURL(`${URL}/ui/config`), page.click("form.delete button")]);
  check((await page.locator('#config-routes tr[data-route="acme-push"]').count()) === 0, "the route is still listed");
  confirming = "Delete destination ci?";
  await Promise.all([
    page.waitForURL(`${URL}/ui/config`),
    page.click('#config-destinations tr[data-destination="ci"] form.delete button'),
  ]);
  check((await page.locator('#config-destinations tr[data-destination="ci"]').count()) === 0, "the destination is still listed");
  await page.goto(`${URL}/ui/config/providers/acme`);
  confirming = "Delete provider acme?";
  await Promise.all([page.waitForURL(`${URL}/ui/config`), page.click("form.delete button")]);
  check((await page.locator('#config-providers tr[data-provider="acme"]').count()) === 0, "the provider is still listed");
  check(confirming === null, "no confirmation was asked");
  await shot("config-04-deleted");

  step("the audit log has the changes");
  await page.goto(`${URL}/ui/audit`);
  const audit = await page.textContent("#audit");
  for (const a of ["config.provider.put", "config.route.put", "config.destination.put", "config.provider.test_event",
    "config.route.delete", "config.destination.delete", "config.provider.delete"]) {
    check(audit.includes(a), `${a} not in the audit log`);
  }
  check(!audit.includes(secret), "the secret is in the audit log");

  step("a read-only session sees no forms and cannot write");
  page = await session(READ_TOKEN);
  await page.goto(`${URL}/ui/config`);
  check((await page.locator("form.config").count()) === 0, "forms offered to a read session");
  const status = await page.evaluate(async () => {
    const csrf = document.querySelector("input[name=csrf]").value;
    const body = new URLSearchParams({ csrf, name: "sneaky", scheme: "github" });
    return (await fetch("/ui/config/providers", { method: "POST", body })).status;
  });
  check(status === 403, `a read session's write answered ${status}`);
  await page.goto(`${URL}/ui/config`);
  check((await page.locator('#config-providers tr[data-provider="sneaky"]').count()) === 0, "the read session wrote");

  check(problems.length === 0, problems.join("\n"));
  console.log("config console test passed");
} catch (e) {
  await shot("config-failure").catch(() => {});
  console.error(`config console test failed at ${page?.url()}: ${e.stack || e}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
