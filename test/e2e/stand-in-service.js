// A small stand-in for Azure SignalR Service, enough for the real
// @microsoft/signalr client to negotiate and connect over WebSockets.
//
// Client tokens are checked the way Azure SignalR Service checks them:
//   - HS256, signed with the key the header's kid names (the UTF-8 bytes of
//     the key string, not its base64 decoding): a temporary key the key API
//     gave out, found by its KeyId; any other kid is checked against the
//     AccessKey, when the service has one (the SDK writes a per-process hash
//     of the AccessKey as kid there, which the service cannot look up:
//     Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Auth/AccessKey.cs),
//     and refused when it has none (local auth disabled, as with Entra ID),
//   - aud must equal http://127.0.0.1/client/?hub=<hub lowercased>: the
//     SDK builds it from the endpoint's scheme and host, never its port,
//     although the service listens on one,
//   - exp must be in the future.
// Anything else gets 401.
//
// With an Entra issuer (stand-in-entra.js) the service also serves the key
// API an app without an access key gets its keys from
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Auth/MicrosoftEntra/MicrosoftEntraAccessKey.cs):
// GET /api/v1/auth/accessKey with Authorization: Bearer <Entra token for
// https://signalr.azure.com> answers 401 without a valid token, 403 when the
// token's identity lacks the "SignalR App Server" role (see grant), and
// otherwise {"KeyId","AccessKey"}: a fresh key for every call, so that each
// caller signs with a key of its own.
//
// After the JSON hub protocol handshake the service invokes "whoami" on the
// client with the asrs.s.uid claim it saw (or null), so a test can learn
// which user id the service attributed the connection to.

import crypto from "node:crypto";
import http from "node:http";
import { WebSocketServer } from "ws";
import { SIGNALR_RESOURCE } from "./stand-in-entra.js";

export const RECORD_SEPARATOR = "\x1e";

const ALLOWED_CLOCK_SKEW_SECONDS = 300;

export function base64url(input) {
  return Buffer.from(input).toString("base64url");
}

export function hs256(signingInput, accessKey) {
  return crypto
    .createHmac("sha256", Buffer.from(accessKey, "utf8"))
    .update(signingInput)
    .digest("base64url");
}

// The aud the Azure SignalR SDK writes for an endpoint: scheme and host
// only, whatever the port (Azure/azure-signalr,
// src/Microsoft.Azure.SignalR.Common/Endpoints/ServiceEndpoint.cs,
// BuildAudienceBaseUrlEndWithSlash, and
// src/Microsoft.Azure.SignalR/EndpointProvider/DefaultServiceEndpointGenerator.cs).
export function signalRAudience(endpoint, hub) {
  const u = new URL(endpoint);
  return `${u.protocol}//${u.hostname}/client/?hub=${hub.toLowerCase()}`;
}

export function decodeJwt(token) {
  const [h, p, s] = String(token).split(".");
  return {
    headerSegment: h,
    payloadSegment: p,
    signatureSegment: s,
    header: JSON.parse(Buffer.from(h, "base64url").toString("utf8")),
    payload: JSON.parse(Buffer.from(p, "base64url").toString("utf8")),
  };
}

// Returns { ok: true, header, payload } or { ok: false, reason }. The key
// is keyFor(kid) when keyFor is given (undefined: no such key), else
// accessKey.
export function verifyClientToken(token, { accessKey, keyFor, audience, now = Date.now() / 1000 }) {
  if (typeof token !== "string" || token === "") return { ok: false, reason: "no token" };
  const parts = token.split(".");
  if (parts.length !== 3) return { ok: false, reason: "not a JWS compact serialization" };
  let header;
  let payload;
  try {
    ({ header, payload } = decodeJwt(token));
  } catch {
    return { ok: false, reason: "undecodable token" };
  }
  if (header.alg !== "HS256") return { ok: false, reason: `unexpected alg ${header.alg}` };
  const key = keyFor ? keyFor(header.kid) : accessKey;
  if (key === undefined) return { ok: false, reason: `no key with kid ${JSON.stringify(header.kid)}` };
  const expected = Buffer.from(hs256(`${parts[0]}.${parts[1]}`, key));
  const actual = Buffer.from(parts[2]);
  if (expected.length !== actual.length || !crypto.timingSafeEqual(expected, actual)) {
    return { ok: false, reason: "bad signature" };
  }
  if (payload.aud !== audience) return { ok: false, reason: `aud ${payload.aud} is not ${audience}` };
  if (typeof payload.exp !== "number" || payload.exp <= now) return { ok: false, reason: "expired" };
  if (typeof payload.nbf === "number" && payload.nbf > now + ALLOWED_CLOCK_SKEW_SECONDS) {
    return { ok: false, reason: "not yet valid" };
  }
  return { ok: true, header, payload };
}

function bearerToken(req, url) {
  const auth = req.headers.authorization;
  if (auth && /^Bearer /i.test(auth)) return auth.slice("Bearer ".length).trim();
  return url.searchParams.get("access_token");
}

export const ACCESS_KEY_PATH = "/api/v1/auth/accessKey";

// The role an identity needs on the resource to get keys.
export const APP_SERVER_ROLE = "SignalR App Server";

// Starts the service. accessKey is its AccessKey (none: local auth is
// disabled); entraIssuer, when given, enables the key API for its tokens.
export async function startServiceStandIn({ accessKey, entraIssuer } = {}) {
  const pending = new Map(); // connectionToken -> { connectionId, hub }
  const temporaryKeys = new Map(); // KeyId -> { accessKey, objectId }
  const appServers = new Set(); // object ids holding the SignalR App Server role
  const state = {
    // Every accepted request: { kind: "negotiate" | "connect", hub, uid, kid, key },
    // key being the KeyId of the temporary key that validated the token, or
    // "AccessKey".
    accepted: [],
    // Every refused request: { kind, reason }.
    rejected: [],
    // Every call of the key API: { status, objectId, keyId } (objectId null
    // without a valid token, keyId null unless a key was given out).
    keyRequests: [],
    // The temporary key given out with keyId, or undefined.
    temporaryKey: (keyId) => temporaryKeys.get(keyId)?.accessKey,
  };
  const keyFor = (kid) => (temporaryKeys.has(kid) ? temporaryKeys.get(kid).accessKey : accessKey);

  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true });

  const endpoint = () => `http://127.0.0.1:${server.address().port}`;
  const audience = (hub) => signalRAudience(endpoint(), hub);

  // Checks the hub and the token of a request; returns the payload or null.
  function authorize(kind, req, url) {
    const hub = url.searchParams.get("hub");
    if (!hub) {
      state.rejected.push({ kind, reason: "no hub" });
      return null;
    }
    const result = verifyClientToken(bearerToken(req, url), { keyFor, audience: audience(hub) });
    if (!result.ok) {
      state.rejected.push({ kind, reason: result.reason });
      return null;
    }
    const kid = result.header.kid ?? null;
    const key = temporaryKeys.has(kid) ? kid : "AccessKey";
    return { hub: hub.toLowerCase(), payload: result.payload, kid, key };
  }

  // GET /api/v1/auth/accessKey.
  function serveAccessKey(req, res) {
    const answer = (status, objectId = null, body = undefined) => {
      const keyId = body?.KeyId ?? null;
      state.keyRequests.push({ status, objectId, keyId });
      if (status === 401) res.setHeader("WWW-Authenticate", "Bearer");
      if (body === undefined) return res.writeHead(status).end();
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
    };
    if (req.method !== "GET") return answer(405);
    const auth = req.headers.authorization ?? "";
    if (!/^Bearer ./i.test(auth)) return answer(401);
    let identity;
    try {
      identity = entraIssuer.verify(auth.slice("Bearer ".length).trim(), SIGNALR_RESOURCE);
    } catch {
      return answer(401);
    }
    if (!appServers.has(identity.objectId)) return answer(403, identity.objectId);
    // Both members non-empty strings, as the SDK requires (Azure/azure-signalr,
    // MicrosoftEntraAccessKey.cs, and AccessKeyResponse.cs for the names).
    const keyId = crypto.randomUUID();
    const key = crypto.randomBytes(32).toString("base64");
    temporaryKeys.set(keyId, { accessKey: key, objectId: identity.objectId });
    answer(200, identity.objectId, { KeyId: keyId, AccessKey: key });
  }

  server.on("request", (req, res) => {
    const url = new URL(req.url, endpoint());
    req.resume();
    if (entraIssuer && url.pathname === ACCESS_KEY_PATH) {
      serveAccessKey(req, res);
      return;
    }
    if (req.method !== "POST" || !/^\/client\/?negotiate$/.test(url.pathname)) {
      res.writeHead(404).end();
      return;
    }
    const auth = authorize("negotiate", req, url);
    if (!auth) {
      res.writeHead(401, { "WWW-Authenticate": "Bearer" }).end();
      return;
    }
    const uid = auth.payload["asrs.s.uid"] ?? null;
    state.accepted.push({ kind: "negotiate", hub: auth.hub, uid, kid: auth.kid, key: auth.key });
    const connectionId = crypto.randomBytes(16).toString("base64url");
    const connectionToken = crypto.randomBytes(32).toString("base64url");
    pending.set(connectionToken, { connectionId, hub: auth.hub });
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(
      JSON.stringify({
        negotiateVersion: 1,
        connectionId,
        connectionToken,
        availableTransports: [{ transport: "WebSockets", transferFormats: ["Text", "Binary"] }],
      }),
    );
  });

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url, endpoint());
    const refuse = (status) => {
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (!/^\/client\/?$/.test(url.pathname)) return refuse("404 Not Found");
    const auth = authorize("connect", req, url);
    if (!auth) return refuse("401 Unauthorized");
    const connection = pending.get(url.searchParams.get("id"));
    if (!connection || connection.hub !== auth.hub) {
      state.rejected.push({ kind: "connect", reason: "unknown connection id" });
      return refuse("404 Not Found");
    }
    pending.delete(url.searchParams.get("id"));
    const uid = auth.payload["asrs.s.uid"] ?? null;
    state.accepted.push({ kind: "connect", hub: auth.hub, uid, kid: auth.kid, key: auth.key });
    wss.handleUpgrade(req, socket, head, (ws) => serveHubConnection(ws, uid));
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });

  return {
    state,
    port: server.address().port,
    endpoint: endpoint(),
    audience,
    // Gives the identity with objectId the SignalR App Server role, or takes it away.
    grant: (objectId) => appServers.add(objectId),
    revoke: (objectId) => appServers.delete(objectId),
    close: () => closeStandIn(server, wss),
  };
}

// Closes a stand-in service: its WebSockets, its connections, its servers.
export async function closeStandIn(server, wss) {
  for (const ws of wss.clients) ws.terminate();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => wss.close(resolve));
}

// The JSON hub protocol: records separated by 0x1E. The first record from the
// client is the handshake request; the server answers "{}" on success.
function serveHubConnection(ws, uid) {
  let buffered = "";
  let handshakeDone = false;
  const send = (message) => ws.send(JSON.stringify(message) + RECORD_SEPARATOR);

  ws.on("message", (data) => {
    buffered += data.toString("utf8");
    let end;
    while ((end = buffered.indexOf(RECORD_SEPARATOR)) >= 0) {
      const record = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      let message;
      try {
        message = JSON.parse(record);
      } catch {
        ws.close(1002, "malformed record");
        return;
      }
      if (!handshakeDone) {
        if (message.protocol !== "json" || message.version !== 1) {
          send({ error: `Requested protocol '${message.protocol}' is not available.` });
          ws.close();
          return;
        }
        handshakeDone = true;
        send({});
        send({ type: 1, target: "whoami", arguments: [uid] });
        continue;
      }
      if (message.type === 6) send({ type: 6 }); // ping
      if (message.type === 7) ws.close(); // close
    }
  });
}
