// An agent desktop on the stock npm socket.io-client, driven by the Python tests.
//
// Usage: node desktop.mjs --url http://127.0.0.1:PORT [--token JWT] [--join NAME]...
//                         [--events N] [--linger MS] [--timeout MS] [--reconnect]
//                         [--transports websocket|polling|polling,websocket|default]
// The token may also come from DESKTOP_TOKEN. Connects with the given transports
// (default: the websocket transport only; "default" passes no transports option, as
// io(url, {auth: {token}}) does: socket.io-client's own default, long-polling then the
// upgrade) and auth {token}, joins every --join with an ack, and prints one
// JSON line per thing that happens. It exits after N conversation events (plus
// --linger ms, so duplicates still show), after --timeout ms, on a refused
// connection, on "exit" or end of standard input. Standard input also takes
// "join NAME" and "leave NAME" lines, so a test can change membership later, and
// "emit EVENT JSON" lines, which emit EVENT with the JSON value as its argument,
// "call NAME JSON" lines, which emit with an acknowledgement (reported as "ack") an
// event whose name is the JSON value NAME (a number is a name socket.io-parser accepts),
// "emit-binary EVENT" lines, which emit EVENT with a Buffer (a binary event), and
// "token JWT" lines, which replace the token the next (re)connection presents.
// A "disconnect" line names the WebSocket's close code and reason when it had them.
// With --reconnect the client reconnects by itself (socket.io-client's default, with
// a short fixed delay), and "connected" reports whether the session was recovered.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { io } from "socket.io-client";

const { values: options } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    join: { type: "string", multiple: true, default: [] },
    events: { type: "string" },
    linger: { type: "string", default: "0" },
    timeout: { type: "string", default: "30000" },
    reconnect: { type: "boolean", default: false },
    transports: { type: "string", default: "websocket" },
  },
});
const expectedEvents = options.events === undefined ? Infinity : Number(options.events);
const token = options.token ?? process.env.DESKTOP_TOKEN;

function report(kind, fields = {}) {
  process.stdout.write(JSON.stringify({ kind, ...fields }) + "\n");
}

function finish(reason) {
  report("exit", { reason });
  socket.off("disconnect"); // only disconnects the test did not ask for are reported
  socket.close();
  process.exit(0);
}

const socket = io(options.url, {
  ...(options.transports === "default" ? {} : { transports: options.transports.split(",") }),
  auth: { token },
  // Without --reconnect a dropped connection must show up in the test, not be silently re-made.
  reconnection: options.reconnect,
  reconnectionDelay: 300,
  reconnectionDelayMax: 300,
  randomizationFactor: 0,
});

// socket.io-client buffers events that arrive before the CONNECT packet and drops
// them when the connection is refused, so the "unauthenticated" event the server
// sends before refusing is visible only among the packets the manager decodes.
socket.io.on("packet", (packet) => {
  if (Array.isArray(packet.data) && packet.data[0] === "unauthenticated") {
    report("unauthenticated");
  }
});

// Each Engine.IO connection that upgrades from long-polling reports it.
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => report("upgrade", { transport: transport.name }));
});

async function changeMembership(event, name) {
  const args = await new Promise((resolve) => socket.emit(event, name, (...ackArgs) => resolve(ackArgs)));
  report("ack", { event, name, args });
}

let connections = 0;
socket.on("connect", async () => {
  connections += 1;
  report("connected", { recovered: socket.recovered, transport: socket.io.engine.transport.name });
  if (connections > 1) return; // a reconnection: a recovered session has its conversations back
  for (const name of options.join) {
    await changeMembership("join-conversation", name);
  }
});

socket.on("connect_error", (error) => {
  report("connect_error", { message: error.message });
  if (!options.reconnect || socket.active === false) finish("connect_error");
});

socket.on("disconnect", (reason, details) => {
  // For the websocket transport, the WebSocket's close event; for long-polling, whatever failed (not reported).
  const closed = details?.context ?? {};
  const code = typeof closed.code === "number" ? closed.code : undefined;
  const closeReason = typeof closed.reason === "string" ? closed.reason : undefined;
  report("disconnect", { reason, code, closeReason });
});

let received = 0;
socket.onAny((event, ...args) => {
  report("event", { event, args });
  received += 1;
  if (received === expectedEvents) {
    setTimeout(() => finish("events"), Number(options.linger));
  }
});

setTimeout(() => finish("timeout"), Number(options.timeout));

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, name] = line.trim().split(/\s+/, 2);
  if (command === "join") changeMembership("join-conversation", name);
  else if (command === "leave") changeMembership("leave-conversation", name);
  else if (command === "token") socket.auth.token = name; // as the UI modules' setAuthToken does
  else if (command === "exit") finish("stdin");
  else if (command === "emit") {
    const [, event, ...json] = line.trim().split(" ");
    socket.emit(event, JSON.parse(json.join(" ")));
  } else if (command === "call") {
    const [, event, ...json] = line.trim().split(" ");
    const name = JSON.parse(event);
    socket.emit(name, JSON.parse(json.join(" ")), (...args) => report("ack", { event: name, args }));
  } else if (command === "emit-binary") socket.emit(name, Buffer.from("binary"));
}).on("close", () => finish("stdin closed"));
