// A real gateway for the tests: the natter binary on an ephemeral loopback port with a fresh data directory,
// REST calls with the app secret, and user tokens signed as the gateway expects.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const APP = "jsapp";
export const SECRET = "sk_test_js_0123456789abcdef";
const BINARY = process.env.NATTER_BIN ?? resolve(import.meta.dirname, "../../../target/debug/natter");

export class Gateway {
  constructor(child, addr, dataDir, args) {
    this.child = child;
    this.addr = addr;
    this.dataDir = dataDir;
    this.args = args;
  }

  /** The same gateway again, on its address and data directory, after `kill`. */
  restart() {
    return Gateway.start({ dataDir: this.dataDir, listen: this.addr, args: this.args });
  }

  /** Starts a gateway; with `dataDir` and `listen`, on that directory and address (a restart). */
  static async start({ dataDir, listen = "127.0.0.1:0", args = [] } = {}) {
    const dir = dataDir ?? mkdtempSync(join(tmpdir(), "natter-js-"));
    const child = spawn(BINARY, ["--listen", listen, "--data-dir", dir, ...args], {
      env: { ...process.env, NATTER_APPS: `${APP}:${SECRET}`, RUST_LOG: "natter=info", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: child.stdout });
    const addr = await new Promise((resolveAddr, reject) => {
      const timer = setTimeout(() => reject(new Error("natter did not start")), 30_000);
      lines.on("line", (line) => {
        const at = line.indexOf("local_addr=");
        if (at >= 0) {
          clearTimeout(timer);
          resolveAddr(/^[0-9.:]+/.exec(line.slice(at + "local_addr=".length))[0]);
        }
      });
      child.on("exit", () => reject(new Error("natter exited before listening")));
    });
    return new Gateway(child, addr, dir, args);
  }

  get host() {
    return `ws://${this.addr}`;
  }

  async rest(method, path, body) {
    const response = await fetch(`http://${this.addr}/v1/${APP}${path}`, {
      method,
      headers: { Authorization: `Bearer ${SECRET}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text.length > 0 ? JSON.parse(text) : null;
  }

  /** Kills the process (SIGKILL) and waits for it. */
  async kill() {
    const exited = new Promise((resolveExit) => this.child.once("exit", resolveExit));
    this.child.kill("SIGKILL");
    await exited;
  }

  async stop({ keepData = false } = {}) {
    if (this.child.exitCode === null && this.child.signalCode === null) await this.kill();
    if (!keepData) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A user token: HS256 with the app secret, `exp` in `ttlSeconds`. */
export function userToken(user, ttlSeconds = 3600) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const header = encode({ alg: "HS256", typ: "JWT" });
  const claims = encode({ tokenType: "user", iss: APP, sub: user, exp: Math.floor(Date.now() / 1000) + ttlSeconds });
  const signature = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** Resolves once `predicate` holds for the subscription's state (checked on every change), within `ms`. */
export function waitFor(subscription, predicate, ms = 10_000) {
  return new Promise((resolveState, reject) => {
    const started = Date.now();
    const check = () => {
      const state = subscription.state;
      if (predicate(state)) return resolveState(state);
      if (Date.now() - started > ms) return reject(new Error(`timed out; state: ${JSON.stringify(state).slice(0, 500)}`));
      setTimeout(check, 10);
    };
    check();
  });
}

export const texts = (state) => (state.latestSnapshot ?? []).map((message) => message.plaintext);
