// Checks the stand-ins on their own, without the sidecar: if these fail, the
// end-to-end results in e2e.test.js say nothing about the sidecar.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { connectAndWhoami } from "./hub-client.js";
import { createEntraIssuer, newIdentity, SIGNALR_RESOURCE, startManagedIdentityStandIn } from "./stand-in-entra.js";
import { SHAPES, startWebPubSubAppStandIn } from "./stand-in-webpubsub-app.js";
import { startWebPubSubStandIn } from "./stand-in-webpubsub-service.js";
import { connectAndWhoami as connectToPubSub } from "./webpubsub-client.js";
import { mintServiceToken, startFunctionsStandIn, TOKEN_HEADER_JSON } from "./stand-in-functions.js";
import { decodeJwt, hs256, startServiceStandIn, verifyClientToken } from "./stand-in-service.js";

const accessKey = crypto.randomBytes(32).toString("base64");
let service;
let functions;

before(async () => {
  service = await startServiceStandIn({ accessKey });
  functions = await startFunctionsStandIn({ serviceEndpoint: service.endpoint, accessKey });
});

after(async () => {
  await functions?.close();
  await service?.close();
});

test("service token checks: signature over the UTF-8 key, aud, exp", () => {
  const audience = service.audience("chat");
  const token = mintServiceToken({ accessKey, audience, userId: "bob" });
  const { headerSegment, payload } = decodeJwt(token);
  assert.equal(Buffer.from(headerSegment, "base64url").toString(), TOKEN_HEADER_JSON);
  assert.deepEqual(Object.keys(payload), ["asrs.s.uid", "nbf", "exp", "iat", "aud"]);
  assert.equal(verifyClientToken(token, { accessKey, audience }).ok, true);

  const [h, p] = token.split(".");
  const checks = {
    "wrong key": mintServiceToken({ accessKey: "x".repeat(44), audience }),
    "key used as base64": `${h}.${p}.${crypto.createHmac("sha256", Buffer.from(accessKey, "base64")).update(`${h}.${p}`).digest("base64url")}`,
    "other hub": mintServiceToken({ accessKey, audience: service.audience("other") }),
    expired: mintServiceToken({ accessKey, audience, now: Math.floor(Date.now() / 1000) - 7200 }),
    tampered: `${h}.${Buffer.from(JSON.stringify({ ...payload, "asrs.s.uid": "eve" })).toString("base64url")}.${token.split(".")[2]}`,
    "alg none": `${Buffer.from('{"alg":"none"}').toString("base64url")}.${p}.`,
  };
  for (const [name, bad] of Object.entries(checks)) {
    assert.equal(verifyClientToken(bad, { accessKey, audience }).ok, false, name);
  }
  assert.equal(hs256(`${h}.${p}`, accessKey), token.split(".")[2]);
});

test("functions stand-in answers like the v4 programming model", async () => {
  const res = await fetch(`${functions.origin}/api/negotiate?negotiateVersion=1`, {
    method: "POST",
    headers: { "x-ms-client-principal-id": "bob" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain;charset=UTF-8");
  const body = JSON.parse(await res.text());
  assert.deepEqual(Object.keys(body), ["url", "accessToken"]);
  assert.equal(body.url, `${service.endpoint}/client/?hub=chat`);
  assert.match(service.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  // As the SDK writes it: the url keeps the port, aud has none.
  assert.equal(decodeJwt(body.accessToken).payload.aud, "http://127.0.0.1/client/?hub=chat");
  assert.equal(decodeJwt(body.accessToken).payload["asrs.s.uid"], "bob");
  assert.equal(functions.state.lastRequest.headers["x-ms-client-principal-id"], "bob");
});

test("service negotiate refuses a missing or bad token with 401", async () => {
  const url = `${service.endpoint}/client/negotiate?hub=chat&negotiateVersion=1`;
  assert.equal((await fetch(url, { method: "POST" })).status, 401);
  const wrongKey = mintServiceToken({ accessKey: "y".repeat(44), audience: service.audience("chat") });
  const res = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${wrongKey}` } });
  assert.equal(res.status, 401);
});

test("real client connects via the functions stand-in straight to the service", async () => {
  const url = `${functions.origin}/api`;
  assert.equal(await connectAndWhoami(url, { headers: { "x-ms-client-principal-id": "bob" } }), "bob");
  assert.equal(await connectAndWhoami(url), null);
  const connects = service.state.accepted.filter((a) => a.kind === "connect");
  assert.deepEqual(connects.slice(-2).map((c) => c.uid), ["bob", null]);
});

test("service WebSocket: token in Authorization header or access_token, checked again", async () => {
  const audience = service.audience("chat");
  const good = mintServiceToken({ accessKey, audience, userId: "carol" });
  const [h, p] = good.split(".");
  const forged = `${h}.${p}.${hs256(`${h}.${p}`, "not the key")}`;

  async function negotiate() {
    const res = await fetch(`${service.endpoint}/client/negotiate?hub=chat&negotiateVersion=1`, {
      method: "POST",
      headers: { Authorization: `Bearer ${good}` },
    });
    assert.equal(res.status, 200);
    return (await res.json()).connectionToken;
  }
  function open(query, headers = {}) {
    const ws = new WebSocket(`ws://127.0.0.1:${service.port}/client/?hub=chat&${query}`, { headers });
    return new Promise((resolve, reject) => {
      ws.once("unexpected-response", (_req, res) => resolve({ status: res.statusCode }));
      ws.once("error", reject);
      ws.once("open", () => {
        ws.send('{"protocol":"json","version":1}\x1e');
        const records = [];
        ws.on("message", (data) => {
          records.push(...data.toString().split("\x1e").filter(Boolean));
          if (records.length >= 2) {
            ws.close();
            resolve({ status: 101, records: records.map((r) => JSON.parse(r)) });
          }
        });
      });
    });
  }

  assert.equal((await open(`id=${await negotiate()}`, { Authorization: `Bearer ${forged}` })).status, 401);
  assert.equal((await open(`id=${await negotiate()}`)).status, 401);
  assert.equal((await open(`id=unknown&access_token=${good}`)).status, 404);
  const browserStyle = await open(`id=${await negotiate()}&access_token=${encodeURIComponent(good)}`);
  assert.deepEqual(browserStyle.records, [{}, { type: 1, target: "whoami", arguments: ["carol"] }]);
});

// ------------------------------------------------------------- Web PubSub

describe("Web PubSub stand-ins", () => {
  const pubSubKey = crypto.randomBytes(32).toString("base64");
  let pubsub;
  let app;

  before(async () => {
    pubsub = await startWebPubSubStandIn({ accessKey: pubSubKey });
    app = await startWebPubSubAppStandIn({
      connectionString: `Endpoint=${pubsub.endpoint};AccessKey=${pubSubKey};Version=1.0;`,
      hub: "chat",
    });
  });

  after(async () => {
    await app?.close();
    await pubsub?.close();
  });

  const negotiate = async (shape, headers = {}) => {
    const res = await fetch(`${app.origin}/api/negotiate?shape=${shape}`, { method: "POST", headers });
    assert.equal(res.status, 200);
    return JSON.parse(await res.text());
  };

  test("the app's tokens come from @azure/web-pubsub, signed locally: the service hears nothing", async () => {
    const fields = { binding: ["baseUrl", "url", "accessToken"], sdk: ["token", "baseUrl", "url"], url: ["url"], isolated: ["baseUrl", "url", "AccessToken"] };
    const audience = pubsub.audience("chat");
    // The SDK keeps the Endpoint's port in aud.
    assert.match(audience, /^http:\/\/127\.0\.0\.1:\d+\/client\/hubs\/chat$/);
    for (const shape of SHAPES) {
      const body = await negotiate(shape, { "x-ms-client-principal-id": "bob" });
      assert.deepEqual(Object.keys(body), fields[shape], shape);
      const token = new URL(body.url).searchParams.get("access_token");
      for (const copy of [body.token, body.accessToken, body.AccessToken]) if (copy !== undefined) assert.equal(copy, token, shape);
      if (body.baseUrl !== undefined) assert.equal(body.url, `${body.baseUrl}?access_token=${token}`, shape);
      assert.equal(new URL(body.url).origin, pubsub.endpoint.replace(/^http/, "ws"), shape);
      const { header, payload } = decodeJwt(token);
      assert.deepEqual(header, { alg: "HS256", typ: "JWT" });
      // jsonwebtoken appends iat, exp, aud and sub to the SDK's payload.
      assert.deepEqual(Object.keys(payload), ["role", "webpubsub.group", "iat", "exp", "aud", "sub"]);
      assert.equal(payload.sub, "bob");
      assert.equal(verifyClientToken(token, { accessKey: pubSubKey, audience }).ok, true, shape);
    }
    assert.deepEqual(pubsub.state.requests, [], "getClientAccessToken called the service");
  });

  test("the real Web PubSub client connects with each shape's url straight to the service", async () => {
    for (const shape of SHAPES) {
      const bob = await connectToPubSub(async () => (await negotiate(shape, { "x-ms-client-principal-id": "bob" })).url);
      assert.equal(bob, "bob", shape);
      assert.equal(await connectToPubSub(async () => (await negotiate(shape)).url), null, shape);
    }
    assert.ok(pubsub.state.accepted.every((a) => a.protocol === "json.webpubsub.azure.v1" && a.hub === "chat"));
  });

  test("the Web PubSub service refuses what the service refuses", async () => {
    const { url } = await negotiate("url", { "x-ms-client-principal-id": "carol" });
    const good = new URL(url).searchParams.get("access_token");
    const [h, p] = good.split(".");
    const { payload } = decodeJwt(good);
    const sign = (claims, key = pubSubKey) => {
      const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
      return `${h}.${body}.${hs256(`${h}.${body}`, key)}`;
    };
    const bad = {
      "another key": sign(payload, crypto.randomBytes(32).toString("base64")),
      "the key used as base64": `${h}.${p}.${crypto.createHmac("sha256", Buffer.from(pubSubKey, "base64")).update(`${h}.${p}`).digest("base64url")}`,
      "aud without the port": sign({ ...payload, aud: "http://127.0.0.1/client/hubs/chat" }),
      "another hub": sign({ ...payload, aud: pubsub.audience("other") }),
      expired: sign({ ...payload, exp: Math.floor(Date.now() / 1000) - 60 }),
      tampered: `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: "eve" })).toString("base64url")}.${good.split(".")[2]}`,
    };
    const base = url.slice(0, url.indexOf("?"));
    for (const [name, token] of Object.entries(bad)) {
      await assert.rejects(connectToPubSub(() => `${base}?access_token=${token}`), name);
    }
    assert.equal(await connectToPubSub(() => `${base}?access_token=${good}`), "carol");
    const { sub: _sub, ...anonymous } = payload;
    assert.equal(await connectToPubSub(() => `${base}?access_token=${sign(anonymous)}`), null);
  });
});

// ------------------------------------------------------- Microsoft Entra ID

describe("Microsoft Entra ID stand-ins", () => {
  const issuer = createEntraIssuer();
  const system = newIdentity();
  const userAssigned = newIdentity(system.tenantId);
  const withoutRole = newIdentity(system.tenantId);
  let identity;
  let entraService;
  let app;

  before(async () => {
    identity = await startManagedIdentityStandIn({ issuer, system, userAssigned: [userAssigned, withoutRole] });
    entraService = await startServiceStandIn({ entraIssuer: issuer });
    entraService.grant(system.objectId);
    entraService.grant(userAssigned.objectId);
    app = await startFunctionsStandIn({
      serviceEndpoint: entraService.endpoint,
      identity: { endpoint: identity.endpoint, header: identity.header },
    });
  });

  after(async () => {
    await app?.close();
    await entraService?.close();
    await identity?.close();
  });

  const msi = (query, headers = { "X-IDENTITY-HEADER": identity.header }) =>
    fetch(`${identity.endpoint}?${query}`, { headers });
  const keyApi = (headers = {}) => fetch(`${entraService.endpoint}/api/v1/auth/accessKey`, { headers });

  test("the identity endpoint answers as App Service does, for each identity, and counts requests", async () => {
    const before = identity.state.requests.length;
    const resource = encodeURIComponent(SIGNALR_RESOURCE);
    const res = await msi(`api-version=2019-08-01&resource=${resource}`);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(Object.keys(body), ["access_token", "expires_on", "resource", "token_type", "client_id"]);
    assert.match(body.expires_on, /^\d+$/);
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.client_id, system.clientId);
    assert.deepEqual(issuer.verify(body.access_token, SIGNALR_RESOURCE), system);

    const user = await (await msi(`api-version=2019-08-01&resource=${resource}&client_id=${userAssigned.clientId}`)).json();
    assert.deepEqual(issuer.verify(user.access_token, SIGNALR_RESOURCE), userAssigned);

    const refused = {
      "no header": msi(`api-version=2019-08-01&resource=${resource}`, {}),
      "wrong header": msi(`api-version=2019-08-01&resource=${resource}`, { "X-IDENTITY-HEADER": "guess" }),
      "old api-version": msi(`api-version=2017-09-01&resource=${resource}`),
      "no resource": msi("api-version=2019-08-01"),
      "unknown client id": msi(`api-version=2019-08-01&resource=${resource}&client_id=${crypto.randomUUID()}`),
    };
    for (const [name, pending] of Object.entries(refused)) {
      const r = await pending;
      assert.ok(r.status >= 400 && r.status < 500, `${name}: ${r.status}`);
      await r.arrayBuffer();
    }
    identity.setDown(true);
    try {
      assert.equal((await msi(`api-version=2019-08-01&resource=${resource}`)).status, 500);
    } finally {
      identity.setDown(false);
    }
    assert.equal(identity.state.requests.length - before, 8);
  });

  test("the key API: 401 without a valid token, 403 without the role, else a fresh key per call", async () => {
    const tokenFor = (id, resource = SIGNALR_RESOURCE) => `Bearer ${issuer.issue(id, resource)}`;
    const stranger = createEntraIssuer();
    const statuses = {};
    const cases = {
      "no token": {},
      "another issuer": { Authorization: `Bearer ${stranger.issue(system, SIGNALR_RESOURCE)}` },
      "another resource": { Authorization: tokenFor(system, "https://management.azure.com") },
      "no role": { Authorization: tokenFor(withoutRole) },
    };
    for (const [name, headers] of Object.entries(cases)) {
      const res = await keyApi(headers);
      statuses[name] = res.status;
      await res.arrayBuffer();
    }
    assert.deepEqual(statuses, { "no token": 401, "another issuer": 401, "another resource": 401, "no role": 403 });

    const keys = [];
    for (const id of [system, system, userAssigned]) {
      const res = await keyApi({ Authorization: tokenFor(id) });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.deepEqual(Object.keys(body), ["KeyId", "AccessKey"]);
      keys.push(body);
    }
    assert.equal(new Set(keys.map((k) => k.KeyId)).size, 3, "a KeyId per call");
    assert.equal(new Set(keys.map((k) => k.AccessKey)).size, 3, "a key per call");
    assert.equal(entraService.state.keyRequests.at(-1).objectId, userAssigned.objectId);
  });

  test("the app gets its key with its identity and signs with it; the service finds the key by kid", async () => {
    const { keyId, accessKey: appKey } = app.state.temporaryKey;
    assert.equal(entraService.state.temporaryKey(keyId), appKey);
    assert.equal(entraService.state.keyRequests[0].objectId, system.objectId, "the app's own call came first");

    const res = await fetch(`${app.origin}/api/negotiate`, { method: "POST", headers: { "x-ms-client-principal-id": "bob" } });
    const { url, accessToken } = JSON.parse(await res.text());
    assert.equal(url, `${entraService.endpoint}/client/?hub=chat`);
    const { headerSegment, payload } = decodeJwt(accessToken);
    assert.equal(Buffer.from(headerSegment, "base64url").toString(), `{"alg":"HS256","typ":"JWT","kid":"${keyId}"}`);
    assert.deepEqual(Object.keys(payload), ["asrs.s.uid", "nbf", "exp", "iat", "aud"]);
    assert.equal(payload.aud, "http://127.0.0.1/client/?hub=chat");

    // Refused: no access key to fall back on, so an unknown kid or a
    // signature by another kid's key fails.
    const audience = entraService.audience("chat");
    const other = await (await keyApi({ Authorization: `Bearer ${issuer.issue(system, SIGNALR_RESOURCE)}` })).json();
    const bad = {
      "unknown kid": mintServiceToken({ accessKey: appKey, kid: crypto.randomUUID(), audience, userId: "bob" }),
      "another kid's key": mintServiceToken({ accessKey: other.AccessKey, kid: keyId, audience, userId: "bob" }),
      "the access-key kid": mintServiceToken({ accessKey: appKey, audience, userId: "bob" }),
    };
    for (const [name, token] of Object.entries(bad)) {
      const r = await fetch(`${entraService.endpoint}/client/negotiate?hub=chat&negotiateVersion=1`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(r.status, 401, name);
      await r.arrayBuffer();
    }
    assert.match(entraService.state.rejected.at(-1).reason, /no key with kid/);

    assert.equal(await connectAndWhoami(`${app.origin}/api`, { headers: { "x-ms-client-principal-id": "bob" } }), "bob");
    const connect = entraService.state.accepted.at(-1);
    assert.deepEqual(connect, { kind: "connect", hub: "chat", uid: "bob", kid: keyId, key: keyId });
  });
});
