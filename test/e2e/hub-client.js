// Thin wrapper around the real @microsoft/signalr client: connect, wait for
// the service's "whoami" invocation, disconnect.

import { HubConnectionBuilder } from "@microsoft/signalr";

const silentLogger = { log() {} };

export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Resolves with the user id the service reported, rejects if start() fails.
export async function connectAndWhoami(url, options = {}, timeoutMs = 5000) {
  const connection = new HubConnectionBuilder()
    .withUrl(url, options)
    .configureLogging(silentLogger)
    .build();
  let reportUid;
  const whoami = new Promise((resolve) => (reportUid = resolve));
  connection.on("whoami", (uid) => reportUid(uid));
  try {
    await withTimeout(connection.start(), timeoutMs, "start()");
    return await withTimeout(whoami, timeoutMs, "whoami");
  } finally {
    await connection.stop();
  }
}
