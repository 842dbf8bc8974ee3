// Many agent desktops on the stock npm socket.io-client in one node process, for the rolling-deploy scenario
// (testing/rolling_deploy.py): each reconnects by itself (socket.io-client's defaults) and recovers its session.
//
// Usage: node fleet.mjs   (standard input: one JSON line {"url": ..., "desktops": [{"token", "join",
//                          "transports", "joinOptions"?}, ...]}, then command lines)
// Prints one JSON line per happening, each with "d", the desktop's index:
//   {"kind": "connected", "d", "recovered", "transport", "afterMs"}  afterMs: since its last disconnect
//   {"kind": "joined", "d", "ok"}        {"kind": "disconnect", "d", "reason", "code"}
//   {"kind": "event", "d", "id"}         (a conversation event's message_id)
//   {"kind": "connect_error", "d", "message"}
// "spacingMs" in the configuration spaces the desktops' first connections (default 0: all at once).
// Commands: "status" prints {"kind": "status", "connected": [d...], "disconnected": [d...]}; "exit" closes all.
// Reconnection keeps socket.io-client's own defaults (1 s, randomized by half, up to 5 s): what a desktop does.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

function report(kind, fields) {
  process.stdout.write(JSON.stringify({ kind, ...fields }) + "\n");
}

const sockets = [];

function start() {
  config.desktops.forEach((desktop, d) => setTimeout(() => open(desktop, d), d * (config.spacingMs ?? 0)));
}

function open(desktop, d) {
  const socket = io(config.url, {
    forceNew: true,
    transports: desktop.transports,
    auth: { token: desktop.token },
  });
  let lostAt = null;
  let joined = false;
  socket.on("connect", async () => {
    report("connected", {
      d,
      recovered: socket.recovered,
      transport: socket.io.engine.transport.name,
      afterMs: lostAt === null ? null : performance.now() - lostAt,
    });
    lostAt = null;
    if (joined && socket.recovered) return; // its conversation came back with the session
    // The acknowledgement is [true, name]; emitWithAck resolves with its first argument.
    // "joinOptions" (such as {"history": true}) go with the join when given.
    const options = desktop.joinOptions === undefined ? [] : [desktop.joinOptions];
    const ok = await socket.timeout(30000).emitWithAck("join-conversation", desktop.join, ...options)
      .catch(() => false);
    joined = ok === true;
    report("joined", { d, ok: joined });
  });
  socket.on("disconnect", (reason, details) => {
    lostAt = lostAt ?? performance.now();
    const code = typeof details?.context?.code === "number" ? details.context.code : undefined;
    report("disconnect", { d, reason, code });
  });
  socket.on("connect_error", (error) => {
    lostAt = lostAt ?? performance.now();
    report("connect_error", { d, message: error.message });
  });
  socket.onAny((event, payload) => {
    if (payload && typeof payload === "object" && "message_id" in payload) {
      report("event", { d, id: payload.message_id });
    }
  });
  sockets[d] = socket;
}

let config = null;
createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (config === null) {
      config = JSON.parse(line);
      start();
      return;
    }
    const command = line.trim();
    if (command === "status") {
      const connected = [];
      const disconnected = [];
      config.desktops.forEach((_, d) => (sockets[d]?.connected ? connected : disconnected).push(d));
      report("status", { connected, disconnected });
    } else if (command === "exit") {
      sockets.forEach((socket) => socket?.close());
      process.exit(0);
    }
  })
  .on("close", () => process.exit(0));
