// A small stand-in for Azure Web PubSub, enough for the real
// @azure/web-pubsub-client to connect over WebSocket with the
// json.webpubsub.azure.v1 subprotocol (or its reliable variant).
//
// Client tokens are checked the way the service checks them:
//   - HS256, signed with the AccessKey (the UTF-8 bytes of the key string),
//   - aud must equal http://127.0.0.1:<port>/client/hubs/<hub>: the Web
//     PubSub SDKs build it from the Endpoint with its port
//     (Azure/azure-sdk-for-js, sdk/web-pubsub/web-pubsub/src/hubClient.ts;
//     Azure/azure-sdk-for-net,
//     sdk/webpubsub/Azure.Messaging.WebPubSub/src/WebPubSubServiceClient_helpers.cs),
//   - exp must be in the future.
// The token comes in the access_token query parameter or an Authorization
// header, on /client/hubs/<hub> or /client/?hub=<hub>. Anything else gets 401.
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
import { closeStandIn, verifyClientToken } from "./stand-in-service.js";

export const SUBPROTOCOLS = ["json.webpubsub.azure.v1", "json.reliable.webpubsub.azure.v1"];

export async function startWebPubSubStandIn({ accessKey }) {
  const state = {
    // Every HTTP request: { method, path, upgrade }.
    requests: [],
    // Every accepted connection: { hub, userId, protocol }.
    accepted: [],
    // Every refused request: { reason }.
    rejected: [],
  };
  const server = http.createServer();
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });
  const endpoint = () => `http://127.0.0.1:${server.address().port}`;
  const audience = (hub) => `${endpoint()}/client/hubs/${hub}`;

  server.on("request", (req, res) => {
    state.requests.push({ method: req.method, path: new URL(req.url, endpoint()).pathname, upgrade: false });
    req.resume();
    res.writeHead(404).end();
  });

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
    const result = verifyClientToken(token, { accessKey, audience: audience(hub) });
    if (!result.ok) return refuse("401 Unauthorized", result.reason);
    const userId = typeof result.payload.sub === "string" ? result.payload.sub : null;
    wss.handleUpgrade(req, socket, head, (ws) => {
      state.accepted.push({ hub, userId, protocol: ws.protocol });
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
