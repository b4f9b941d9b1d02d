// A small stand-in for Azure Web PubSub, enough for the real
// @azure/web-pubsub-client to connect over WebSocket with the
// json.webpubsub.azure.v1 subprotocol (or its reliable variant).
//
// Client tokens are checked the way the service checks them:
//   - HS256, signed with the AccessKey (the UTF-8 bytes of the key string)
//     when the service has one, or with the service's own key when the
//     service issued the token itself (see below),
//   - aud must equal http://127.0.0.1:<port>/client/hubs/<hub>: the Web
//     PubSub SDKs build it from the Endpoint with its port
//     (Azure/azure-sdk-for-js, sdk/web-pubsub/web-pubsub/src/hubClient.ts;
//     Azure/azure-sdk-for-net,
//     sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs),
//   - exp must be in the future.
// The token comes in the access_token query parameter or an Authorization
// header, on /client/hubs/<hub> or /client/?hub=<hub>. Anything else gets 401.
//
// With an Entra issuer (stand-in-entra.js) the service also issues client
// tokens itself, as it does for apps that connect with Microsoft Entra ID
// instead of an AccessKey. The request, as the real @azure/web-pubsub 1.2.0
// sends it with a TokenCredential (Azure/azure-sdk-for-js,
// sdk/web-pubsub/web-pubsub/src/generated/operations/webPubSub.ts,
// generateClientTokenOperationSpec, and src/generated/models/parameters.ts):
//   POST /api/hubs/<hub>/:generateToken?api-version=...&userId=...
//        &role=...&role=...&minutesToExpire=...&group=...&clientType=...
//   Authorization: Bearer <Entra token for https://webpubsub.azure.com>
// with no body; each parameter but api-version may be missing, role and
// group repeat, minutesToExpire defaults to 60 and clientType to a default
// client. The answer is {"token": ...} (src/generated/models/mappers.ts,
// ClientTokenResponse). 401 without a valid Entra token, 403 when its
// identity lacks the "Web PubSub Service Owner" role (see grant). The token
// is signed with a key only this service holds: nobody else can make one.
//
// Once connected the service sends, as its first message,
//   {"type":"system","event":"connected","userId":<sub or null>,"connectionId":...}
// and the client reports that userId: the user the service attributed the
// connection to.
//
// Every HTTP request the service receives is recorded, so that a test can
// tell the app never called it.

import crypto from "node:crypto";
import http from "node:http";
import { WebSocketServer } from "ws";
import { WEBPUBSUB_RESOURCE } from "./stand-in-entra.js";
import { base64url, closeStandIn, hs256, verifyClientToken } from "./stand-in-service.js";

export const SUBPROTOCOLS = ["json.webpubsub.azure.v1", "json.reliable.webpubsub.azure.v1"];

// The role an identity needs on the resource to call generateToken.
export const SERVICE_OWNER_ROLE = "Web PubSub Service Owner";

const GENERATE_TOKEN_PATH = /^\/api\/hubs\/([^/]+)\/:generateToken$/;

// The service's pattern for a hub name (Azure/azure-sdk-for-js,
// sdk/web-pubsub/web-pubsub/src/generated/models/parameters.ts, hub).
const HUB_NAME = /^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$/;

// Starts the service. accessKey is its AccessKey (none: local auth is
// disabled, and only tokens the service issued itself are accepted);
// entraIssuer, when given, enables generateToken for its tokens.
export async function startWebPubSubStandIn({ accessKey, entraIssuer } = {}) {
  // The key the service signs the tokens it issues with; it never leaves
  // this function.
  const ownKey = crypto.randomBytes(32).toString("base64");
  const owners = new Set(); // object ids holding SERVICE_OWNER_ROLE
  const state = {
    // Every HTTP request: { method, path, upgrade }.
    requests: [],
    // Every accepted connection: { hub, userId, protocol, signer }, signer
    // "AccessKey" or "service" (a token the service issued).
    accepted: [],
    // Every refused request: { reason }.
    rejected: [],
    // Every generateToken call: { status, objectId (null without a valid
    // Entra token), hub, params (the query's [name, value] pairs in order),
    // headers, bodyLength, token (the one issued, else null) }.
    tokenRequests: [],
  };
  const server = http.createServer();
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const endpoint = () => `http://127.0.0.1:${server.address().port}`;
  const audience = (hub) => `${endpoint()}/client/hubs/${hub}`;

  // A token the service issued, else one signed with the AccessKey.
  function verify(token, hub) {
    const issued = verifyClientToken(token, { accessKey: ownKey, audience: audience(hub) });
    if (issued.ok || issued.reason !== "bad signature") return { ...issued, signer: "service" };
    if (accessKey === undefined) return { ok: false, reason: "bad signature (local auth is disabled)" };
    return { ...verifyClientToken(token, { accessKey, audience: audience(hub) }), signer: "AccessKey" };
  }

  server.on("request", (req, res) => {
    const url = new URL(req.url, endpoint());
    state.requests.push({ method: req.method, path: url.pathname, upgrade: false });
    const generate = GENERATE_TOKEN_PATH.exec(url.pathname);
    if (entraIssuer && generate) {
      let bodyLength = 0;
      req.on("data", (chunk) => (bodyLength += chunk.length));
      req.on("end", () => serveGenerateToken(req, res, url, decodeURIComponent(generate[1]), bodyLength));
      return;
    }
    req.resume();
    res.writeHead(404).end();
  });

  // POST /api/hubs/<hub>/:generateToken.
  function serveGenerateToken(req, res, url, hub, bodyLength) {
    const call = {
      status: 0,
      objectId: null,
      hub,
      params: [...url.searchParams],
      headers: { ...req.headers },
      bodyLength,
      token: null,
    };
    state.tokenRequests.push(call);
    // Errors are the service's ErrorDetail, {code, message}
    // (src/generated/models/mappers.ts, ErrorDetail).
    const answer = (status, body, headers = {}) => {
      call.status = status;
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", ...headers }).end(JSON.stringify(body));
    };
    const fail = (status, code, message, headers) => answer(status, { code, message }, headers);
    if (req.method !== "POST") return fail(405, "MethodNotAllowed", "generateToken takes POST");
    const auth = req.headers.authorization ?? "";
    if (!/^Bearer ./i.test(auth)) return fail(401, "Unauthorized", "a bearer token is required", { "WWW-Authenticate": "Bearer" });
    let identity;
    try {
      identity = entraIssuer.verify(auth.slice("Bearer ".length).trim(), WEBPUBSUB_RESOURCE);
    } catch (err) {
      return fail(401, "Unauthorized", `the bearer token is not valid: ${err.message}`, { "WWW-Authenticate": "Bearer" });
    }
    call.objectId = identity.objectId;
    const q = url.searchParams;
    if (!HUB_NAME.test(hub)) return fail(400, "InvalidHub", "the hub name is not valid");
    if (!q.get("api-version")) return fail(400, "MissingApiVersion", "api-version is required");
    let minutes = 60;
    if (q.has("minutesToExpire")) {
      minutes = Number(q.get("minutesToExpire"));
      if (!Number.isInteger(minutes) || minutes < 1) return fail(400, "InvalidArgument", "minutesToExpire must be a positive integer");
    }
    // The service takes the client type in any letter case; this stand-in
    // only serves default clients, on /client/hubs/<hub>.
    const clientType = q.get("clientType");
    if (clientType !== null && clientType.toLowerCase() !== "default") {
      return fail(400, "InvalidArgument", `this stand-in issues tokens for default clients only, not ${clientType}`);
    }
    if (!owners.has(identity.objectId)) return fail(403, "Forbidden", `the identity lacks the ${SERVICE_OWNER_ROLE} role`);
    const now = Math.floor(Date.now() / 1000);
    // The service documents no claims; these are those the SDKs write with
    // an AccessKey (src/hubClient.ts, getClientAccessToken), with nbf.
    const claims = { nbf: now, exp: now + minutes * 60, iat: now, aud: audience(hub) };
    if (q.get("userId")) claims.sub = q.get("userId");
    if (q.getAll("role").length > 0) claims.role = q.getAll("role");
    if (q.getAll("group").length > 0) claims["webpubsub.group"] = q.getAll("group");
    const signingInput = `${base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}`;
    call.token = `${signingInput}.${hs256(signingInput, ownKey)}`;
    answer(200, { token: call.token });
  }

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url, endpoint());
    state.requests.push({ method: req.method, path: url.pathname, upgrade: true });
    const refuse = (status, reason) => {
      state.rejected.push({ reason });
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const inPath = /^\/client\/hubs\/([^/]+)$/.exec(url.pathname);
    const hub = inPath ? inPath[1] : /^\/client\/?$/.test(url.pathname) ? url.searchParams.get("hub") : null;
    if (!hub) return refuse("404 Not Found", "no hub");
    const auth = req.headers.authorization;
    const token = auth && /^Bearer /i.test(auth) ? auth.slice(7).trim() : url.searchParams.get("access_token");
    const result = verify(token, hub);
    if (!result.ok) return refuse("401 Unauthorized", result.reason);
    const userId = typeof result.payload.sub === "string" ? result.payload.sub : null;
    wss.handleUpgrade(req, socket, head, (ws) => {
      state.accepted.push({ hub, userId, protocol: ws.protocol, signer: result.signer });
      serveConnection(ws, userId);
    });
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    state,
    endpoint: endpoint(),
    audience,
    // Checks a client token for hub as a connect does: { ok, payload,
    // signer } or { ok: false, reason }.
    verify,
    // Gives the identity with objectId the Web PubSub Service Owner role, or takes it away.
    grant: (objectId) => owners.add(objectId),
    revoke: (objectId) => owners.delete(objectId),
    close: () => closeStandIn(server, wss),
  };
}

// The subprotocol's connection: the connected message first, then pongs for
// pings and acks for what asks for one.
function serveConnection(ws, userId) {
  const send = (message) => ws.send(JSON.stringify(message));
  if (ws.protocol) {
    send({ type: "system", event: "connected", userId, connectionId: crypto.randomBytes(12).toString("base64url") });
  }
  ws.on("message", (data) => {
    let message;
    try {
      message = JSON.parse(data.toString("utf8"));
    } catch {
      ws.close(1002, "malformed message");
      return;
    }
    if (message.type === "ping") send({ type: "pong" });
    else if (message.ackId !== undefined) send({ type: "ack", ackId: message.ackId, success: true });
  });
}
