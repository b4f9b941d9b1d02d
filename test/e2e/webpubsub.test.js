// End-to-end for Azure Web PubSub: the real @azure/web-pubsub-client gets its
// URL from negotiate-sidecar, which sits in front of an app stand-in whose
// tokens come from the real @azure/web-pubsub package, and connects to a
// Web PubSub stand-in that checks tokens as the service does.
//
//   client --(user JWT)--> sidecar --> app stand-in (/api/negotiate?shape=...)
//   client <--{..., url with the token whose sub is the verified user}-- sidecar
//   client --(WebSocket, json.webpubsub.azure.v1)--> service stand-in
//   client <--{"type":"system","event":"connected","userId":...}-- service
//
// The sidecar reads the app's own setting, WebPubSubConnectionString, whose
// Endpoint has the service's port inside its URL.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import {
  buildSidecar,
  createIdentityProvider,
  secretsInLog,
  testWithSidecarLog,
  startReadySidecar,
  stopSidecar,
} from "./sidecar.js";
import { decodeJwt, verifyClientToken } from "./stand-in-service.js";
import { SHAPES, startWebPubSubAppStandIn } from "./stand-in-webpubsub-app.js";
import { startWebPubSubStandIn } from "./stand-in-webpubsub-service.js";
import { connectAndWhoami } from "./webpubsub-client.js";

const accessKey = crypto.randomBytes(32).toString("base64");
const secrets = new Map([[accessKey, "the AccessKey"]]);
const idp = createIdentityProvider({ issuer: "https://idp.e2e.test/", audience: "api://e2e", secrets });

let tmpDir;
let pubsub;
let app;
let sidecar;

// A test that prints the sidecar's log when it fails.
const e2e = (name, fn) => testWithSidecarLog(name, () => sidecar, fn);

// POSTs the negotiate of a shape through the sidecar as jwt's user.
async function negotiate(shape, jwt) {
  const headers = jwt ? { Authorization: `Bearer ${jwt}` } : {};
  const res = await fetch(`http://${sidecar.addr.proxy}/api/negotiate?shape=${shape}`, { method: "POST", headers });
  const text = await res.text();
  return { res, text };
}

// The URL the page hands the client: the negotiate's url, as every shape has.
async function clientUrl(shape, jwt) {
  const { res, text } = await negotiate(shape, jwt);
  if (res.status !== 200) throw new Error(`negotiate answered ${res.status}: ${text}`);
  const { url } = JSON.parse(text);
  secrets.set(new URL(url).searchParams.get("access_token"), "a re-signed service token");
  return url;
}

// Every copy of the token a body holds.
function tokenCopies(body) {
  const copies = [body.token, body.accessToken, body.AccessToken].filter((c) => c !== undefined);
  return [...copies, new URL(body.url).searchParams.get("access_token")];
}

before(
  async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), "negotiate-sidecar-e2e-webpubsub-"));
    const jwksFile = path.join(tmpDir, "jwks.json");
    await idp.writeJwks(jwksFile);
    pubsub = await startWebPubSubStandIn({ accessKey });
    const connectionString = `Endpoint=${pubsub.endpoint};AccessKey=${accessKey};Version=1.0;`;
    app = await startWebPubSubAppStandIn({ connectionString, hub: "chat" });
    const bin = await buildSidecar(tmpDir);
    sidecar = await startReadySidecar(bin, {
      upstream: app.origin,
      idp,
      jwksFile,
      args: ["--service", "webpubsub"],
      cwd: tmpDir,
      env: { WebPubSubConnectionString: connectionString },
    });
  },
  { timeout: 300_000 },
);

after(async () => {
  await stopSidecar(sidecar);
  await app?.close();
  await pubsub?.close();
  if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
});

e2e("1. the real Web PubSub client connects as the verified user, whatever the body's shape", async () => {
  const original = app.state.userIdFrom;
  // The app's binding may take the principal header, give no user id, or
  // another one: the service sees the verified user all the same.
  const bindings = { "principal header": original, "no user id": () => undefined, "another user id": () => "mallory" };
  try {
    for (const shape of SHAPES) {
      for (const [binding, userIdFrom] of Object.entries(bindings)) {
        app.state.userIdFrom = userIdFrom;
        for (const user of ["alice", "bob"]) {
          const what = `${shape}, ${binding}, ${user}`;
          const jwt = idp.mintUserJwt({ sub: user });
          assert.equal(await connectAndWhoami(() => clientUrl(shape, jwt)), user, `${what}: the user the service saw`);
          assert.equal(app.state.requests.at(-1).headers["x-ms-client-principal-id"], user, `${what}: the app's principal header`);
          assert.deepEqual(pubsub.state.accepted.at(-1), { hub: "chat", userId: user, protocol: "json.webpubsub.azure.v1", signer: "AccessKey" }, what);
        }
      }
    }
  } finally {
    app.state.userIdFrom = original;
  }
});

e2e("2. every copy of the token is rewritten alike; every other field and the field order are kept", async () => {
  const alice = idp.mintUserJwt({ sub: "alice" });
  const original = app.state.userIdFrom;
  app.state.userIdFrom = () => "mallory"; // the app's binding says someone else
  try {
    for (const shape of SHAPES) {
      const { res, text } = await negotiate(shape, alice);
      assert.equal(res.status, 200, `${shape}: ${text}`);
      const body = JSON.parse(text);
      const fromApp = JSON.parse(app.state.lastIssued.body);
      const [tok, ...others] = tokenCopies(body);
      const [appTok] = tokenCopies(fromApp);
      secrets.set(tok, "a re-signed service token");
      secrets.set(appTok, "a service token from the app");

      assert.deepEqual(Object.keys(body), Object.keys(fromApp), `${shape}: fields and their order`);
      for (const copy of others) assert.equal(copy, tok, `${shape}: a copy differs`);
      assert.notEqual(tok, appTok, shape);
      assert.equal(text.replaceAll(tok, appTok), app.state.lastIssued.body, `${shape}: only the token changed`);

      const got = decodeJwt(tok);
      const was = decodeJwt(appTok);
      assert.equal(got.headerSegment, was.headerSegment, `${shape}: header segment byte-identical`);
      assert.equal(got.payload.sub, "alice", shape);
      assert.deepEqual({ ...got.payload, sub: was.payload.sub }, was.payload, `${shape}: only sub changed`);
      assert.deepEqual(Object.keys(got.payload), Object.keys(was.payload), `${shape}: claim order`);
      assert.equal(verifyClientToken(tok, { accessKey, audience: pubsub.audience("chat") }).ok, true, shape);
    }
  } finally {
    app.state.userIdFrom = original;
  }
});

e2e("3. a body whose copies of the token differ is refused with 502, and nobody connects", async () => {
  const alice = idp.mintUserJwt({ sub: "alice" });
  const { res, text } = await negotiate("mismatch", alice);
  assert.equal(res.status, 502, text);
  assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
  for (const t of JSON.parse(app.state.lastIssued.body).url.split("access_token=").slice(1)) secrets.set(t, "a service token from the app");
  secrets.set(JSON.parse(app.state.lastIssued.body).token, "a service token from the app");
  assert.ok(!text.includes("eyJ"), "the refusal shows a token");
  const accepted = pubsub.state.accepted.length;
  await assert.rejects(connectAndWhoami(() => clientUrl("mismatch", alice)));
  assert.equal(pubsub.state.accepted.length, accepted);
});

e2e("4. without a user JWT the app is never asked", async () => {
  const asked = app.state.requests.length;
  const { res } = await negotiate("sdk");
  assert.equal(res.status, 401);
  await assert.rejects(connectAndWhoami(() => clientUrl("url")));
  assert.equal(app.state.requests.length, asked);
});

e2e("5. the app's getClientAccessToken made no network call: the service only saw client WebSockets", async () => {
  assert.ok(app.state.issued.length > 0);
  for (const r of pubsub.state.requests) {
    assert.deepEqual(r, { method: "GET", path: "/client/hubs/chat", upgrade: true });
  }
});

e2e("6. the sidecar exits 0 on SIGTERM and never logged a secret", async () => {
  for (const { body } of app.state.issued) {
    for (const t of tokenCopies(JSON.parse(body))) if (!secrets.has(t)) secrets.set(t, "a service token from the app");
  }
  const { code, signal } = await stopSidecar(sidecar);
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, "exit status after SIGTERM");
  const log = sidecar.stderr + sidecar.stdout;
  assert.ok(log.includes('"listening"'), "the sidecar logged to stderr");
  assert.deepEqual(secretsInLog(log, secrets), [], "the log contains secrets");
});
