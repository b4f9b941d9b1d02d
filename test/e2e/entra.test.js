// End-to-end, Microsoft Entra ID: the app connects to the service with a
// managed identity instead of an access key, and signs client tokens with a
// temporary key of its own that the sidecar never sees. The sidecar gets a
// key of its own the same way and signs the app's tokens again with it.
//
//   app stand-in ──Entra token──▶ key API ◀──Entra token── sidecar
//        (its key, its kid)                  (its key, its kid)
//   client --(user JWT)--> sidecar --> app stand-in (/api/negotiate)
//   client <--token: asrs.s.uid = verified sub, the sidecar's kid and signature--
//   client --(that token)--> service stand-in, which finds the key by kid
//
// Each sidecar gets the managed identity endpoint through IDENTITY_ENDPOINT
// and IDENTITY_HEADER, and the connection as the app's own setting.

import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { connectAndWhoami } from "./hub-client.js";
import {
  buildSidecar,
  createIdentityProvider,
  secretsInLog,
  startListeningSidecar,
  startReadySidecar,
  stopSidecar,
  testWithSidecarLog,
} from "./sidecar.js";
import { createEntraIssuer, newIdentity, startManagedIdentityStandIn } from "./stand-in-entra.js";
import { startFunctionsStandIn } from "./stand-in-functions.js";
import { APP_SERVER_ROLE, decodeJwt, startServiceStandIn, verifyClientToken } from "./stand-in-service.js";

const secrets = new Map();
const idp = createIdentityProvider({ issuer: "https://idp.e2e.test/", audience: "api://e2e", secrets });

const issuer = createEntraIssuer();
const system = newIdentity();
const userAssigned = newIdentity(system.tenantId);
const withoutRole = newIdentity(system.tenantId);

let tmpDir;
let jwksFile;
let bin;
let identity; // the pod's identity endpoint
let downIdentity; // an identity endpoint that answers 500 to everything
let service;
const apps = {}; // by case: the app stand-in
const sidecars = {}; // by case: the sidecar
const downStartedAt = {};

// The two ways an app names its connection without a key, each with the
// identity it uses.
const CASES = {
  "AuthType=azure.msi": {
    clientId: undefined,
    env: () => ({ AzureSignalRConnectionString: `Endpoint=${service.endpoint};AuthType=azure.msi;Version=1.0;` }),
  },
  "identity-based settings": {
    clientId: userAssigned.clientId,
    env: () => ({
      AzureSignalRConnectionString__serviceUri: service.endpoint,
      AzureSignalRConnectionString__credential: "managedidentity",
      AzureSignalRConnectionString__clientId: userAssigned.clientId,
    }),
  },
};

const proxyUrl = (sidecar, p) => `http://${sidecar.addr.proxy}${p}`;
const adminUrl = (sidecar, p) => `http://${sidecar.addr.admin}${p}`;

async function get(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return { status: res.status, text: await res.text() };
}

// The KeyId the sidecar logged when it got its key.
function sidecarKeyIds(sidecar) {
  const ids = [];
  for (const line of sidecar.stderr.split("\n")) {
    if (!line.includes("got a key from the service")) continue;
    ids.push(JSON.parse(line).key_id);
  }
  return ids;
}

// Polls /readyz until its body matches re; returns { status, text, ms }.
async function readyzUntil(sidecar, re, timeoutMs) {
  const start = Date.now();
  let last;
  while (Date.now() - start < timeoutMs) {
    last = await get(adminUrl(sidecar, "/readyz")).catch((err) => ({ status: 0, text: err.message }));
    if (re.test(last.text)) return { ...last, ms: Date.now() - start };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`/readyz did not match ${re} within ${timeoutMs} ms; last: ${last?.status} ${last?.text}`);
}

// Starts a sidecar for upstream that need not become ready.
function startNotReadySidecar(upstream, args, env) {
  return startListeningSidecar(bin, { upstream, idp, jwksFile, args, cwd: tmpDir, env });
}

// ------------------------------------------------------------ setup/teardown

before(
  async () => {
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), "negotiate-sidecar-entra-"));
    jwksFile = path.join(tmpDir, "jwks.json");
    await idp.writeJwks(jwksFile);
    identity = await startManagedIdentityStandIn({ issuer, system, userAssigned: [userAssigned, withoutRole] });
    downIdentity = await startManagedIdentityStandIn({ issuer, system });
    downIdentity.setDown(true);
    service = await startServiceStandIn({ entraIssuer: issuer });
    service.grant(system.objectId);
    service.grant(userAssigned.objectId);
    for (const [name, c] of Object.entries(CASES)) {
      apps[name] = await startFunctionsStandIn({
        serviceEndpoint: service.endpoint,
        identity: { endpoint: identity.endpoint, header: identity.header, clientId: c.clientId },
      });
      secrets.set(apps[name].state.temporaryKey.accessKey, `the app's key (${name})`);
    }
    bin = await buildSidecar(tmpDir);

    // Started first: azidentity retries a failing identity endpoint for
    // seconds, which the other tests need not wait for.
    downStartedAt.ms = Date.now();
    sidecars.down = await startNotReadySidecar(apps["AuthType=azure.msi"].origin, [], {
      ...downIdentity.env(),
      ...CASES["AuthType=azure.msi"].env(),
    });
    for (const [name, c] of Object.entries(CASES)) {
      sidecars[name] = await startReadySidecar(bin, {
        upstream: apps[name].origin,
        idp,
        jwksFile,
        cwd: tmpDir,
        env: { ...identity.env(), ...c.env() },
      });
    }
  },
  { timeout: 300_000 },
);

after(async () => {
  for (const sidecar of Object.values(sidecars)) await stopSidecar(sidecar);
  for (const app of Object.values(apps)) await app.close();
  await service?.close();
  await identity?.close();
  await downIdentity?.close();
  if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
});

// ------------------------------------------------------------------- tests

for (const name of Object.keys(CASES)) {
  const e2e = (title, fn) => testWithSidecarLog(`${name}: ${title}`, () => sidecars[name], fn);

  e2e("the real client connects as the verified user, with a token of the sidecar's key", async () => {
    const sidecar = sidecars[name];
    const app = apps[name];
    const [sidecarKid] = sidecarKeyIds(sidecar);
    assert.ok(sidecarKid, "the sidecar logged the KeyId it got");
    assert.notEqual(sidecarKid, app.state.temporaryKey.keyId);

    for (const user of ["alice", "bob"]) {
      const jwt = idp.mintUserJwt({ sub: user });
      const issuedBefore = app.state.issued.length;
      const uid = await connectAndWhoami(proxyUrl(sidecar, "/api"), { accessTokenFactory: () => jwt });
      assert.equal(uid, user, "the user id the service saw");
      assert.equal(app.state.lastRequest.headers["x-ms-client-principal-id"], user);
      // The app signed with its own key and kid...
      assert.equal(app.state.issued.length, issuedBefore + 1);
      assert.equal(decodeJwt(app.state.lastIssued.accessToken).header.kid, app.state.temporaryKey.keyId);
      // ...and the service validated what the client sent with the sidecar's.
      const [negotiate, connect] = service.state.accepted.slice(-2);
      assert.deepEqual(negotiate, { kind: "negotiate", hub: "chat", uid: user, kid: sidecarKid, key: sidecarKid });
      assert.deepEqual(connect, { kind: "connect", hub: "chat", uid: user, kid: sidecarKid, key: sidecarKid });
    }
  });

  e2e("the token carries the sidecar's kid and signature, the app's claims and the verified user", async () => {
    const sidecar = sidecars[name];
    const app = apps[name];
    const [sidecarKid] = sidecarKeyIds(sidecar);
    const original = app.state.userIdFrom;
    app.state.userIdFrom = () => "mallory";
    let body;
    try {
      const res = await fetch(proxyUrl(sidecar, "/api/negotiate?negotiateVersion=1"), {
        method: "POST",
        headers: { Authorization: `Bearer ${idp.mintUserJwt({ sub: "alice" })}` },
      });
      body = JSON.parse(await res.text());
      assert.equal(res.status, 200);
    } finally {
      app.state.userIdFrom = original;
    }
    const upstream = app.state.lastIssued;
    secrets.set(body.accessToken, "a token signed again by the sidecar");
    secrets.set(upstream.accessToken, "a token from the app");
    assert.equal(body.url, upstream.url);

    const got = decodeJwt(body.accessToken);
    const mine = decodeJwt(upstream.accessToken);
    assert.deepEqual(got.header, { ...mine.header, kid: sidecarKid });
    assert.equal(mine.payload["asrs.s.uid"], "mallory");
    assert.deepEqual(got.payload, { ...mine.payload, "asrs.s.uid": "alice" });

    const audience = service.audience("chat");
    const sidecarKey = service.state.temporaryKey(sidecarKid);
    assert.equal(verifyClientToken(body.accessToken, { accessKey: sidecarKey, audience }).ok, true);
    assert.equal(verifyClientToken(body.accessToken, { accessKey: app.state.temporaryKey.accessKey, audience }).ok, false);
  });

  e2e("the app's key never reached the sidecar: each caller got its own from the key API", async () => {
    const sidecar = sidecars[name];
    const app = apps[name];
    const handedOut = service.state.keyRequests.filter((r) => r.status === 200);
    assert.equal(new Set(handedOut.map((r) => r.keyId)).size, handedOut.length, "a KeyId per call");
    assert.equal(new Set(handedOut.map((r) => service.state.temporaryKey(r.keyId))).size, handedOut.length, "a key per call");
    const { keyId: appKid, accessKey: appKey } = app.state.temporaryKey;
    assert.equal(handedOut.filter((r) => r.keyId === appKid).length, 1, "the app's key was handed out once");
    const sidecarKids = sidecarKeyIds(sidecar);
    assert.ok(sidecarKids.length >= 1);
    for (const kid of sidecarKids) {
      assert.ok(handedOut.some((r) => r.keyId === kid), "the sidecar's key came from the key API");
      assert.notEqual(service.state.temporaryKey(kid), appKey);
    }
    const identityOf = Object.fromEntries(handedOut.map((r) => [r.keyId, r.objectId]));
    const expected = CASES[name].clientId ? userAssigned.objectId : system.objectId;
    assert.equal(identityOf[appKid], expected, "the app's identity");
    assert.equal(identityOf[sidecarKids[0]], expected, "the sidecar asked as the same identity");
    assert.ok(!sidecar.stderr.includes(appKey) && !sidecar.stdout.includes(appKey), "the app's key is in the sidecar's log");
  });

  e2e("/metrics shows the key's age and the fetches for the endpoint", async () => {
    const { status, text } = await get(adminUrl(sidecars[name], "/metrics"));
    assert.equal(status, 200);
    const endpoint = service.endpoint.replace(/[.]/g, "\\.");
    const age = new RegExp(`^negotiate_sidecar_entra_key_age_seconds\\{endpoint="${endpoint}/?"\\} ([0-9.e+-]+)$`, "m").exec(text);
    assert.ok(age, `no key age for ${service.endpoint} in:\n${text.split("\n").filter((l) => l.includes("entra")).join("\n")}`);
    assert.ok(Number(age[1]) >= 0 && Number(age[1]) < 300, `age ${age[1]}`);
    const fetches = new RegExp(`^negotiate_sidecar_entra_key_fetches_total\\{endpoint="${endpoint}/?",result="success"\\} 1$`, "m");
    assert.match(text, fetches);
  });
}

testWithSidecarLog("an identity without the SignalR App Server role: not ready, and no token leaks", () => sidecars.noRole, async (t) => {
  const start = Date.now();
  const app = apps["AuthType=azure.msi"];
  sidecars.noRole = await startNotReadySidecar(
    app.origin,
    ["--connection-string", `Endpoint=${service.endpoint};AuthType=azure.msi;ClientId=${withoutRole.clientId};Version=1.0;`],
    identity.env(),
  );
  const sidecar = sidecars.noRole;
  const readyz = await readyzUntil(sidecar, /SignalR App Server/, 10_000);
  assert.equal(readyz.status, 503);
  assert.ok(readyz.text.includes(APP_SERVER_ROLE), readyz.text);
  assert.match(readyz.text, /403/);
  assert.ok(
    service.state.keyRequests.some((r) => r.status === 403 && r.objectId === withoutRole.objectId),
    "the key API refused the identity",
  );

  const issuedBefore = app.state.issued.length;
  const res = await fetch(proxyUrl(sidecar, "/api/negotiate?negotiateVersion=1"), {
    method: "POST",
    headers: { Authorization: `Bearer ${idp.mintUserJwt({ sub: "alice" })}` },
  });
  const text = await res.text();
  assert.ok(res.status >= 500, `negotiate answered ${res.status}: ${text}`);
  assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
  assert.doesNotMatch(text, /eyJ/, "a token in the refusal");
  for (const { accessToken } of app.state.issued.slice(issuedBefore)) {
    secrets.set(accessToken, "a token from the app");
    assert.ok(!text.includes(accessToken.split(".")[2]), "the app's token leaked");
  }
  const jwt = idp.mintUserJwt({ sub: "alice" });
  await assert.rejects(connectAndWhoami(proxyUrl(sidecar, "/api"), { accessTokenFactory: () => jwt }));

  const metrics = (await get(adminUrl(sidecar, "/metrics"))).text;
  assert.match(metrics, /^negotiate_sidecar_entra_key_fetches_total\{endpoint="[^"]+",result="failure"\} 1$/m);
  assert.doesNotMatch(metrics, /^negotiate_sidecar_entra_key_age_seconds\{/m, "a key age without a key");
  t.diagnostic(`/readyz named the role ${Date.now() - start} ms after the sidecar was started: ${readyz.text.trim()}`);
});

testWithSidecarLog("an identity endpoint that is down: not ready, and /readyz says so", () => sidecars.down, async (t) => {
  const sidecar = sidecars.down;
  const readyz = await readyzUntil(sidecar, /Microsoft Entra token/, 25_000);
  assert.equal(readyz.status, 503);
  assert.match(readyz.text, /managed identity/i);
  assert.match(readyz.text, /500/);
  assert.ok(!readyz.text.includes(downIdentity.header), "/readyz shows the IDENTITY_HEADER secret");
  assert.ok(downIdentity.state.requests.length >= 1, "the sidecar asked the identity endpoint");
  assert.ok(downIdentity.state.requests.every((r) => r.status === 500));
  assert.deepEqual(
    service.state.keyRequests.filter((r) => r.objectId === null),
    [],
    "the key API saw a request without a valid token",
  );
  // azcore retries the endpoint's 500s for about nine seconds first.
  t.diagnostic(`/readyz said why ${Date.now() - downStartedAt.ms} ms after the sidecar was started: ${readyz.text.trim()}`);
});

testWithSidecarLog("every sidecar exits 0 on SIGTERM and never logged a secret", () => sidecars["AuthType=azure.msi"], async () => {
  for (const token of [...identity.state.issued, ...downIdentity.state.issued]) secrets.set(token, "an Entra token");
  for (const app of Object.values(apps)) {
    for (const { accessToken } of app.state.issued) if (!secrets.has(accessToken)) secrets.set(accessToken, "a token from the app");
  }
  for (const r of service.state.keyRequests) {
    if (r.keyId) secrets.set(service.state.temporaryKey(r.keyId), "a temporary key");
  }
  const stopped = await Promise.all(Object.values(sidecars).map((sidecar) => stopSidecar(sidecar)));
  for (const [i, [name, sidecar]] of Object.entries(sidecars).entries()) {
    const { code, signal } = stopped[i];
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, `${name}: exit status after SIGTERM`);
    assert.deepEqual(secretsInLog(sidecar.stderr + sidecar.stdout, secrets), [], `${name}: the log contains secrets`);
  }
});
