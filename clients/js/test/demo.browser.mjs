// The demo page in headless Chromium, driven by Playwright: two people chat in two browser contexts. Each test
// saves a screenshot to test-artifacts/ and fails on any console error of the pages.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

import { Gateway } from "./gateway.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dirname, "..", "test-artifacts");
// Headless in a closed network: no background fetches, no first-run work.
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let gateway;
let browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  gateway = await Gateway.start({ args: ["--demo"] });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

/** A page of the demo as `user`, in a context of its own, recording console errors into `errors`. */
async function open(user, errors) {
  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`${user}: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`${user}: ${error.message}`));
  await page.goto(`http://${gateway.addr}/demo/#${user}`);
  await page.locator("#connection[data-state=live]").waitFor();
  return page;
}

const message = (page, text) => page.locator("#list .message", { hasText: text });

async function openConversation(page, id) {
  await page.locator(`#conversations button[data-id="${id}"]`).click();
  await page.locator("#list .message").first().waitFor();
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

async function screenshots(name, pages) {
  for (const [user, page] of Object.entries(pages)) {
    await page.screenshot({ path: join(ARTIFACTS, `${name}-${user}.png`) });
  }
}

test("alice and bob chat both ways; a backend's system message, an edit and a reaction reach both", async () => {
  const errors = [];
  const alice = await open("alice", errors);
  const bob = await open("bob", errors);
  await openConversation(alice, "alice-bob");
  await openConversation(bob, "alice-bob");

  await send(alice, "Hello Bob, *bold* hello");
  await message(bob, "Hello Bob, bold hello").waitFor();
  assert.equal(await message(bob, "Hello Bob").locator("strong").textContent(), "bold");
  await send(bob, "Hi Alice!");
  await message(alice, "Hi Alice!").waitFor();

  const started = Date.now();
  await gateway.rest("POST", "/conversations/alice-bob/messages", [{ type: "SystemMessage", text: "Order shipped" }]);
  await Promise.all([message(alice, "Order shipped").waitFor({ timeout: 1000 }), message(bob, "Order shipped").waitFor({ timeout: 1000 })]);
  assert.ok(Date.now() - started < 1000, "within a second in both pages");

  // Bob edits his message and alice reacts to it; each sees the other's change.
  await message(bob, "Hi Alice!").locator("button.edit").click();
  await bob.fill("#text", "Hi Alice, edited");
  await bob.click("#send");
  await message(alice, "Hi Alice, edited").locator(".edited").waitFor();
  await message(alice, "Hi Alice, edited").locator("button.react", { hasText: "👍" }).click();
  await message(bob, "Hi Alice, edited").locator(".reactions button", { hasText: "👍 1" }).waitFor();

  // A reply quotes its message; a delete removes it on both sides.
  await message(alice, "Hi Alice, edited").locator("button.reply").click();
  await send(alice, "A reply");
  await message(bob, "A reply").locator(".quote", { hasText: "Hi Alice, edited" }).waitFor();
  await message(alice, "A reply").locator("button.delete").click();
  await message(bob, "A reply").waitFor({ state: "detached" });

  await screenshots("chat", { alice, bob });
  assert.deepEqual(errors, []);
  await alice.context().close();
  await bob.context().close();
});

test("scrolling up loads older messages until the first", async () => {
  const errors = [];
  const carol = await open("carol", errors);
  await openConversation(carol, "welcome");
  await message(carol, "Scroll up to load older messages.").waitFor();
  for (let i = 0; i < 20 && !(await message(carol, "Message 0 of the history").count()); i++) {
    await carol.locator("#messages").evaluate((box) => (box.scrollTop = 0));
    await carol.waitForTimeout(150);
  }
  await message(carol, "Message 0 of the history").waitFor();
  await carol.locator("#history-state", { hasText: "beginning of the conversation" }).waitFor();
  assert.equal(await carol.locator("#list .message").count(), 43, "every message, once");
  await screenshots("history", { carol });
  assert.deepEqual(errors, []);
  await carol.context().close();
});

test("after the gateway is killed and restarted, the pages reconnect and show what was sent meanwhile", async () => {
  const errors = [];
  const alice = await open("alice", errors);
  const bob = await open("bob", errors);
  await openConversation(alice, "alice-bob");
  await openConversation(bob, "alice-bob");
  await gateway.kill();
  await alice.locator("#connection[data-state=reconnecting]").waitFor();
  gateway = await gateway.restart();
  await gateway.rest("POST", "/conversations/alice-bob/messages", [{ type: "SystemMessage", text: "Sent while you were away" }]);
  await Promise.all([
    message(alice, "Sent while you were away").waitFor({ timeout: 20_000 }),
    message(bob, "Sent while you were away").waitFor({ timeout: 20_000 }),
  ]);
  await alice.locator("#connection[data-state=live]").waitFor();
  await send(bob, "Back again");
  await message(alice, "Back again").waitFor();
  await screenshots("restart", { alice, bob });
  // While the gateway was down, the browser reported the refused connections; nothing else may be an error.
  const unexpected = errors.filter((error) => !/ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/.test(error));
  assert.deepEqual(unexpected, []);
  await alice.context().close();
  await bob.context().close();
});
