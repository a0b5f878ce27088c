// What both browser scripts need: their settings from the environment (tests/it/console.rs
// sets them), a check that fails the run with a message, and Debian's headless Chromium.
import { chromium } from "playwright-core";

/** The environment variable `name`; a missing one stops the script, naming it. */
export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

/** Fail the run with `message` unless `cond` holds. */
export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Headless Chromium at $CHROMIUM, with what a sandboxed CI machine needs. */
export function launch() {
  return chromium.launch({
    executablePath: env("CHROMIUM"),
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
    ],
  });
}
