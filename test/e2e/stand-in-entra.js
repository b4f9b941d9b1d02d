// Stand-ins for the Microsoft Entra ID side of an app that connects to Azure
// SignalR Service without an access key: an issuer of Entra access tokens and
// an App Service style managed identity endpoint (IDENTITY_ENDPOINT and
// IDENTITY_HEADER) on loopback plain http. The service's key API that
// accepts these tokens is in stand-in-service.js.
//
// Protocol facts, and where they come from (paths relative to the module
// roots of github.com/Azure/azure-sdk-for-go/sdk/azidentity v1.15.0 and
// github.com/AzureAD/microsoft-authentication-library-for-go v1.10.1, "MSAL"):
//   - azidentity picks the App Service source when IDENTITY_ENDPOINT and
//     IDENTITY_HEADER are set and IDENTITY_SERVER_THUMBPRINT is not (an empty
//     value counts as unset) (MSAL apps/managedidentity/managedidentity.go,
//     GetSource);
//   - the request is GET IDENTITY_ENDPOINT?api-version=2019-08-01&resource=...
//     with the header X-IDENTITY-HEADER: <IDENTITY_HEADER>, and client_id
//     (or object_id, or mi_res_id) for a user-assigned identity (MSAL
//     managedidentity.go, createAppServiceAuthRequest);
//   - the resource is the scope without "/.default" (azidentity
//     managed_identity_credential.go, GetToken);
//   - the answer is {"access_token", "expires_on" (Unix seconds as a string),
//     "resource", "token_type": "Bearer", "client_id"} (MSAL
//     apps/internal/oauth/ops/accesstokens/tokens.go, TokenResponse);
//   - azcore retries 408, 429, 500, 502, 503, 504 and failed connections,
//     three times, from 800 ms, exponentially (azcore runtime/policy_retry.go).
//
// MSAL caches managed identity tokens for the whole process (MSAL
// managedidentity.go, cacheManager) and reuses one only while it has more
// than five minutes left (MSAL apps/internal/base/storage/items.go), so this
// endpoint issues tokens that live four minutes: each sidecar process asks
// for its own.

import crypto from "node:crypto";
import http from "node:http";

// The resource (token audience) of Azure SignalR Service's data plane; the
// SDK asks for SIGNALR_RESOURCE + "/.default" (Azure/azure-signalr,
// src/Microsoft.Azure.SignalR.Common/Constants.cs, AsrsDefaultScope).
export const SIGNALR_RESOURCE = "https://signalr.azure.com";

// The resource of Azure Web PubSub's data plane: @azure/web-pubsub asks its
// TokenCredential for WEBPUBSUB_RESOURCE + "/.default"
// (Azure/azure-sdk-for-js, sdk/web-pubsub/web-pubsub/src/hubClient.ts,
// credentialScopes).
export const WEBPUBSUB_RESOURCE = "https://webpubsub.azure.com";

export const APP_SERVICE_API_VERSION = "2019-08-01";
export const MSI_PATH = "/msi/token";
export const TOKEN_LIFETIME_SECONDS = 240;

// A service principal or managed identity as Microsoft Entra ID knows it:
// role assignments name its objectId, identity endpoints its clientId.
export function newIdentity(tenantId = crypto.randomUUID()) {
  return { tenantId, clientId: crypto.randomUUID(), objectId: crypto.randomUUID() };
}

const stsIssuer = (tenantId) => `https://sts.windows.net/${tenantId}/`;

// Issues and verifies Entra-like v1 app-only access tokens, RS256 with a key
// of its own.
export function createEntraIssuer() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const kid = crypto.createHash("sha256").update(publicKey.export({ format: "der", type: "spki" })).digest("base64url").slice(0, 27);
  return {
    issue(identity, resource, lifetimeSeconds = TOKEN_LIFETIME_SECONDS) {
      const now = Math.floor(Date.now() / 1000);
      const header = { typ: "JWT", alg: "RS256", x5t: kid, kid };
      const claims = {
        aud: resource.replace(/\/\.default$/, ""),
        iss: stsIssuer(identity.tenantId),
        iat: now,
        nbf: now,
        exp: now + lifetimeSeconds,
        appid: identity.clientId,
        idtyp: "app",
        oid: identity.objectId,
        sub: identity.objectId,
        tid: identity.tenantId,
        ver: "1.0",
      };
      const signingInput = [header, claims].map((p) => Buffer.from(JSON.stringify(p)).toString("base64url")).join(".");
      return `${signingInput}.${crypto.sign("sha256", Buffer.from(signingInput), privateKey).toString("base64url")}`;
    },
    // Returns the identity a token names, or throws saying why it is not valid.
    verify(token, audience) {
      const parts = String(token).split(".");
      if (parts.length !== 3) throw new Error("not a JWT");
      const [header, claims] = parts.slice(0, 2).map((p) => JSON.parse(Buffer.from(p, "base64url").toString("utf8")));
      if (header.alg !== "RS256") throw new Error(`alg ${header.alg}`);
      const signed = crypto.verify("sha256", Buffer.from(`${parts[0]}.${parts[1]}`), publicKey, Buffer.from(parts[2], "base64url"));
      if (!signed) throw new Error("bad signature");
      if (claims.aud !== audience) throw new Error(`aud ${claims.aud} is not ${audience}`);
      if (typeof claims.exp !== "number" || claims.exp <= Date.now() / 1000) throw new Error("expired");
      if (claims.iss !== stsIssuer(claims.tid)) throw new Error("iss does not match tid");
      if (!claims.tid || !claims.appid || !claims.oid) throw new Error("tid, appid or oid missing");
      return { tenantId: claims.tid, clientId: claims.appid, objectId: claims.oid };
    },
  };
}

// Starts an App Service style managed identity endpoint that knows the
// system-assigned identity `system` (none when null) and the user-assigned
// ones by clientId. setDown(true) makes it answer 500 to everything, as an
// endpoint that is failing; close() refuses connections from then on.
export async function startManagedIdentityStandIn({ issuer, system = null, userAssigned = [] }) {
  const secretHeader = crypto.randomUUID();
  const state = {
    // Every request: { status, clientId } (clientId null for the system identity).
    requests: [],
    // Every access token handed out, so that a test can look for them in logs.
    issued: [],
    down: false,
  };

  const server = http.createServer((req, res) => {
    req.resume();
    const url = new URL(req.url, "http://127.0.0.1");
    const clientId = url.searchParams.get("client_id");
    const answer = (status, body) => {
      state.requests.push({ status, clientId });
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(body));
    };
    // No SDK parses the error body; MSAL only quotes it in its message.
    const fail = (status, message) => answer(status, { statusCode: status, message });
    if (state.down) return fail(500, "the identity endpoint is down");
    if (req.method !== "GET" || url.pathname !== MSI_PATH) return fail(404, "not found");
    const presented = req.headers["x-identity-header"];
    if (!presented) return fail(400, "the X-IDENTITY-HEADER header is missing");
    if (presented !== secretHeader) return fail(401, "the X-IDENTITY-HEADER header is not valid");
    if (url.searchParams.get("api-version") !== APP_SERVICE_API_VERSION) return fail(400, "unsupported api-version");
    const resource = url.searchParams.get("resource");
    if (!resource) return fail(400, "the resource parameter is missing");
    if (url.searchParams.has("object_id") || url.searchParams.has("principal_id") || url.searchParams.has("mi_res_id")) {
      return fail(400, "only client_id names identities here");
    }
    const identity = clientId ? userAssigned.find((u) => u.clientId === clientId) : system;
    if (!identity) return fail(400, "no such identity is assigned to this app");
    const accessToken = issuer.issue(identity, resource);
    state.issued.push(accessToken);
    answer(200, {
      access_token: accessToken,
      expires_on: String(Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECONDS),
      resource,
      token_type: "Bearer",
      client_id: identity.clientId,
    });
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const endpoint = `http://127.0.0.1:${server.address().port}${MSI_PATH}`;

  return {
    state,
    endpoint,
    header: secretHeader,
    // The environment that makes azidentity (and the app stand-in) use this endpoint.
    env: () => ({ IDENTITY_ENDPOINT: endpoint, IDENTITY_HEADER: secretHeader, IDENTITY_SERVER_THUMBPRINT: "" }),
    setDown(down) {
      state.down = down;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// Gets a token for resource (SignalR unless told) from an App Service
// identity endpoint as MSAL asks for one: what the app stand-ins do with
// their IDENTITY_ENDPOINT. Returns the access token.
export async function getManagedIdentityToken(identity, resource = SIGNALR_RESOURCE) {
  return (await getManagedIdentityAnswer(identity, resource)).access_token;
}

async function getManagedIdentityAnswer({ endpoint, header, clientId }, resource) {
  const url = new URL(endpoint);
  url.searchParams.set("api-version", APP_SERVICE_API_VERSION);
  url.searchParams.set("resource", resource);
  if (clientId) url.searchParams.set("client_id", clientId);
  const res = await fetch(url, { headers: { "X-IDENTITY-HEADER": header } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`the identity endpoint answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

// A TokenCredential (@azure/core-auth: an object with getToken(scopes)) for
// the managed identity behind an App Service identity endpoint, as
// ManagedIdentityCredential of @azure/identity would be: one scope, turned
// into the resource by dropping "/.default" (azidentity
// managed_identity_credential.go does the same), and the answer's
// expires_on (Unix seconds) as expiresOnTimestamp (milliseconds, as
// @azure/core-auth's AccessToken has it). It keeps every scope list it was
// asked for in `scopes`, so that a test can tell what an SDK asked for.
export function managedIdentityCredential(identity) {
  const scopes = [];
  return {
    scopes,
    async getToken(requested) {
      const list = Array.isArray(requested) ? requested : [requested];
      scopes.push(list);
      if (list.length !== 1) throw new Error(`a managed identity takes one scope, not ${list.length}`);
      const answer = await getManagedIdentityAnswer(identity, list[0].replace(/\/\.default$/, ""));
      return { token: answer.access_token, expiresOnTimestamp: Number(answer.expires_on) * 1000, tokenType: "Bearer" };
    },
  };
}
