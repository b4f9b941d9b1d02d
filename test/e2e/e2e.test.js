// End-to-end: the real @microsoft/signalr client connects through
// negotiate-sidecar, which sits in front of a stand-in Functions app and
// re-signs the service token for a stand-in Azure SignalR Service.
//
//   client --(user JWT)--> sidecar --> functions stand-in (/api/negotiate)
//   client <--{url, accessToken with asrs.s.uid = verified sub}-- sidecar
//   client --(re-signed token)--> service stand-in (negotiate + WebSocket)
//
// The sidecar binary comes from $SIDECAR_BIN, or is built from the repository
// root with `go build`.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { connectAndWhoami } from "./hub-client.js";
import {
  buildSidecar,
  createIdentityProvider,
  secretsInLog,
  testWithSidecarLog,
  startReadySidecar,
  stopSidecar,
} from "./sidecar.js";
import { startFunctionsStandIn } from "./stand-in-functions.js";
import { decodeJwt, startServiceStandIn, verifyClientToken } from "./stand-in-service.js";

const PRINCIPAL_HEADER = "x-ms-client-principal-id";

// 32 random bytes in base64: 44 characters ending with "=".
const accessKey = crypto.randomBytes(32).toString("base64");
const strangerKey = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });

// Everything that must never show up in the sidecar's logs: value -> what it is.
const secrets = new Map([[accessKey, "the AccessKey"]]);
const idp = createIdentityProvider({ issuer: "https://idp.e2e.test/", audience: "api://e2e", secrets });
const mintUserJwt = (options) => idp.mintUserJwt(options);

let tmpDir;
let service;
let functions;
let sidecar;

// A test that prints the sidecar's log when it fails.
const e2e = (name, fn) => testWithSidecarLog(name, () => sidecar, fn);

const proxyUrl = (p) => `http://${sidecar.addr.proxy}${p}`;

async function rawNegotiate(headers) {
  const res = await fetch(proxyUrl("/api/negotiate?negotiateVersion=1"), { method: "POST", headers });
  const text = await res.text();
  return { res, text };
}

// Asserts that no request header that looks like an App Service principal
// header (any case, "-" or "_") carries a value the client made up.
function assertNoForgedPrincipal(headers, forgedValues) {
  for (const [name, value] of Object.entries(headers)) {
    if (!name.replace(/_/g, "-").startsWith("x-ms-client-principal")) continue;
    for (const forged of forgedValues) {
      assert.ok(!String(value).includes(forged), `the app saw ${name}: ${value}`);
    }
    if (name === "x-ms-client-principal") {
      const decoded = Buffer.from(String(value), "base64").toString("utf8");
      for (const forged of forgedValues) assert.ok(!decoded.includes(forged), `the app saw ${name} = ${decoded}`);
    }
  }
}

// ------------------------------------------------------------ setup/teardown

before(
  async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), "negotiate-sidecar-e2e-"));
    const jwksFile = path.join(tmpDir, "jwks.json");
    await idp.writeJwks(jwksFile);
    service = await startServiceStandIn({ accessKey });
    functions = await startFunctionsStandIn({ serviceEndpoint: service.endpoint, accessKey });
    const bin = await buildSidecar(tmpDir);

    // The connection string names the service with its port inside the
    // Endpoint URL, as local setups do; the SDK leaves the port out of aud.
    sidecar = await startReadySidecar(bin, {
      upstream: functions.origin,
      idp,
      jwksFile,
      args: ["--connection-string", `Endpoint=${service.endpoint};AccessKey=${accessKey};Version=1.0;`],
      cwd: tmpDir,
    });
  },
  { timeout: 300_000 },
);

after(async () => {
  await stopSidecar(sidecar);
  await functions?.close();
  await service?.close();
  if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------- tests

e2e("1. the real client connects through the sidecar as the verified user", async () => {
  for (const user of ["alice", "bob"]) {
    const jwt = mintUserJwt({ sub: user });
    const seenBefore = functions.state.requests.length;
    const uid = await connectAndWhoami(proxyUrl("/api"), { accessTokenFactory: () => jwt });
    assert.equal(uid, user, "user id the service saw");

    const requests = functions.state.requests.slice(seenBefore);
    assert.equal(requests.length, 1, "the app got exactly the negotiate request");
    assert.equal(requests[0].method, "POST");
    assert.match(requests[0].url, /^\/api\/negotiate(\?|$)/);
    assert.equal(requests[0].headers[PRINCIPAL_HEADER], user);
    assert.equal(service.state.accepted.at(-1).kind, "connect");
    assert.equal(service.state.accepted.at(-1).uid, user);
  }
});

e2e("2. forged principal headers from the client never reach the app", async () => {
  const alice = mintUserJwt({ sub: "alice" });
  const forgedPrincipal = Buffer.from(
    JSON.stringify({ auth_typ: "aad", claims: [{ typ: "sub", val: "mallory" }], userId: "mallory" }),
  ).toString("base64");
  const forged = {
    "x-ms-client-principal-id": "mallory",
    "X-MS-CLIENT-PRINCIPAL-NAME": "mallory",
    "X-MS-CLIENT-PRINCIPAL-IDP": "mallory-idp",
    "x-ms-client-principal": forgedPrincipal,
  };

  const seenBefore = functions.state.requests.length;
  const uid = await connectAndWhoami(proxyUrl("/api"), { accessTokenFactory: () => alice, headers: forged });
  assert.equal(uid, "alice");
  const [seen] = functions.state.requests.slice(seenBefore);
  assert.equal(seen.headers[PRINCIPAL_HEADER], "alice");
  assertNoForgedPrincipal(seen.headers, ["mallory", forgedPrincipal]);

  // The underscore spelling, which some servers treat like the dash one.
  const { res, text } = await rawNegotiate({
    Authorization: `Bearer ${alice}`,
    x_ms_client_principal_id: "mallory",
    X_MS_CLIENT_PRINCIPAL_NAME: "mallory",
    x_ms_client_principal: forgedPrincipal,
  });
  assert.equal(res.status, 200, text);
  const { accessToken } = JSON.parse(text);
  secrets.set(accessToken, "a re-signed service token");
  assert.equal(decodeJwt(accessToken).payload["asrs.s.uid"], "alice");
  const last = functions.state.lastRequest;
  assert.equal(last.headers[PRINCIPAL_HEADER], "alice");
  assertNoForgedPrincipal(last.headers, ["mallory", forgedPrincipal]);
});

e2e("3. no token: refused with 401 before reaching the app", async () => {
  const seenBefore = functions.state.requests.length;
  await assert.rejects(connectAndWhoami(proxyUrl("/api")));

  const { res, text } = await rawNegotiate({});
  assert.equal(res.status, 401, text);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
  assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
  assert.equal(typeof JSON.parse(text), "object");

  assert.equal(functions.state.requests.length, seenBefore, "the app saw no request");
});

e2e("4. expired, foreign-signed, wrong-audience and wrong-issuer tokens are refused", async () => {
  const bad = {
    expired: mintUserJwt({ ttl: -3600 }),
    "signed by another key": mintUserJwt({ key: strangerKey.privateKey }),
    "wrong audience": mintUserJwt({ aud: "api://someone-else" }),
    "wrong issuer": mintUserJwt({ iss: "https://idp.elsewhere.test/" }),
    "not a JWT": "not-a-jwt",
  };
  const seenBefore = functions.state.requests.length;
  for (const [kind, jwt] of Object.entries(bad)) {
    const { res, text } = await rawNegotiate({ Authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 401, `${kind}: ${text}`);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/, kind);
    await assert.rejects(connectAndWhoami(proxyUrl("/api"), { accessTokenFactory: () => jwt }), kind);
  }
  assert.equal(functions.state.requests.length, seenBefore, "the app saw no request");
});

e2e("5. the sidecar re-signs the app's token with the AccessKey, changing only asrs.s.uid", async () => {
  const alice = mintUserJwt({ sub: "alice" });
  const original = functions.state.userIdFrom;
  // The app's binding may put the header's user id, none, or another id in.
  const bindings = {
    "userId from the principal header": original,
    "no userId": () => undefined,
    "another userId": () => "mallory",
  };
  try {
    for (const [binding, userIdFrom] of Object.entries(bindings)) {
      functions.state.userIdFrom = userIdFrom;
      const { res, text } = await rawNegotiate({ Authorization: `Bearer ${alice}` });
      assert.equal(res.status, 200, `${binding}: ${text}`);
      const body = JSON.parse(text);
      const upstream = functions.state.lastIssued;
      secrets.set(body.accessToken, "a re-signed service token");
      secrets.set(upstream.accessToken, "a service token from the app");

      assert.equal(body.url, upstream.url, binding);
      const got = decodeJwt(body.accessToken);
      const app = decodeJwt(upstream.accessToken);
      assert.equal(got.headerSegment, app.headerSegment, `${binding}: header segment is byte-identical`);
      const { "asrs.s.uid": uid, ...rest } = got.payload;
      const { "asrs.s.uid": _appUid, ...appRest } = app.payload;
      assert.equal(uid, "alice", binding);
      assert.deepEqual(rest, appRest, `${binding}: aud/exp/nbf/iat unchanged`);
      for (const claim of ["aud", "exp", "nbf", "iat"]) assert.equal(got.payload[claim], app.payload[claim]);

      // Valid for the service, by signature with the AccessKey...
      const audience = service.audience("chat");
      assert.equal(verifyClientToken(body.accessToken, { accessKey, audience }).ok, true, binding);
      const accepted = await fetch(`${service.endpoint}/client/negotiate?hub=chat&negotiateVersion=1`, {
        method: "POST",
        headers: { Authorization: `Bearer ${body.accessToken}` },
      });
      assert.equal(accepted.status, 200, binding);
      await accepted.arrayBuffer();

      // ...and the real client ends up as alice whatever the app put in.
      assert.equal(await connectAndWhoami(proxyUrl("/api"), { accessTokenFactory: () => alice }), "alice", binding);
    }
  } finally {
    functions.state.userIdFrom = original;
  }

  // Control: the same claim change without re-signing is refused by the service.
  functions.state.userIdFrom = () => undefined;
  try {
    const { text } = await rawNegotiate({ Authorization: `Bearer ${alice}` });
    const upstream = decodeJwt(functions.state.lastIssued.accessToken);
    secrets.set(JSON.parse(text).accessToken, "a re-signed service token");
    const tampered = [
      upstream.headerSegment,
      Buffer.from(JSON.stringify({ "asrs.s.uid": "alice", ...upstream.payload })).toString("base64url"),
      upstream.signatureSegment,
    ].join(".");
    const refused = await fetch(`${service.endpoint}/client/negotiate?hub=chat&negotiateVersion=1`, {
      method: "POST",
      headers: { Authorization: `Bearer ${tampered}` },
    });
    assert.equal(refused.status, 401);
    await refused.arrayBuffer();
  } finally {
    functions.state.userIdFrom = original;
  }
});

e2e("6. an app that closes idle connections soon still answers every negotiate", async () => {
  // The sidecar keeps its connections to the app for longer than the app
  // may: here the app closes each one 50 ms after answering on it. Every
  // negotiate must succeed, on whichever connection is still open or on a
  // new one, until the app has had to open two new connections.
  functions.state.closeIdleAfterMs = 50;
  const connectionsBefore = functions.state.connections;
  try {
    for (let i = 0; i < 8 && functions.state.connections - connectionsBefore < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const user = `idle-${i}`;
      const seenBefore = functions.state.requests.length;
      const jwt = mintUserJwt({ sub: user });
      const uid = await connectAndWhoami(proxyUrl("/api"), { accessTokenFactory: () => jwt });
      assert.equal(uid, user, "user id the service saw");
      assert.equal(functions.state.requests.length - seenBefore, 1, "the app got the negotiate once");
    }
  } finally {
    functions.state.closeIdleAfterMs = undefined;
  }
  assert.ok(functions.state.connections - connectionsBefore >= 2, "the app opened two new connections");
});

e2e("7. the sidecar exits 0 on SIGTERM and never logged a secret", async () => {
  for (const { accessToken } of functions.state.issued) {
    if (!secrets.has(accessToken)) secrets.set(accessToken, "a service token from the app");
  }
  const { code, signal } = await stopSidecar(sidecar);
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, "exit status after SIGTERM");

  const log = sidecar.stderr + sidecar.stdout;
  assert.ok(log.includes('"listening"'), "the sidecar logged to stderr");
  assert.deepEqual(secretsInLog(log, secrets), [], "the log contains secrets");
});
