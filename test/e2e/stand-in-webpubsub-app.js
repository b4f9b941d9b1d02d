// A stand-in for an Azure Functions app's Web PubSub negotiate endpoint. Its
// tokens come from the real @azure/web-pubsub package:
// WebPubSubServiceClient.getClientAccessToken, given the connection string,
// signs them locally with the AccessKey. The user id is the one a binding's
// userId expression "{headers.x-ms-client-principal-id}" would give.
//
// POST /api/negotiate?shape=<shape> answers in one of the shapes apps return:
//   binding   {"baseUrl","url","accessToken"}: the webPubSubConnection binding
//             (Azure/azure-sdk-for-net, sdk/webpubsub/
//             Microsoft.Azure.WebJobs.Extensions.WebPubSub/src/Bindings/WebPubSubConnection.cs),
//             served as a Node.js v4 function's body: JSON.stringify(...)
//   sdk       {"token","baseUrl","url"}: what getClientAccessToken returns,
//             handed back as it is (Azure/azure-sdk-for-js,
//             sdk/web-pubsub/web-pubsub/src/hubClient.ts)
//   url       {"url"}: res.json({ url: token.url }), as in the quickstarts
//   isolated  {"baseUrl","url","AccessToken"}: the .NET isolated worker's
//             WebPubSubConnection (Azure/azure-functions-dotnet-worker,
//             extensions/Worker.Extensions.WebPubSub/src/Models/Input/WebPubSubConnection.cs)
//   mismatch  {"token","url"} holding two different tokens: a broken app
//
// With a TokenCredential instead of a connection string (an app that connects
// with Microsoft Entra ID, as with the Functions setting
// WebPubSubConnectionString__serviceUri) the SDK asks the service for each
// token: POST {serviceUri}/api/hubs/{hub}/:generateToken with the credential's
// bearer token (Azure/azure-sdk-for-js, sdk/web-pubsub/web-pubsub/src/hubClient.ts,
// getClientAccessToken). The body shapes are the same.
//
// It records every request and every body it hands out.

import http from "node:http";
import { WebPubSubServiceClient } from "@azure/web-pubsub";

export const SHAPES = ["binding", "sdk", "url", "isolated"];

// The permissions and groups the app gives every connection, so that the
// token carries more than the user id.
export const ROLES = ["webpubsub.joinLeaveGroup.lobby", "webpubsub.sendToGroup.lobby"];
export const GROUPS = ["lobby"];

// The stand-ins listen on loopback plain http, and the client URLs the SDK
// builds come from the endpoint it is given (ws for http), so the SDK must
// be given the http endpoint the sidecar reads too. With a TokenCredential
// it refuses to send a bearer token to a URL that is not https:
// bearerTokenAuthenticationPolicy of @azure/core-rest-pipeline 1.24.0
// throws, and the SDK's allowInsecureConnection option does not lift that
// check (it only lets the HTTP client send to http). So, for
// http://127.0.0.1 only, a policy just before that one shows it the URL as
// https and another just after it puts http back: the request the service
// gets is the SDK's, byte for byte. The policies go into the pipeline of the
// SDK's generated client (its `client` member, which the typings do not
// show): the options' additionalPolicies all run after the bearer policy.
const BEARER_POLICY = "bearerTokenAuthenticationPolicy";
const LOOPBACK_HTTP = /^http:\/\/127\.0\.0\.1[:/]/i;
const LOOPBACK_HTTPS = /^https:\/\/127\.0\.0\.1[:/]/i;

// A WebPubSubServiceClient for serviceUri with a TokenCredential, as an app
// that connects with Microsoft Entra ID constructs it, able to reach a
// stand-in on loopback plain http.
export function entraServiceClient(serviceUri, credential, hub) {
  const client = new WebPubSubServiceClient(serviceUri, credential, hub, { allowInsecureConnection: true });
  const { pipeline } = client.client;
  pipeline.addPolicy(
    {
      name: "loopbackAsHttps",
      sendRequest: (request, next) => {
        if (LOOPBACK_HTTP.test(request.url)) request.url = `https${request.url.slice("http".length)}`;
        return next(request);
      },
    },
    { beforePolicies: [BEARER_POLICY] },
  );
  pipeline.addPolicy(
    {
      name: "loopbackBackToHttp",
      sendRequest: (request, next) => {
        if (LOOPBACK_HTTPS.test(request.url)) request.url = `http${request.url.slice("https".length)}`;
        return next(request);
      },
    },
    { afterPolicies: [BEARER_POLICY] },
  );
  return client;
}

// Starts the app with the connection string of an AccessKey, or with the
// service endpoint and a TokenCredential (serviceUri and credential).
export async function startWebPubSubAppStandIn({ connectionString, serviceUri, credential, hub }) {
  const client = credential ? entraServiceClient(serviceUri, credential, hub) : new WebPubSubServiceClient(connectionString, hub);
  const state = {
    requests: [],
    // Every body handed out: { shape, body } (body as JSON text).
    issued: [],
    // Every error getClientAccessToken threw (with a TokenCredential).
    errors: [],
    // Replaceable by a test to imitate an app with a different binding.
    userIdFrom: (headers) => headers["x-ms-client-principal-id"],
    get lastIssued() {
      return this.issued.at(-1);
    },
  };

  const token = (userId) => client.getClientAccessToken({ userId, roles: ROLES, groups: GROUPS });

  const server = http.createServer(async (req, res) => {
    state.requests.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    req.resume();
    const url = new URL(req.url, "http://127.0.0.1");
    if (req.method !== "POST" || url.pathname !== "/api/negotiate") {
      res.writeHead(404).end();
      return;
    }
    const shape = url.searchParams.get("shape") ?? "binding";
    let t;
    try {
      t = await token(state.userIdFrom(req.headers));
    } catch (err) {
      // As a function that throws: 500, and no detail for the caller.
      state.errors.push(err.message);
      res.writeHead(500).end();
      return;
    }
    let body;
    let type = "application/json";
    switch (shape) {
      case "binding":
        body = JSON.stringify({ baseUrl: t.baseUrl, url: t.url, accessToken: t.token });
        type = "text/plain;charset=UTF-8";
        break;
      case "sdk":
        body = JSON.stringify(t);
        break;
      case "url":
        body = JSON.stringify({ url: t.url });
        break;
      case "isolated":
        body = JSON.stringify({ baseUrl: t.baseUrl, url: t.url, AccessToken: t.token });
        break;
      case "mismatch":
        body = JSON.stringify({ token: t.token, url: (await token("mallory")).url });
        break;
      default:
        res.writeHead(400).end();
        return;
    }
    state.issued.push({ shape, body });
    res.writeHead(200, { "Content-Type": type });
    res.end(body);
  });

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    state,
    origin: `http://127.0.0.1:${server.address().port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
