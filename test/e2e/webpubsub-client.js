// Thin wrapper around the real @azure/web-pubsub-client: connect with the URL
// a negotiate returns, wait for the service's connected message, stop.

import { WebPubSubClient, WebPubSubJsonProtocol } from "@azure/web-pubsub-client";
import { withTimeout } from "./hub-client.js";

// Resolves with the userId of the service's connected message; rejects if
// the client cannot get a URL or connect. getUrl is called as the client's
// getClientAccessUrl, as an app's page does it with its negotiate.
export async function connectAndWhoami(getUrl, timeoutMs = 5000) {
  const client = new WebPubSubClient(
    { getClientAccessUrl: async () => getUrl() },
    { protocol: WebPubSubJsonProtocol(), autoReconnect: false, autoRejoinGroups: false },
  );
  let reportConnected;
  const connected = new Promise((resolve) => (reportConnected = resolve));
  const stopped = new Promise((resolve) => client.on("stopped", resolve));
  client.on("connected", (e) => reportConnected(e));
  let started = false;
  try {
    await withTimeout(client.start(), timeoutMs, "start()");
    started = true;
    const { userId } = await withTimeout(connected, timeoutMs, "the connected message");
    return userId ?? null;
  } finally {
    if (started) {
      client.stop();
      await withTimeout(stopped, timeoutMs, "stop()");
    }
  }
}
