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
// With an identity instead of an AccessKey (Microsoft Entra ID, as with a
// connection string's AuthType=azure.msi or the identity-based settings) it
// first gets a key of its own as the SDK does: an Entra token from its
// managed identity endpoint, then GET {Endpoint}/api/v1/auth/accessKey with
// it, answered with {"KeyId","AccessKey"} (Azure/azure-signalr,
// src/Microsoft.Azure.SignalR.Common/Auth/MicrosoftEntra/MicrosoftEntraAccessKey.cs).
// It signs with that AccessKey and writes its KeyId as the header's kid;
// the body is otherwise the same.
//
// It records every request it receives, so a test can assert what the app saw.

import http from "node:http";
import { getManagedIdentityToken } from "./stand-in-entra.js";
import { ACCESS_KEY_PATH, base64url, hs256, signalRAudience } from "./stand-in-service.js";

// The header the SignalR extension writes, byte for byte.
export const TOKEN_HEADER_JSON = '{"alg":"HS256","typ":"JWT","kid":"-1895682698"}';

// The header for a temporary key: the same members, kid the key's KeyId
// (Azure/azure-signalr, src/Microsoft.Azure.SignalR.Common/Auth/JwtHeader.cs).
export const tokenHeaderJson = (kid) => `{"alg":"HS256","typ":"JWT","kid":${JSON.stringify(kid)}}`;

// Gets a temporary key from the service's key API with a token from the
// managed identity endpoint, as the SDK does: { keyId, accessKey }.
export async function getTemporaryKey(serviceEndpoint, identity) {
  const token = await getManagedIdentityToken(identity);
  const res = await fetch(`${serviceEndpoint}${ACCESS_KEY_PATH}`, { headers: { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`the key API answered ${res.status}`);
  const { KeyId, AccessKey } = JSON.parse(text);
  return { keyId: KeyId, accessKey: AccessKey };
}

export function mintServiceToken({ accessKey, kid, audience, userId, now = Math.floor(Date.now() / 1000) }) {
  const claims = {};
  if (userId !== undefined) claims["asrs.s.uid"] = userId;
  claims.nbf = now;
  claims.exp = now + 3600;
  claims.iat = now;
  claims.aud = audience;
  const header = kid === undefined ? TOKEN_HEADER_JSON : tokenHeaderJson(kid);
  const signingInput = `${base64url(header)}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${hs256(signingInput, accessKey)}`;
}

// The binding's userId expression: {headers.x-ms-client-principal-id}.
export const userIdFromPrincipalHeader = (headers) => headers["x-ms-client-principal-id"];

// Starts the app. It signs with accessKey, or, given identity ({ endpoint,
// header, clientId? }: its IDENTITY_ENDPOINT, IDENTITY_HEADER and, for a
// user-assigned identity, the client id its settings name), with a temporary
// key it gets before it starts listening.
export async function startFunctionsStandIn({ serviceEndpoint, accessKey, identity }) {
  // { keyId, accessKey } in Entra mode; the kid is then the KeyId.
  const temporaryKey = identity ? await getTemporaryKey(serviceEndpoint, identity) : undefined;
  const signingKey = temporaryKey ? { accessKey: temporaryKey.accessKey, kid: temporaryKey.keyId } : { accessKey };
  const state = {
    // The key the app got from the key API, in Entra mode.
    temporaryKey,
    // Every request: { method, url, headers } (header names lowercased by Node).
    requests: [],
    // How many connections the app has accepted.
    connections: 0,
    // When set, the app closes each connection this many milliseconds
    // after answering on it, as Node.js closes one left idle for its
    // keepAliveTimeout (5 s by default).
    closeIdleAfterMs: undefined,
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
    if (state.closeIdleAfterMs !== undefined) {
      const { socket } = req;
      res.on("finish", () => setTimeout(() => socket.destroy(), state.closeIdleAfterMs));
    }
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
      ...signingKey,
      audience: signalRAudience(serviceEndpoint, hub),
      userId: state.userIdFrom(req.headers),
    });
    state.issued.push({ hub, url, accessToken });
    res.writeHead(200, { "Content-Type": "text/plain;charset=UTF-8" });
    res.end(JSON.stringify({ url, accessToken }));
  });

  server.on("connection", () => state.connections++);
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
