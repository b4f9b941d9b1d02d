// What every end-to-end test needs besides its stand-ins: an identity
// provider (an RS256 key, its JWKS file and tokens signed with it) and the
// sidecar binary, built from the repository (or taken from $SIDECAR_BIN),
// started on loopback, probed and stopped.

import { execFile, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { promisify } from "node:util";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const STARTUP_TIMEOUT_MS = 10_000;

// An identity provider with one RS256 key. Every token it mints is added to
// secrets (value -> what it is), the list of what the sidecar must never log.
export function createIdentityProvider({ issuer, audience, kid = "e2e-key-1", secrets }) {
  const key = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    issuer,
    audience,
    // Mints a user JWT; key may be another private key, to forge one.
    mintUserJwt({ sub = "alice", iss = issuer, aud = audience, ttl = 600, key: signer = key.privateKey } = {}) {
      const now = Math.floor(Date.now() / 1000);
      const header = { alg: "RS256", typ: "JWT", kid };
      const claims = { iss, aud, sub, iat: Math.min(now, now + ttl - 60), exp: now + ttl };
      const signingInput = [header, claims]
        .map((part) => Buffer.from(JSON.stringify(part)).toString("base64url"))
        .join(".");
      const signature = crypto.sign("sha256", Buffer.from(signingInput), signer).toString("base64url");
      const jwt = `${signingInput}.${signature}`;
      secrets.set(jwt, `the user JWT for ${sub}`);
      return jwt;
    },
    async writeJwks(file) {
      const { kty, n, e } = key.publicKey.export({ format: "jwk" });
      await fs.writeFile(file, JSON.stringify({ keys: [{ kty, n, e, kid, alg: "RS256", use: "sig" }] }, null, 2));
    },
  };
}

export async function buildSidecar(tmpDir) {
  if (process.env.SIDECAR_BIN) return path.resolve(process.env.SIDECAR_BIN);
  const out = path.join(tmpDir, "negotiate-sidecar");
  try {
    await promisify(execFile)("go", ["build", "-o", out, "./cmd/negotiate-sidecar"], {
      cwd: REPO_ROOT,
      timeout: 240_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    throw new Error(`go build ./cmd/negotiate-sidecar failed:\n${err.stderr || err.message}`);
  }
  return out;
}

// Starts the sidecar with its own environment (env is added to none: the
// test's environment does not leak in). handle.ready resolves once both
// listeners have logged their address; the handle keeps every byte of
// stdout and stderr.
export function startSidecar(bin, args, { cwd, env = {} } = {}) {
  const child = spawn(bin, args, { cwd, env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const handle = {
    child,
    stderr: "",
    stdout: "",
    addr: {},
    exited: new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))),
  };
  child.stdout.setEncoding("utf8").on("data", (chunk) => (handle.stdout += chunk));

  const listening = new Promise((resolve, reject) => {
    let pending = "";
    child.stderr.setEncoding("utf8").on("data", (chunk) => {
      handle.stderr += chunk;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        let entry;
        try {
          entry = JSON.parse(line);
        } catch {
          continue;
        }
        if (entry.msg === "listening" && entry.listener && entry.addr) handle.addr[entry.listener] = entry.addr;
      }
      if (handle.addr.proxy && handle.addr.admin) resolve();
    });
    child.once("error", reject);
    handle.exited.then(({ code, signal }) =>
      reject(new Error(`sidecar exited early (code ${code}, signal ${signal})`)),
    );
  });
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`sidecar did not log both listener addresses within ${STARTUP_TIMEOUT_MS} ms`)),
      STARTUP_TIMEOUT_MS,
    );
  });
  handle.ready = Promise.race([listening, timeout]).finally(() => clearTimeout(timer));
  // Make sure no child outlives the test process, whatever happens.
  process.on("exit", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return handle;
}

export async function waitReady(adminAddr) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${adminAddr}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = err.message;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`GET /readyz did not return 200 within ${STARTUP_TIMEOUT_MS} ms (last: ${last})`);
}

// Starts the sidecar as every end-to-end test runs it (loopback listeners,
// the stand-in identity provider's JWKS file, debug logs, a short shutdown
// delay) with the test's own arguments added, and waits until it listens,
// ready or not. A failure to start carries the sidecar's log.
export async function startListeningSidecar(bin, { upstream, idp, jwksFile, args = [], cwd, env }) {
  const handle = startSidecar(
    bin,
    [
      "--listen", "127.0.0.1:0",
      "--admin-listen", "127.0.0.1:0",
      "--upstream", upstream,
      "--issuer", idp.issuer,
      "--jwks-file", jwksFile,
      "--audience", idp.audience,
      "--log-level", "debug",
      // Shorter than the default 5 s, which stopSidecar would not wait out; still a real delay.
      "--shutdown-delay", "1s",
      ...args,
    ],
    { cwd, env },
  );
  await withLog(handle, handle.ready);
  return handle;
}

// Starts the sidecar as startListeningSidecar does, and waits until it is
// ready.
export async function startReadySidecar(bin, options) {
  const handle = await startListeningSidecar(bin, options);
  await withLog(handle, waitReady(handle.addr.admin));
  return handle;
}

// Waits for promise; a failure carries the sidecar's log.
async function withLog(handle, promise) {
  try {
    await promise;
  } catch (err) {
    throw new Error(`${err.message}\nsidecar log:\n${logTail(handle)}`);
  }
}

// SIGTERM, then SIGKILL if it has not exited after 5 s. Safe to call twice.
export async function stopSidecar(handle) {
  if (!handle) return undefined;
  const { child } = handle;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    let timer;
    const killed = await Promise.race([
      handle.exited.then(() => false),
      new Promise((resolve) => (timer = setTimeout(() => resolve(true), 5000))),
    ]);
    clearTimeout(timer);
    if (killed) {
      child.kill("SIGKILL");
      await handle.exited;
      return { code: null, signal: "SIGTERM ignored for 5 s; killed" };
    }
  }
  return handle.exited;
}

// A test that prints the sidecar's log when it fails. getHandle returns the
// sidecar of the moment (started in a before hook).
export function testWithSidecarLog(name, getHandle, fn) {
  test(name, { timeout: 30_000 }, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      t.diagnostic("sidecar log:");
      for (const line of logTail(getHandle()).split("\n")) t.diagnostic(line);
      throw err;
    }
  });
}

export function logTail(handle, chars = 6000) {
  if (!handle) return "(sidecar not started)";
  const log = handle.stderr + handle.stdout;
  return log.length > chars ? `...${log.slice(-chars)}` : log;
}

// Returns what in secrets (value -> what it is) the log contains, and
// whether it contains anything shaped like a JWT.
export function secretsInLog(log, secrets) {
  const found = [];
  for (const [secret, what] of secrets) {
    if (log.includes(secret)) found.push(what);
    const signature = secret.split(".")[2];
    if (signature && log.includes(signature)) found.push(`the signature of ${what}`);
  }
  if (/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/.test(log)) found.push("something shaped like a JWT");
  return found;
}
