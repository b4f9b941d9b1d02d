// End-to-end, Azure Web PubSub with Microsoft Entra ID: neither the app nor
// the sidecar holds an AccessKey. The service issues every client token
// itself, signed with a key only it holds; the app asks for them with the
// real @azure/web-pubsub and a managed identity, and so does the sidecar,
// for the verified caller.
//
//   app stand-in ──generateToken, userId=mallory──▶ service stand-in
//   client --(user JWT)--> sidecar --> app stand-in (/api/negotiate?shape=...)
//   sidecar ──generateToken, userId=<verified user>, the app's roles and groups──▶ service
//   client <--{..., url with the service's token for the verified user}-- sidecar
//   client --(WebSocket, json.webpubsub.azure.v1)--> service, which checks the
//   token with its own key and says which user it saw
//
// The app and the sidecar share the pod's user-assigned identity, through
// IDENTITY_ENDPOINT and IDENTITY_HEADER; the sidecar reads the app's own
// identity-based settings WebPubSubConnectionString__serviceUri,
// __credential and __clientId.

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
  startReadySidecar,
  stopSidecar,
  testWithSidecarLog,
} from "./sidecar.js";
import {
  createEntraIssuer,
  managedIdentityCredential,
  newIdentity,
  startManagedIdentityStandIn,
  WEBPUBSUB_RESOURCE,
} from "./stand-in-entra.js";
import { decodeJwt, hs256 } from "./stand-in-service.js";
import { GROUPS, ROLES, SHAPES, startWebPubSubAppStandIn } from "./stand-in-webpubsub-app.js";
import { SERVICE_OWNER_ROLE, startWebPubSubStandIn } from "./stand-in-webpubsub-service.js";
import { connectAndWhoami } from "./webpubsub-client.js";

const secrets = new Map();
const idp = createIdentityProvider({ issuer: "https://idp.e2e.test/", audience: "api://e2e", secrets });

const issuer = createEntraIssuer();
const podIdentity = newIdentity(); // user-assigned, holds the Service Owner role
const withoutRole = newIdentity(podIdentity.tenantId);

// The api-version @azure/web-pubsub 1.2.0 sends, and the one the sidecar
// sends (rewrite/entra/webpubsub.go, generateTokenAPIVersion).
const SDK_API_VERSION = "2024-12-01";

let tmpDir;
let identity;
let pubsub;
let credential;
let app;
let sidecar;
let noRoleSidecar;

const e2e = (name, fn) => testWithSidecarLog(name, () => sidecar, fn);

// The app's identity-based settings, naming the identity with clientId.
const settings = (clientId) => ({
  WebPubSubConnectionString__serviceUri: pubsub.endpoint,
  WebPubSubConnectionString__credential: "managedidentity",
  WebPubSubConnectionString__clientId: clientId,
});

// POSTs the negotiate of a shape through a sidecar as jwt's user.
async function negotiate(through, shape, jwt) {
  const res = await fetch(`http://${through.addr.proxy}/api/negotiate?shape=${shape}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${jwt}` },
  });
  return { res, text: await res.text() };
}

// Every copy of the token a body holds.
function tokenCopies(body) {
  const copies = [body.token, body.accessToken, body.AccessToken].filter((c) => c !== undefined);
  return [...copies, new URL(body.url).searchParams.get("access_token")];
}

// A generateToken call's query as { name: [values] }.
function paramsOf(call) {
  const out = {};
  for (const [name, value] of call.params) (out[name] ??= []).push(value);
  return out;
}

// The successful generateToken call that issued token.
const callThatIssued = (token) => pubsub.state.tokenRequests.find((c) => c.token === token);

before(
  async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), "negotiate-sidecar-e2e-wps-entra-"));
    const jwksFile = path.join(tmpDir, "jwks.json");
    await idp.writeJwks(jwksFile);
    identity = await startManagedIdentityStandIn({ issuer, userAssigned: [podIdentity, withoutRole] });
    pubsub = await startWebPubSubStandIn({ entraIssuer: issuer });
    pubsub.grant(podIdentity.objectId);
    credential = managedIdentityCredential({ endpoint: identity.endpoint, header: identity.header, clientId: podIdentity.clientId });
    app = await startWebPubSubAppStandIn({ serviceUri: pubsub.endpoint, credential, hub: "chat" });
    const bin = await buildSidecar(tmpDir);
    const start = (clientId) =>
      startReadySidecar(bin, {
        upstream: app.origin,
        idp,
        jwksFile,
        args: ["--service", "webpubsub"],
        cwd: tmpDir,
        env: { ...identity.env(), ...settings(clientId) },
      });
    sidecar = await start(podIdentity.clientId);
    // Ready all the same: the role is only needed on a negotiate.
    noRoleSidecar = await start(withoutRole.clientId);
  },
  { timeout: 300_000 },
);

after(async () => {
  await stopSidecar(sidecar);
  await stopSidecar(noRoleSidecar);
  await app?.close();
  await pubsub?.close();
  await identity?.close();
  if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
});

e2e("1. the real client connects as the verified user with the service's token, whatever the app asked for", async () => {
  const original = app.state.userIdFrom;
  app.state.userIdFrom = () => "mallory";
  try {
    for (const shape of SHAPES) {
      for (const user of ["alice", "bob"]) {
        const what = `${shape}, ${user}`;
        const jwt = idp.mintUserJwt({ sub: user });
        let token;
        const getUrl = async () => {
          const { res, text } = await negotiate(sidecar, shape, jwt);
          if (res.status !== 200) throw new Error(`negotiate answered ${res.status}: ${text}`);
          const { url } = JSON.parse(text);
          token = new URL(url).searchParams.get("access_token");
          return url;
        };
        assert.equal(await connectAndWhoami(getUrl), user, `${what}: the user the service saw`);
        assert.deepEqual(
          pubsub.state.accepted.at(-1),
          { hub: "chat", userId: user, protocol: "json.webpubsub.azure.v1", signer: "service" },
          what,
        );

        // The app asked the service for mallory's token...
        const fromApp = tokenCopies(JSON.parse(app.state.lastIssued.body))[0];
        const appCall = callThatIssued(fromApp);
        assert.ok(appCall, `${what}: the app's token came from generateToken`);
        assert.equal(decodeJwt(fromApp).payload.sub, "mallory", what);
        // ...and the client got one the service issued when the sidecar,
        // as the pod's identity, asked for the verified user with the app's
        // roles and groups and no more.
        const call = callThatIssued(token);
        assert.ok(call, `${what}: the client's token came from generateToken`);
        assert.ok(pubsub.state.tokenRequests.indexOf(call) > pubsub.state.tokenRequests.indexOf(appCall), what);
        assert.equal(call.objectId, podIdentity.objectId, what);
        const { minutesToExpire, ...asked } = paramsOf(call);
        assert.deepEqual(
          asked,
          { "api-version": [SDK_API_VERSION], userId: [user], role: ROLES, group: GROUPS, clientType: ["default"] },
          what,
        );
        assert.ok(["59", "60"].includes(minutesToExpire?.[0]), `${what}: minutesToExpire ${minutesToExpire}`);
        const { payload } = decodeJwt(token);
        assert.deepEqual(Object.keys(payload), ["nbf", "exp", "iat", "aud", "sub", "role", "webpubsub.group"], what);
        assert.deepEqual({ sub: payload.sub, role: payload.role, group: payload["webpubsub.group"], aud: payload.aud }, {
          sub: user,
          role: ROLES,
          group: GROUPS,
          aud: pubsub.audience("chat"),
        });
        secrets.set(token, "a service token for the caller");
        secrets.set(fromApp, "the app's service token");
      }
    }
  } finally {
    app.state.userIdFrom = original;
  }
});

e2e("2. every body shape keeps its fields and their order; every copy holds the caller's token", async () => {
  const alice = idp.mintUserJwt({ sub: "alice" });
  const original = app.state.userIdFrom;
  // Another user than the caller: a token the service issued for the caller
  // within the same second would be the app's, byte for byte.
  app.state.userIdFrom = () => "mallory";
  try {
    await everyShape(alice);
  } finally {
    app.state.userIdFrom = original;
  }
});

async function everyShape(alice) {
  for (const shape of SHAPES) {
    const { res, text } = await negotiate(sidecar, shape, alice);
    assert.equal(res.status, 200, `${shape}: ${text}`);
    const body = JSON.parse(text);
    const fromApp = JSON.parse(app.state.lastIssued.body);
    const [tok, ...others] = tokenCopies(body);
    const [appTok] = tokenCopies(fromApp);
    secrets.set(tok, "a service token for the caller");
    secrets.set(appTok, "the app's service token");
    assert.deepEqual(Object.keys(body), Object.keys(fromApp), `${shape}: fields and their order`);
    for (const copy of others) assert.equal(copy, tok, `${shape}: a copy differs`);
    assert.notEqual(tok, appTok, shape);
    assert.equal(text.replaceAll(tok, appTok), app.state.lastIssued.body, `${shape}: only the token changed`);
    assert.equal(callThatIssued(tok)?.status, 200, `${shape}: the token is the service's`);
    assert.equal(pubsub.verify(tok, "chat").ok, true, shape);
  }
  // The SDK's own answer, handed back as it is.
  const { text } = await negotiate(sidecar, "sdk", alice);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body), ["token", "baseUrl", "url"], "getClientAccessToken's answer");
  assert.equal(body.baseUrl, `${pubsub.endpoint.replace(/^http/, "ws")}/client/hubs/chat`);
  assert.equal(body.url, `${body.baseUrl}?access_token=${body.token}`);
  secrets.set(body.token, "a service token for the caller");
}

e2e("3. the sidecar asks as the real SDK asks: path, api-version, parameter names, Entra resource, no body", async () => {
  // The app's calls are the real SDK's: its user agent says so.
  const calls = pubsub.state.tokenRequests.filter((c) => c.status === 200);
  const bySdk = (c) => c.headers["user-agent"]?.startsWith("azsdk-js-web-pubsub/");
  const sdk = calls.find(bySdk);
  const ours = calls.find((c) => !bySdk(c));
  assert.ok(sdk && ours, "calls by both");
  assert.deepEqual(credential.scopes.at(-1), [`${WEBPUBSUB_RESOURCE}/.default`], "the scope the SDK asked its credential for");
  // The SDK's own request, as it sends it without a clientProtocol.
  assert.deepEqual(
    sdk.params,
    [
      ["api-version", SDK_API_VERSION],
      ["userId", paramsOf(sdk).userId[0]],
      ...ROLES.map((r) => ["role", r]),
      ["minutesToExpire", "60"],
      ...GROUPS.map((g) => ["group", g]),
    ],
  );
  assert.equal(sdk.headers.accept, "application/json, text/json");
  for (const [who, call] of Object.entries({ sdk, sidecar: ours })) {
    assert.equal(call.hub, "chat", who);
    assert.equal(call.bodyLength, 0, `${who}: a body`);
    assert.match(call.headers.authorization, /^Bearer /, who);
    assert.match(call.headers.accept, /application\/json/, who);
    assert.equal(call.objectId, podIdentity.objectId, `${who}: the identity`);
  }
  assert.equal(paramsOf(ours)["api-version"][0], paramsOf(sdk)["api-version"][0], "api-version");
  const sdkNames = new Set([...sdk.params.map(([n]) => n), "clientType"]);
  for (const [name] of ours.params) assert.ok(sdkNames.has(name), `the sidecar sends ${name}, which the SDK never does`);
});

testWithSidecarLog("4. the sidecar's identity lacks the role: a 5xx problem and no token", () => noRoleSidecar, async () => {
  const before = pubsub.state.tokenRequests.length;
  const accepted = pubsub.state.accepted.length;
  const jwt = idp.mintUserJwt({ sub: "alice" });
  for (const shape of SHAPES) {
    const { res, text } = await negotiate(noRoleSidecar, shape, jwt);
    assert.ok(res.status >= 500 && res.status < 600, `${shape}: negotiate answered ${res.status}: ${text}`);
    assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/, shape);
    assert.doesNotMatch(text, /eyJ/, `${shape}: a token in the refusal`);
    for (const t of tokenCopies(JSON.parse(app.state.lastIssued.body))) secrets.set(t, "the app's service token");
  }
  const calls = pubsub.state.tokenRequests.slice(before);
  const refused = calls.filter((c) => c.objectId === withoutRole.objectId);
  assert.equal(refused.length, SHAPES.length, "one generateToken per negotiate as the sidecar's identity");
  assert.ok(refused.every((c) => c.status === 403 && c.token === null), "403, no token");
  // The log line follows the answer.
  const named = new RegExp(`"reason":"issue".*lacks the \\\\"${SERVICE_OWNER_ROLE}\\\\" role`);
  for (const end = Date.now() + 2000; !named.test(noRoleSidecar.stderr) && Date.now() < end; ) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.match(noRoleSidecar.stderr, named, "the log names the role and the reason");
  await assert.rejects(
    connectAndWhoami(async () => {
      const { res, text } = await negotiate(noRoleSidecar, "url", jwt);
      if (res.status !== 200) throw new Error(`negotiate answered ${res.status}`);
      return JSON.parse(text).url;
    }),
  );
  assert.equal(pubsub.state.accepted.length, accepted, "a connection was accepted");
});

e2e("5. no AccessKey anywhere: every connection used a token the service issued, and its key never left it", async () => {
  assert.ok(pubsub.state.accepted.length > 0);
  assert.ok(pubsub.state.accepted.every((a) => a.signer === "service"));
  assert.deepEqual(app.state.errors, [], "the app's SDK failed");
  // The service has no AccessKey: the same claims signed with any other key
  // than its own are refused.
  for (const { token } of pubsub.state.tokenRequests.filter((c) => c.token)) {
    assert.equal(pubsub.verify(token, "chat").ok, true);
    const [h, p] = token.split(".");
    const forged = `${h}.${p}.${hs256(`${h}.${p}`, crypto.randomBytes(32).toString("base64"))}`;
    assert.equal(pubsub.verify(forged, "chat").ok, false);
  }
});

e2e("6. the sidecars exit 0 on SIGTERM and never logged a secret", async () => {
  for (const t of identity.state.issued) secrets.set(t, "an Entra token");
  for (const { token } of pubsub.state.tokenRequests) if (token && !secrets.has(token)) secrets.set(token, "a service token");
  for (const [name, handle] of Object.entries({ sidecar, noRoleSidecar })) {
    const { code, signal } = await stopSidecar(handle);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, `${name}: exit status after SIGTERM`);
    assert.deepEqual(secretsInLog(handle.stderr + handle.stdout, secrets), [], `${name}: the log contains secrets`);
  }
});
