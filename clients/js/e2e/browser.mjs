// The browser test: the chat example (etp-tokio/examples/chat.rs) on loopback, two pages
// of its own chat page in headless Chromium, driven through the page and its etp.js client.
//
//   node e2e/browser.mjs [--server PATH] [--chromium PATH]
//
// PATH defaults: the chat example binary under $CARGO_TARGET_DIR (or the workspace's
// target/) debug/examples/chat, built by `cargo build -p etp-tokio --example chat`;
// Chromium at $CHROMIUM or /usr/bin/chromium. Every wait is bounded; any failure exits 1.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const STEP_TIMEOUT_MS = 15_000;
const WHOLE_TEST_TIMEOUT_MS = 120_000;
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const here = dirname(fileURLToPath(import.meta.url));
const workspace = resolve(here, "../../..");
const { values: args } = parseArgs({
  options: {
    server: {
      type: "string",
      default: resolve(process.env.CARGO_TARGET_DIR ?? resolve(workspace, "target"), "debug/examples/chat"),
    },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});

let passed = 0;
let running = false;
let server = null;
let browser = null;

/** Runs one named check; the first failure ends the test. */
async function check(name, body) {
  process.stdout.write(`browser test: ${name} ... `);
  running = true;
  await body();
  running = false;
  passed += 1;
  process.stdout.write("ok\n");
}

function fail(message) {
  throw new Error(message);
}

/** A free loopback port, kept for both server runs (the restart reuses it). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

/** Starts the chat example and waits until it serves its page. */
async function startServer(port) {
  const child = spawn(args.server, ["--port", String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  child.stderr.on("data", (chunk) => (output += chunk));
  let exited = null;
  child.once("exit", (code, signal) => (exited = signal ?? code));
  child.once("error", (error) => (exited = error.message));
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited !== null) fail(`the chat server exited (${exited}) before serving:\n${output}`);
    try {
      const response = await fetch(`http://127.0.0.1:${port}/etp.js`);
      if (response.ok) return { child, output: () => output };
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGKILL");
  fail(`the chat server did not serve http://127.0.0.1:${port}/ within ${STEP_TIMEOUT_MS} ms:\n${output}`);
}

/** Waits until the page's chat log has a line containing `text`. */
async function waitForLog(page, who, text) {
  try {
    await page.waitForFunction(
      (wanted) => [...document.querySelectorAll("#log > div")].some((line) => line.textContent.includes(wanted)),
      text,
      { timeout: STEP_TIMEOUT_MS, polling: 50 },
    );
  } catch {
    fail(`page ${who}: no log line containing ${JSON.stringify(text)} within ${STEP_TIMEOUT_MS} ms; the log:\n${await logOf(page)}`);
  }
}

async function logOf(page) {
  return page.evaluate(() => [...document.querySelectorAll("#log > div")].map((line) => `  | ${line.textContent}`).join("\n"));
}

/** Waits until the page's client is (or is no longer) connected. */
async function waitConnected(page, who, connected) {
  try {
    await page.waitForFunction((want) => window.client?.connected === want, connected, { timeout: STEP_TIMEOUT_MS, polling: 50 });
  } catch {
    fail(`page ${who}: client.connected did not become ${connected} within ${STEP_TIMEOUT_MS} ms; the log:\n${await logOf(page)}`);
  }
}

async function join(page, who, room) {
  await page.fill("#room", room);
  await page.click("#setup button");
  await waitForLog(page, who, `ok: joined ${room}`);
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send button");
}

async function main() {
  for (const [what, path] of [["chat example binary", args.server], ["Chromium", args.chromium]]) {
    if (!existsSync(path)) fail(`${what} not found at ${path} (see the top of e2e/browser.mjs)`);
  }
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  server = await startServer(port);
  browser = await chromium.launch({ executablePath: args.chromium, args: CHROMIUM_ARGS, timeout: STEP_TIMEOUT_MS });
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const pageErrors = [];
  const pages = [];
  const open = async (who, nick) => {
    const page = await context.newPage();
    // Uncaught exceptions fail the test. (Console errors do not: the browser logs each
    // failed reconnection attempt while the server is down, and the missing favicon.)
    page.on("pageerror", (error) => pageErrors.push(`page ${who}: uncaught ${error.message}`));
    pages.push([page, who]);
    await page.goto(`${origin}/?nick=${nick}`, { timeout: STEP_TIMEOUT_MS });
    return page;
  };
  const alice = await open("A", "alice");
  const bob = await open("B", "bob");

  await check("server-initiated ack: the server asks each page for its nick and greets it by its answer", async () => {
    await waitForLog(alice, "A", "welcome, alice");
    await waitForLog(bob, "B", "welcome, bob");
    // The server checks the answer: a page without a nick answers "" and keeps its guest name.
    const anonymous = await open("C", "");
    await waitForLog(anonymous, "C", "(no usable nick in your answer)");
    pages.pop();
    await anonymous.close();
  });

  await check("both pages join a room (emitWithAck browser -> server)", async () => {
    await join(alice, "A", "e2e");
    await waitForLog(alice, "A", "ok: joined e2e (1 here)");
    await join(bob, "B", "e2e");
    await waitForLog(bob, "B", "ok: joined e2e (2 here)");
  });

  await check("a broadcast from page A reaches page B (and A, the chat echoes to the sender)", async () => {
    await say(alice, "hello from alice || with pipes");
    await waitForLog(bob, "B", "alice: hello from alice || with pipes");
    await waitForLog(alice, "A", "alice: hello from alice || with pipes");
  });

  await check("ack round trips: text, unicode, no data, and an event without a handler", async () => {
    const result = await alice.evaluate(async () => ({
      nick: await window.client.emitWithAck("nick", "alice"),
      unicode: await window.client.emitWithAck("echo", "héllo || 世界 🎉"),
      // The server answers `__ack_echo||N`, a 2-part frame, for no data.
      nothing: (await window.client.emitWithAck("echo")) === undefined,
      unknown: (await window.client.emitWithAck("no-such-event", "x")) === undefined,
      pending: window.client.pendingAcks,
    }));
    const expected = { nick: "ok: you are alice", unicode: "héllo || 世界 🎉", nothing: true, unknown: true, pending: 0 };
    if (JSON.stringify(result) !== JSON.stringify(expected)) {
      fail(`unexpected answers: ${JSON.stringify(result)}, expected ${JSON.stringify(expected)}`);
    }
  });

  await check("binary data round trip (all 256 byte values, sent and answered as binary)", async () => {
    const result = await bob.evaluate(async () => {
      const sent = new Uint8Array(512).map((_, i) => (i * 7 + 255) % 256);
      const answer = await window.client.emitWithAck("echo", sent);
      return {
        isBytes: answer instanceof Uint8Array,
        same: answer instanceof Uint8Array && answer.length === sent.length && answer.every((b, i) => b === sent[i]),
      };
    });
    if (!result.isBytes || !result.same) fail(`binary echo came back wrong: ${JSON.stringify(result)}`);
  });

  await check("the server restarts on the same port; both pages reconnect, rejoin and exchange again", async () => {
    server.child.kill("SIGKILL");
    await waitConnected(alice, "A", false);
    await waitConnected(bob, "B", false);
    const failed = await alice.evaluate(() =>
      window.client.emitWithAck("echo", "x").then(
        () => "resolved",
        (error) => error.name,
      ),
    );
    if (failed !== "EtpClosedError") fail(`emitWithAck while disconnected: expected EtpClosedError, got ${failed}`);
    server = await startServer(port);
    await waitConnected(alice, "A", true);
    await waitConnected(bob, "B", true);
    // The pages saw the connection drop, the new server asked for their nicks again
    // (a second greeting), and the pages joined their room again.
    for (const [page, who] of [[alice, "A"], [bob, "B"]]) {
      await waitForLog(page, who, "disconnected (1006), reconnecting in");
      await waitRejoined(page, who);
    }
    await say(bob, "bob is back");
    await waitForLog(alice, "A", "bob: bob is back");
    const unicode = await bob.evaluate(() => window.client.emitWithAck("echo", "après"));
    if (unicode !== "après") fail(`echo after the restart answered ${JSON.stringify(unicode)}`);
  });

  await check("no uncaught page errors, and no client errors but the expected connection errors", async () => {
    for (const [page, who] of pages) {
      // The page logs the client's onError reports with the class "err". While the server
      // was down, failed attempts report EtpConnectionError; anything else is a failure
      // (a malformed frame, a failing handler).
      const unexpected = await page.evaluate(() =>
        [...document.querySelectorAll("#log > div.err")].map((line) => line.textContent).filter((text) => !text.startsWith("EtpConnectionError:")),
      );
      for (const text of unexpected) pageErrors.push(`page ${who}: client error ${text}`);
    }
    if (pageErrors.length > 0) fail(pageErrors.join("\n"));
  });
}

/** Waits until the page has joined `e2e` twice (once per server run) and been greeted twice. */
async function waitRejoined(page, who) {
  try {
    await page.waitForFunction(
      () => {
        const lines = [...document.querySelectorAll("#log > div")].map((line) => line.textContent);
        return lines.filter((l) => l.startsWith("ok: joined e2e")).length >= 2 && lines.filter((l) => l.startsWith("welcome, ")).length >= 2;
      },
      null,
      { timeout: STEP_TIMEOUT_MS, polling: 50 },
    );
  } catch {
    fail(`page ${who}: did not rejoin and get greeted after the restart within ${STEP_TIMEOUT_MS} ms; the log:\n${await logOf(page)}`);
  }
}

async function cleanUp() {
  server?.child.kill("SIGKILL");
  await browser?.close().catch(() => {});
}

// Never leave the server behind, however this process ends.
process.on("exit", () => server?.child.kill("SIGKILL"));

const watchdog = setTimeout(() => {
  console.error(`\nbrowser test: FAILED: the whole test took more than ${WHOLE_TEST_TIMEOUT_MS} ms`);
  console.log(`browser: ${passed} passed, 1 failed`);
  server?.child.kill("SIGKILL");
  process.exit(1);
}, WHOLE_TEST_TIMEOUT_MS);

try {
  await main();
  await cleanUp();
  clearTimeout(watchdog);
  console.log(`browser: ${passed} passed, 0 failed`);
} catch (error) {
  if (running) console.log("FAILED");
  console.error(`browser test: FAILED: ${error.message}`);
  if (server) console.error(`chat server output:\n${server.output()}`);
  await cleanUp();
  clearTimeout(watchdog);
  console.log(`browser: ${passed} passed, 1 failed`);
  process.exit(1);
}
