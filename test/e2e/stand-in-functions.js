// A stand-in for the Azure Functions app's SignalR negotiate endpoint.
//
// It answers like a Node.js v4 programming model function with a
// signalRConnectionInfo input binding whose userId is
// "{headers.x-ms-client-principal-id}": the JSON text
//   {"url":"<service>/client/?hub=<hub>","accessToken":"<jwt>"}
// served as text/plain;charset=UTF-8, where the JWT is HS256-signed with the
// AccessKey, its aud built as the SDK builds it (without the service's
// port, which the url keeps), and carries asrs.s.uid only when the request
// had the header.
//
// It records every request it receives, so a test can assert what the app saw.

import http from "node:http";
import { base64url, hs256, signalRAudience } from "./stand-in-service.js";

// The header the SignalR extension writes, byte for byte.
export const TOKEN_HEADER_JSON = '{"alg":"HS256","typ":"JWT","kid":"-1895682698"}';

export function mintServiceToken({ accessKey, audience, userId, now = Math.floor(Date.now() / 1000) }) {
  const claims = {};
  if (userId !== undefined) claims["asrs.s.uid"] = userId;
  claims.nbf = now;
  claims.exp = now + 3600;
  claims.iat = now;
  claims.aud = audience;
  const signingInput = `${base64url(TOKEN_HEADER_JSON)}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${hs256(signingInput, accessKey)}`;
}

// The binding's userId expression: {headers.x-ms-client-principal-id}.
export const userIdFromPrincipalHeader = (headers) => headers["x-ms-client-principal-id"];

export async function startFunctionsStandIn({ serviceEndpoint, accessKey }) {
  const state = {
    // Every request: { method, url, headers } (header names lowercased by Node).
    requests: [],
    // Every token handed out: { hub, url, accessToken }.
    issued: [],
    // Replaceable by a test to imitate an app with a different binding.
    userIdFrom: userIdFromPrincipalHeader,
    get lastRequest() {
      return this.requests.at(-1);
    },
    get lastIssued() {
      return this.issued.at(-1);
    },
  };

  const server = http.createServer((req, res) => {
    state.requests.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    req.resume();
    const { pathname } = new URL(req.url, "http://127.0.0.1");
    const match = /^\/api(?:\/([^/]+))?\/negotiate$/.exec(pathname);
    if (req.method !== "POST" || !match) {
      res.writeHead(404).end();
      return;
    }
    const hub = (match[1] ?? "chat").toLowerCase();
    const url = `${serviceEndpoint}/client/?hub=${hub}`;
    const accessToken = mintServiceToken({
      accessKey,
      audience: signalRAudience(serviceEndpoint, hub),
      userId: state.userIdFrom(req.headers),
    });
    state.issued.push({ hub, url, accessToken });
    res.writeHead(200, { "Content-Type": "text/plain;charset=UTF-8" });
    res.end(JSON.stringify({ url, accessToken }));
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });

  return {
    state,
    port: server.address().port,
    origin: `http://127.0.0.1:${server.address().port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
