// A local SMTP server for integration tests. It accepts every message without TLS or
// authentication and prints it to stdout as one JSON line:
//   {"event":"message","envelope_from":...,"envelope_to":[...],"from":...,"to":...,
//    "subject":...,"text":...,"message_id":...}
// The first line reports the port: {"event":"listening","port":N}.
//
// Usage: node smtp-capture.mjs [--port N]   (port 0, the default, picks a free one)
// The server exits when its standard input closes, so it cannot outlive the test process.

import { SMTPServer } from "smtp-server";
import { simpleParser } from "mailparser";

function parsePort(argv) {
  const index = argv.indexOf("--port");
  if (index === -1) {
    return 0;
  }
  const port = Number(argv[index + 1]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid --port ${argv[index + 1]}: expected 0 to 65535`);
    process.exit(2);
  }
  return port;
}

function print(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

const server = new SMTPServer({
  secure: false,
  disabledCommands: ["STARTTLS"],
  authOptional: true,
  allowInsecureAuth: true,
  logger: false,
  onAuth(auth, session, callback) {
    callback(null, { user: auth.username });
  },
  onData(stream, session, callback) {
    simpleParser(stream)
      .then((parsed) => {
        print({
          event: "message",
          envelope_from: session.envelope.mailFrom && session.envelope.mailFrom.address,
          envelope_to: session.envelope.rcptTo.map((recipient) => recipient.address),
          from: parsed.from ? parsed.from.text : null,
          to: parsed.to ? parsed.to.text : null,
          subject: parsed.subject ?? null,
          text: parsed.text ?? null,
          message_id: parsed.messageId ?? null,
        });
        callback();
      })
      .catch((error) => {
        console.error(`parsing a message failed: ${error.message}`);
        callback(error);
      });
  },
});

server.on("error", (error) => console.error(`smtp server error: ${error.message}`));

server.listen(parsePort(process.argv), "127.0.0.1", () => {
  print({ event: "listening", port: server.server.address().port });
});

process.stdin.on("end", () => server.close(() => process.exit(0)));
process.stdin.resume();
