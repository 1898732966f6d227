// Socket.IO baseline for the hub benchmark (scripts/bench-hub).
//
// One Node process serving Socket.IO over the WebSocket transport only. Clients emit
// `joinTask(taskId)` with an acknowledgement to join the room `task:<taskId>`. A 1 ms
// timer emits `taskUpdated` to that room at the configured rate, with the same envelope
// shape as the Rust hub (`event_id`, `group`, `seq`, `type`, `data`), where `data` is about
// 100 bytes of JSON and carries `sent_ns`, the emit time in nanoseconds since the UNIX
// epoch, so that clients can compute the delivery latency.
//
// Control endpoint, the same as hub-bench-server's:
//   POST /bench/rate?messages_per_second=R   sets the emit rate (messages per second)
//   GET  /bench/stats                        returns {"emitted": N, "messages_per_second": R}
//
// Usage: node server.js --port 4100 [--rate 0] [--duration-secs 0] [--task-id UUID]

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const DEFAULT_TASK_ID = "00000000-0000-4000-8000-000000000001";
const TICK_MS = 1;

function parseArgs(argv) {
  const options = { port: 4100, rate: 0, durationSecs: 0, taskId: DEFAULT_TASK_ID };
  for (let i = 2; i < argv.length; i += 2) {
    const name = argv[i];
    const value = argv[i + 1];
    if (value === undefined) {
      throw new Error(`missing value for ${name}`);
    }
    switch (name) {
      case "--port":
        options.port = parseNonNegative(name, value);
        break;
      case "--rate":
        options.rate = parseNonNegative(name, value);
        break;
      case "--duration-secs":
        options.durationSecs = parseNonNegative(name, value);
        break;
      case "--task-id":
        options.taskId = value;
        break;
      default:
        throw new Error(`unknown option ${name}: expected --port, --rate, --duration-secs or --task-id`);
    }
  }
  return options;
}

function parseNonNegative(name, text) {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`invalid ${name} ${JSON.stringify(text)}: expected a number >= 0`);
  }
  return value;
}

// Nanoseconds since the UNIX epoch as a Number. Above 2^53 a Number keeps steps of 256 ns,
// far below the millisecond latencies measured, and JSON.stringify writes it as digits.
function unixNanos() {
  return Math.round((performance.timeOrigin + performance.now()) * 1e6);
}

// Same shape and size as the Rust server's payload (tasklane_bench::payload::task_data).
function taskData(sentNs, counter) {
  return { sent_ns: sentNs, n: counter, title: "benchmark update", pad: "x".repeat(24) };
}

// Emits at `messagesPerSecond` on average: each tick emits the messages that are due since
// the rate was set, so a late tick catches up instead of lowering the rate.
class Emitter {
  constructor(io, group) {
    this.io = io;
    this.group = group;
    this.emitted = 0;
    this.setRate(0);
  }

  setRate(messagesPerSecond) {
    this.messagesPerSecond = messagesPerSecond;
    this.rateSetAt = process.hrtime.bigint();
    this.emittedAtRateSet = this.emitted;
  }

  tick() {
    const elapsedSecs = Number(process.hrtime.bigint() - this.rateSetAt) / 1e9;
    const due = Math.floor(this.messagesPerSecond * elapsedSecs);
    while (this.emitted - this.emittedAtRateSet < due) {
      this.emitted += 1;
      const sentNs = unixNanos();
      this.io.to(this.group).emit("taskUpdated", {
        event_id: `00000000-0000-0000-0000-${this.emitted.toString(16).padStart(12, "0")}`,
        group: this.group,
        seq: this.emitted,
        type: "task.updated",
        data: taskData(sentNs, this.emitted),
      });
    }
  }
}

function handleControl(emitter, request, response) {
  const url = new URL(request.url, "http://localhost");
  if (request.method === "POST" && url.pathname === "/bench/rate") {
    const text = url.searchParams.get("messages_per_second");
    const rate = Number(text);
    if (text === null || !Number.isFinite(rate) || rate < 0) {
      response.writeHead(400, { "content-type": "text/plain" });
      response.end(`invalid messages_per_second ${JSON.stringify(text)}: expected a number >= 0\n`);
      return;
    }
    emitter.setRate(rate);
    console.log(`emit rate set to ${rate} messages/s`);
    response.writeHead(204);
    response.end();
    return;
  }
  if (request.method === "GET" && url.pathname === "/bench/stats") {
    const body = { emitted: emitter.emitted, messages_per_second: emitter.messagesPerSecond };
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
    return;
  }
  response.writeHead(404, { "content-type": "text/plain" });
  response.end("not found\n");
}

function main() {
  const options = parseArgs(process.argv);
  const group = `task:${options.taskId}`;

  let emitter = null;
  const httpServer = http.createServer((request, response) => {
    handleControl(emitter, request, response);
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
  });

  emitter = new Emitter(io, group);
  emitter.setRate(options.rate);

  io.on("connection", (socket) => {
    socket.on("joinTask", (taskId, ack) => {
      if (typeof ack !== "function") {
        return;
      }
      if (taskId !== options.taskId) {
        ack({ error: "not found" });
        return;
      }
      socket.join(group);
      ack({ seq: 0, snapshot: { id: taskId } });
    });
  });

  setInterval(() => emitter.tick(), TICK_MS);

  httpServer.listen(options.port, "127.0.0.1", () => {
    console.log(`socket.io bench server listening on 127.0.0.1:${options.port}, pid ${process.pid}`);
  });

  if (options.durationSecs > 0) {
    setTimeout(() => {
      console.log(`stopping after ${options.durationSecs} s`);
      process.exit(0);
    }, options.durationSecs * 1000);
  }
}

main();
