#!/usr/bin/env node
// Connects to a Tasklane hub with the official @microsoft/signalr client, joins tasks and
// jobs, resumes groups, and prints one JSON object per line on stdout for a test to read:
//   {"event":"joined","kind":"task"|"job","id":...,"result":{group,seq,snapshot}}
//   {"event":"resumed","result":[{group,seq} | {group,resync:true} | {group,error}]}
//   {"event":"message","method":"taskUpdated"|"notification"|"jobProgress","envelope":...}
//   {"event":"presence","method":"viewers"|"onlineUsers","envelope":{group,users}}
//   {"event":"resync","group":...}   when the server can no longer replay a resumed group
//   {"event":"error","stage":"start"|"join"|"resume"|"stop","message":...}
//                                    (join errors add kind, id)
//   {"event":"ready"}   once every join and the resume have completed or failed
//   {"event":"closed","error":...}   when the server closed the connection
//   {"event":"reconnecting","error":...}, {"event":"reconnected"}   with --auto-reconnect
//   {"event":"invoked","method":...,"result":...}   for each command read from stdin
// After "ready", each stdin line that contains {"method": NAME, "args": [...]} invokes that
// hub method, and a failure emits {"event":"error","stage":"invoke","method":...}.
// It runs until stdin closes or it gets SIGTERM or SIGINT, then stops the connection and
// exits 0. It exits 1 when the connection cannot start or the server closes it.
// Client logs go to stderr, so stdout carries only these lines.

import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const USAGE = `usage: node hub-client.mjs --url URL --token TOKEN [options]
  --url URL                  hub endpoint, e.g. http://127.0.0.1:8080/hubs/tasks
  --token TOKEN              bearer token, sent through accessTokenFactory
  --join-task ID             invoke JoinTask(ID) after connecting; repeatable
  --join-job ID              invoke JoinJob(ID) after connecting; repeatable
  --resume GROUP:SEQ         resume GROUP after sequence number SEQ, e.g. task:<id>:2;
                             repeatable, all groups go in one Resume call after the joins
  --transport NAME           websockets (default), serversentevents or longpolling
  --skip-negotiation         connect the WebSocket directly, without negotiate
  --stateful-reconnect       negotiate stateful reconnect, so a lost WebSocket is replaced
                             without losing messages
  --auto-reconnect           reconnect once, at once, after a close that allows it
  --protocol NAME            json (default) or messagepack
  --log-level LEVEL          client log level on stderr: trace, debug, information,
                             warning (default), error, critical or none`;

const CLIENT_METHODS = ["taskUpdated", "notification", "jobProgress"];
// Presence messages have no sequence number, so they get their own event.
const PRESENCE_METHODS = ["viewers", "onlineUsers"];

const TRANSPORTS = {
  websockets: signalR.HttpTransportType.WebSockets,
  serversentevents: signalR.HttpTransportType.ServerSentEvents,
  longpolling: signalR.HttpTransportType.LongPolling,
};

const LOG_LEVELS = {
  trace: signalR.LogLevel.Trace,
  debug: signalR.LogLevel.Debug,
  information: signalR.LogLevel.Information,
  warning: signalR.LogLevel.Warning,
  error: signalR.LogLevel.Error,
  critical: signalR.LogLevel.Critical,
  none: signalR.LogLevel.None,
};

function fail(message) {
  process.stderr.write(`hub-client: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    url: null,
    token: null,
    joins: [],
    resumes: [],
    transport: "websockets",
    skipNegotiation: false,
    statefulReconnect: false,
    autoReconnect: false,
    protocol: "json",
    logLevel: "warning",
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`missing value for ${flag}`);
      return argv[++i];
    };
    switch (flag) {
      case "--url": options.url = value(); break;
      case "--token": options.token = value(); break;
      case "--join-task": options.joins.push({ kind: "task", method: "JoinTask", id: value() }); break;
      case "--join-job": options.joins.push({ kind: "job", method: "JoinJob", id: value() }); break;
      case "--resume": options.resumes.push(parseResume(value())); break;
      case "--transport": options.transport = value().toLowerCase(); break;
      case "--skip-negotiation": options.skipNegotiation = true; break;
      case "--stateful-reconnect": options.statefulReconnect = true; break;
      case "--auto-reconnect": options.autoReconnect = true; break;
      case "--protocol": options.protocol = value().toLowerCase(); break;
      case "--log-level": options.logLevel = value().toLowerCase(); break;
      case "--help": case "-h": process.stdout.write(`${USAGE}\n`); process.exit(0);
      default: fail(`unknown argument ${flag}`);
    }
  }
  if (!options.url) fail("--url is required");
  if (!options.token) fail("--token is required");
  if (!(options.transport in TRANSPORTS)) fail(`unknown transport ${options.transport}`);
  if (!(options.logLevel in LOG_LEVELS)) fail(`unknown log level ${options.logLevel}`);
  if (options.protocol !== "json" && options.protocol !== "messagepack") {
    fail(`unknown protocol ${options.protocol}`);
  }
  return options;
}

// Splits GROUP:SEQ at the last colon, because group names contain one themselves.
function parseResume(text) {
  const colon = text.lastIndexOf(":");
  const afterSeq = Number(text.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(afterSeq)) {
    fail(`invalid --resume ${text}: expected GROUP:SEQ, e.g. task:<id>:2`);
  }
  return { group: text.slice(0, colon), after_seq: afterSeq };
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

// The default console logger writes information and debug lines to stdout.
function stderrLogger(minimumLevel) {
  return {
    log(level, message) {
      if (level >= minimumLevel) {
        process.stderr.write(`[signalr ${signalR.LogLevel[level]}] ${message}\n`);
      }
    },
  };
}

async function main() {
  const options = parseArgs(process.argv.slice(2));

  let builder = new signalR.HubConnectionBuilder()
    .withUrl(options.url, {
      accessTokenFactory: () => options.token,
      transport: TRANSPORTS[options.transport],
      skipNegotiation: options.skipNegotiation,
    })
    .configureLogging(stderrLogger(LOG_LEVELS[options.logLevel]));
  if (options.protocol === "messagepack") {
    builder = builder.withHubProtocol(new MessagePackHubProtocol());
  }
  if (options.statefulReconnect) {
    builder = builder.withStatefulReconnect();
  }
  if (options.autoReconnect) {
    builder = builder.withAutomaticReconnect([0]);
  }
  const connection = builder.build();

  for (const method of CLIENT_METHODS) {
    connection.on(method, (envelope) => emit({ event: "message", method, envelope }));
  }
  for (const method of PRESENCE_METHODS) {
    connection.on(method, (envelope) => emit({ event: "presence", method, envelope }));
  }
  connection.on("resync", ({ group }) => emit({ event: "resync", group }));
  connection.onreconnecting((error) => emit({ event: "reconnecting", error: error ? error.message : null }));
  connection.onreconnected(() => emit({ event: "reconnected" }));

  let stopping = false;
  connection.onclose((error) => {
    if (stopping) return;
    emit({ event: "closed", error: error ? error.message : null });
    process.exit(1);
  });

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await connection.stop();
    } catch (error) {
      emit({ event: "error", stage: "stop", message: error.message });
    }
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  let ready = false;
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line && ready) invokeCommand(connection, line);
    }
  });

  try {
    await connection.start();
  } catch (error) {
    // stdin closed or a signal arrived during start, and stop() exits the process.
    if (stopping) return;
    emit({ event: "error", stage: "start", message: error.message });
    process.exit(1);
  }

  for (const join of options.joins) {
    try {
      const result = await connection.invoke(join.method, join.id);
      emit({ event: "joined", kind: join.kind, id: join.id, result });
    } catch (error) {
      emit({ event: "error", stage: "join", kind: join.kind, id: join.id, message: error.message });
    }
  }
  if (options.resumes.length > 0) {
    try {
      const result = await connection.invoke("Resume", options.resumes);
      emit({ event: "resumed", result });
    } catch (error) {
      emit({ event: "error", stage: "resume", message: error.message });
    }
  }
  ready = true;
  emit({ event: "ready" });
}

async function invokeCommand(connection, line) {
  let command;
  try {
    command = JSON.parse(line);
  } catch (error) {
    emit({ event: "error", stage: "invoke", message: `invalid command ${line}: ${error.message}` });
    return;
  }
  try {
    const result = await connection.invoke(command.method, ...(command.args ?? []));
    emit({ event: "invoked", method: command.method, result: result ?? null });
  } catch (error) {
    emit({ event: "error", stage: "invoke", method: command.method, message: error.message });
  }
}

main().catch((error) => {
  emit({ event: "error", stage: "start", message: error.message });
  process.exit(1);
});
