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
// It records every request and every body it hands out.

import http from "node:http";
import { WebPubSubServiceClient } from "@azure/web-pubsub";

export const SHAPES = ["binding", "sdk", "url", "isolated"];

// The permissions and groups the app gives every connection, so that the
// token carries more than the user id.
const ROLES = ["webpubsub.joinLeaveGroup.lobby", "webpubsub.sendToGroup.lobby"];
const GROUPS = ["lobby"];

export async function startWebPubSubAppStandIn({ connectionString, hub }) {
  const client = new WebPubSubServiceClient(connectionString, hub);
  const state = {
    requests: [],
    // Every body handed out: { shape, body } (body as JSON text).
    issued: [],
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
    const t = await token(state.userIdFrom(req.headers));
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
