// Checks the stand-ins on their own, without the sidecar: if these fail, the
// end-to-end results in the other files say nothing about the sidecar.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, before, describe, test } from "node:test";
import { WebSocket } from "ws";
import { connectAndWhoami } from "./hub-client.js";
import { WebPubSubServiceClient } from "@azure/web-pubsub";
import {
  createEntraIssuer,
  managedIdentityCredential,
  newIdentity,
  SIGNALR_RESOURCE,
  startManagedIdentityStandIn,
  WEBPUBSUB_RESOURCE,
} from "./stand-in-entra.js";
import { entraServiceClient, GROUPS, ROLES, SHAPES, startWebPubSubAppStandIn } from "./stand-in-webpubsub-app.js";
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

// ------------------------------------- Web PubSub with Microsoft Entra ID

describe("Web PubSub with Microsoft Entra ID stand-ins", () => {
  const issuer = createEntraIssuer();
  const owner = newIdentity();
  const withoutRole = newIdentity(owner.tenantId);
  let identity;
  let pubsub;
  let credential;
  let app;

  before(async () => {
    identity = await startManagedIdentityStandIn({ issuer, userAssigned: [owner, withoutRole] });
    pubsub = await startWebPubSubStandIn({ entraIssuer: issuer });
    pubsub.grant(owner.objectId);
    credential = managedIdentityCredential({ endpoint: identity.endpoint, header: identity.header, clientId: owner.clientId });
    app = await startWebPubSubAppStandIn({ serviceUri: pubsub.endpoint, credential, hub: "chat" });
  });

  after(async () => {
    await app?.close();
    await pubsub?.close();
    await identity?.close();
  });

  const generateToken = (query, headers = {}, hub = "chat") =>
    fetch(`${pubsub.endpoint}/api/hubs/${hub}/:generateToken?${query}`, { method: "POST", headers });
  const bearer = (id, resource = WEBPUBSUB_RESOURCE) => ({ Authorization: `Bearer ${issuer.issue(id, resource)}` });

  test("the credential gets the managed identity's token for the scope's resource", async () => {
    const scope = `${WEBPUBSUB_RESOURCE}/.default`;
    const before = Date.now();
    const token = await managedIdentityCredential({ endpoint: identity.endpoint, header: identity.header, clientId: owner.clientId }).getToken([scope]);
    assert.deepEqual(issuer.verify(token.token, WEBPUBSUB_RESOURCE), owner);
    assert.ok(token.expiresOnTimestamp > before + 60_000 && token.expiresOnTimestamp < before + 600_000, "milliseconds");
    assert.equal(identity.state.requests.at(-1).clientId, owner.clientId);
  });

  test("generateToken: 401 without a valid token, 403 without the role, 400 for what it does not take", async () => {
    const q = "api-version=2024-12-01&userId=bob";
    const statuses = {};
    const cases = {
      "no token": [q, {}],
      "another issuer": [q, { Authorization: `Bearer ${createEntraIssuer().issue(owner, WEBPUBSUB_RESOURCE)}` }],
      "a SignalR token": [q, bearer(owner, SIGNALR_RESOURCE)],
      "no role": [q, bearer(withoutRole)],
      "no api-version": ["userId=bob", bearer(owner)],
      "minutesToExpire 0": [`${q}&minutesToExpire=0`, bearer(owner)],
      "an MQTT client": [`${q}&clientType=mqtt`, bearer(owner)],
    };
    for (const [name, [query, headers]] of Object.entries(cases)) {
      const res = await generateToken(query, headers);
      statuses[name] = res.status;
      if (res.status === 401) assert.equal(res.headers.get("www-authenticate"), "Bearer", name);
      assert.doesNotMatch(await res.text(), /eyJ/, name);
    }
    assert.deepEqual(statuses, {
      "no token": 401,
      "another issuer": 401,
      "a SignalR token": 401,
      "no role": 403,
      "no api-version": 400,
      "minutesToExpire 0": 400,
      "an MQTT client": 400,
    });
    assert.equal(pubsub.state.tokenRequests.at(-4).objectId, withoutRole.objectId);
    assert.equal(pubsub.state.tokenRequests.at(-4).status, 403);
  });

  test("generateToken issues a token with the service's own key, for what was asked", async () => {
    for (const clientType of ["", "&clientType=default", "&clientType=Default"]) {
      const res = await generateToken(`api-version=2024-12-01&userId=bob&role=r1&role=r2&group=g&minutesToExpire=5${clientType}`, bearer(owner));
      assert.equal(res.status, 200, clientType);
      const body = await res.json();
      assert.deepEqual(Object.keys(body), ["token"]);
      const { header, payload } = decodeJwt(body.token);
      assert.deepEqual(header, { alg: "HS256", typ: "JWT" });
      assert.deepEqual(Object.keys(payload), ["nbf", "exp", "iat", "aud", "sub", "role", "webpubsub.group"]);
      assert.deepEqual([payload.sub, payload.role, payload["webpubsub.group"], payload.aud], ["bob", ["r1", "r2"], ["g"], pubsub.audience("chat")]);
      assert.equal(payload.exp - payload.iat, 300);
      assert.deepEqual(pubsub.verify(body.token, "chat").signer, "service");
      assert.equal(pubsub.verify(body.token, "chat").ok, true);
      assert.equal(pubsub.verify(body.token, "other").ok, false);
      const call = pubsub.state.tokenRequests.at(-1);
      assert.equal(call.token, body.token);
      assert.equal(call.objectId, owner.objectId);
    }
    const anonymous = await (await generateToken("api-version=2024-12-01", bearer(owner))).json();
    const { payload } = decodeJwt(anonymous.token);
    assert.deepEqual(Object.keys(payload), ["nbf", "exp", "iat", "aud"]);
    assert.equal(payload.exp - payload.iat, 3600, "60 minutes unless asked");
  });

  test("the app's tokens come from the real SDK's generateToken request, as its identity", async () => {
    const fields = { binding: ["baseUrl", "url", "accessToken"], sdk: ["token", "baseUrl", "url"], url: ["url"], isolated: ["baseUrl", "url", "AccessToken"] };
    for (const shape of SHAPES) {
      const res = await fetch(`${app.origin}/api/negotiate?shape=${shape}`, { method: "POST", headers: { "x-ms-client-principal-id": "bob" } });
      assert.equal(res.status, 200, shape);
      const body = JSON.parse(await res.text());
      assert.deepEqual(Object.keys(body), fields[shape], shape);
      const token = new URL(body.url).searchParams.get("access_token");
      const call = pubsub.state.tokenRequests.at(-1);
      assert.equal(call.token, token, shape);
      assert.equal(call.objectId, owner.objectId, shape);
      assert.deepEqual(call.params, [
        ["api-version", "2024-12-01"],
        ["userId", "bob"],
        ...ROLES.map((r) => ["role", r]),
        ["minutesToExpire", "60"],
        ...GROUPS.map((g) => ["group", g]),
      ]);
      assert.equal(call.bodyLength, 0);
      assert.match(call.headers["user-agent"], /^azsdk-js-web-pubsub\//);
      assert.equal(call.headers.accept, "application/json, text/json");
    }
    assert.deepEqual(credential.scopes.at(-1), [`${WEBPUBSUB_RESOURCE}/.default`]);
    assert.deepEqual(app.state.errors, []);
  });

  test("the SDK writes clientType as its clientProtocol says, default among them", async () => {
    const client = entraServiceClient(pubsub.endpoint, credential, "chat");
    const { token, baseUrl } = await client.getClientAccessToken({ userId: "bob", clientProtocol: "default" });
    assert.equal(baseUrl, `${pubsub.endpoint.replace(/^http/, "ws")}/client/hubs/chat`);
    const call = pubsub.state.tokenRequests.at(-1);
    assert.equal(call.token, token);
    assert.deepEqual(call.params, [["api-version", "2024-12-01"], ["userId", "bob"], ["minutesToExpire", "60"], ["clientType", "default"]]);
  });

  test("the SDK's bearer token goes to loopback plain http only through the app's policies", async () => {
    const plain = new WebPubSubServiceClient(pubsub.endpoint, credential, "chat", { allowInsecureConnection: true });
    await assert.rejects(plain.getClientAccessToken({ userId: "bob" }), /non-TLS/);
  });

  test("an app whose identity lacks the role gets a 500 and no token", async () => {
    const noRoleCredential = managedIdentityCredential({ endpoint: identity.endpoint, header: identity.header, clientId: withoutRole.clientId });
    const noRoleApp = await startWebPubSubAppStandIn({ serviceUri: pubsub.endpoint, credential: noRoleCredential, hub: "chat" });
    try {
      const res = await fetch(`${noRoleApp.origin}/api/negotiate?shape=sdk`, { method: "POST" });
      assert.equal(res.status, 500);
      assert.equal(await res.text(), "");
      assert.equal(pubsub.state.tokenRequests.at(-1).status, 403);
      assert.equal(noRoleApp.state.errors.length, 1);
    } finally {
      await noRoleApp.close();
    }
  });

  test("the real Web PubSub client connects with the app's url; the service has no AccessKey to fall back on", async () => {
    const url = async (user) => {
      const res = await fetch(`${app.origin}/api/negotiate?shape=url`, { method: "POST", headers: { "x-ms-client-principal-id": user } });
      return JSON.parse(await res.text()).url;
    };
    assert.equal(await connectToPubSub(() => url("bob")), "bob");
    assert.deepEqual(pubsub.state.accepted.at(-1), { hub: "chat", userId: "bob", protocol: "json.webpubsub.azure.v1", signer: "service" });
    const good = new URL(await url("carol")).searchParams.get("access_token");
    const [h, p] = good.split(".");
    const base = `${pubsub.endpoint.replace(/^http/, "ws")}/client/hubs/chat`;
    const forged = `${h}.${p}.${hs256(`${h}.${p}`, crypto.randomBytes(32).toString("base64"))}`;
    await assert.rejects(connectToPubSub(() => `${base}?access_token=${forged}`));
    assert.match(pubsub.state.rejected.at(-1).reason, /local auth is disabled/);
    assert.equal(await connectToPubSub(() => `${base}?access_token=${good}`), "carol");
  });
});
