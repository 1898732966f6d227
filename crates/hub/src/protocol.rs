//! The JSON hub protocol: handshake, the messages a client may send, and the messages the
//! server sends. Message types and field names follow `HubProtocol.md` in the SignalR
//! specifications (dotnet/aspnetcore, `src/SignalR/docs/specs`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backend::HubMessage;
use crate::framing::terminate;

use crate::connection::Frame;
use crate::msgpack;

/// Protocol names that a client may request in the handshake.
pub const JSON_PROTOCOL: &str = "json";
pub const MESSAGEPACK_PROTOCOL: &str = "messagepack";
/// Versions accepted for both protocols. Version 2 adds the `Ack` and `Sequence` messages
/// of stateful reconnect, which clients request together with it.
pub const PROTOCOL_VERSIONS: [i64; 2] = [1, 2];

const INVOCATION: i64 = 1;
const STREAM_ITEM: i64 = 2;
const COMPLETION: i64 = 3;
const STREAM_INVOCATION: i64 = 4;
const CANCEL_INVOCATION: i64 = 5;
const PING: i64 = 6;
const CLOSE: i64 = 7;
const ACK: i64 = 8;
const SEQUENCE: i64 = 9;

/// The hub protocol a connection chose in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubProtocol {
    Json,
    MessagePack,
}

impl HubProtocol {
    /// Returns whether the protocol needs a transport that carries binary data.
    pub fn is_binary(self) -> bool {
        self == HubProtocol::MessagePack
    }

    pub fn name(self) -> &'static str {
        match self {
            HubProtocol::Json => JSON_PROTOCOL,
            HubProtocol::MessagePack => MESSAGEPACK_PROTOCOL,
        }
    }

    fn frame(self, json: impl FnOnce() -> String, message_pack: impl FnOnce() -> Vec<u8>) -> Frame {
        match self {
            HubProtocol::Json => Frame::from(json()),
            HubProtocol::MessagePack => Frame::Binary(message_pack().into()),
        }
    }

    pub fn completion_result(self, invocation_id: &str, result: &Value) -> Frame {
        self.frame(
            || encode_completion_result(invocation_id, result),
            || msgpack::encode_completion_result(invocation_id, result),
        )
    }

    pub fn completion_error(self, invocation_id: &str, error: &str) -> Frame {
        self.frame(
            || encode_completion_error(invocation_id, error),
            || msgpack::encode_completion_error(invocation_id, error),
        )
    }

    /// Encodes a relay message as a non-blocking invocation of `message.method`.
    pub fn hub_message(self, message: &HubMessage) -> Frame {
        self.client_invocation(&message.method, &envelope(message))
    }

    /// Encodes a non-blocking invocation of the client method `target` with one argument.
    pub fn client_invocation(self, target: &str, argument: &Value) -> Frame {
        self.frame(
            || encode_client_invocation(target, argument),
            || msgpack::encode_client_invocation(target, argument),
        )
    }

    pub fn ping(self) -> Frame {
        self.frame(encode_ping, msgpack::encode_ping)
    }

    pub fn close(self, close: &CloseMessage) -> Frame {
        self.frame(|| close.encode(), || msgpack::encode_close(close))
    }

    /// Encodes an `Ack` of every message up to `sequence_id`, for stateful reconnect.
    pub fn ack(self, sequence_id: i64) -> Frame {
        self.frame(
            || encode_sequence_message(ACK, sequence_id),
            || msgpack::encode_sequence_message(ACK, sequence_id),
        )
    }

    /// Encodes a `Sequence` message: the next message sent has `sequence_id`.
    pub fn sequence(self, sequence_id: i64) -> Frame {
        self.frame(
            || encode_sequence_message(SEQUENCE, sequence_id),
            || msgpack::encode_sequence_message(SEQUENCE, sequence_id),
        )
    }
}

/// The message types of the hub protocol, shared by its JSON and MessagePack forms.
pub(crate) enum MessageKind {
    Invocation,
    StreamInvocation,
    CancelInvocation,
    Ping,
    Close,
    Ack,
    Sequence,
    /// Stream items and completions: the server never invokes client methods that return
    /// results and accepts no upload streams, so a client never has a reason to send one.
    Unexpected(&'static str),
}

impl MessageKind {
    pub const INVOCATION: i64 = INVOCATION;
    pub const COMPLETION: i64 = COMPLETION;
    pub const PING: i64 = PING;
    pub const CLOSE: i64 = CLOSE;
}

/// Maps a message type number to the kind of message a client may send.
pub(crate) fn message_kind(kind: i64) -> Result<MessageKind, String> {
    let kind = match kind {
        INVOCATION => MessageKind::Invocation,
        STREAM_INVOCATION => MessageKind::StreamInvocation,
        STREAM_ITEM => MessageKind::Unexpected("stream item"),
        COMPLETION => MessageKind::Unexpected("completion"),
        CANCEL_INVOCATION => MessageKind::CancelInvocation,
        PING => MessageKind::Ping,
        CLOSE => MessageKind::Close,
        ACK => MessageKind::Ack,
        SEQUENCE => MessageKind::Sequence,
        other => return Err(format!("unknown hub message type {other}")),
    };
    Ok(kind)
}

#[derive(Deserialize)]
struct HandshakeRequest {
    protocol: String,
    version: i64,
}

/// Checks the client's handshake request and returns the protocol it chose. The error is
/// the text to send back in the handshake response before closing.
pub fn parse_handshake(record: &str) -> Result<HubProtocol, String> {
    let request: HandshakeRequest = serde_json::from_str(record)
        .map_err(|error| format!("Handshake request is invalid: {error}"))?;

    let protocol = match request.protocol.as_str() {
        JSON_PROTOCOL => HubProtocol::Json,
        MESSAGEPACK_PROTOCOL => HubProtocol::MessagePack,
        other => return Err(format!("Requested protocol '{other}' is not available.")),
    };
    if !PROTOCOL_VERSIONS.contains(&request.version) {
        return Err(format!(
            "The server does not support version {} of the '{}' protocol.",
            request.version,
            protocol.name()
        ));
    }
    Ok(protocol)
}

#[derive(Serialize)]
struct HandshakeResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Encodes a handshake response: `{}` on success, `{"error": ...}` on failure.
pub fn encode_handshake_response(error: Option<&str>) -> String {
    encode(&HandshakeResponse { error })
}

/// A hub method call from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Absent for non-blocking invocations, which get no completion.
    pub invocation_id: Option<String>,
    pub target: String,
    pub arguments: Vec<Value>,
    pub stream_ids: Vec<String>,
}

/// A message received from the client after the handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Invocation(Invocation),
    StreamInvocation(Invocation),
    CancelInvocation,
    Ping,
    Close {
        error: Option<String>,
    },
    /// The client received every message up to `sequence_id` (stateful reconnect).
    Ack {
        sequence_id: i64,
    },
    /// After a reconnect, the next message the client sends has `sequence_id`.
    Sequence {
        sequence_id: i64,
    },
    /// A message type that clients of this hub never need to send: see
    /// [`MessageKind::Unexpected`].
    Unexpected {
        kind: &'static str,
    },
}

/// Field set shared by all message types. Each type reads the fields it defines and
/// ignores the rest, including `headers`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<i64>,
    invocation_id: Option<String>,
    target: Option<String>,
    arguments: Option<Vec<Value>>,
    stream_ids: Option<Vec<String>>,
    error: Option<String>,
    sequence_id: Option<i64>,
}

/// Parses one JSON record into a client message. The error text is sent to the client in
/// a `Close` message.
pub fn parse_client_message(record: &str) -> Result<ClientMessage, String> {
    let raw: RawMessage =
        serde_json::from_str(record).map_err(|error| format!("invalid hub message: {error}"))?;
    let kind = raw
        .kind
        .ok_or_else(|| "invalid hub message: missing field `type`".to_owned())?;

    let message = match message_kind(kind)? {
        MessageKind::Invocation => ClientMessage::Invocation(parse_invocation(raw, "invocation")?),
        MessageKind::StreamInvocation => {
            let invocation = parse_invocation(raw, "stream invocation")?;
            if invocation.invocation_id.is_none() {
                return Err("invalid stream invocation: missing field `invocationId`".to_owned());
            }
            ClientMessage::StreamInvocation(invocation)
        }
        MessageKind::CancelInvocation => ClientMessage::CancelInvocation,
        MessageKind::Ping => ClientMessage::Ping,
        MessageKind::Close => ClientMessage::Close { error: raw.error },
        MessageKind::Ack => ClientMessage::Ack {
            sequence_id: required_sequence_id(raw.sequence_id, "ack")?,
        },
        MessageKind::Sequence => ClientMessage::Sequence {
            sequence_id: required_sequence_id(raw.sequence_id, "sequence")?,
        },
        MessageKind::Unexpected(kind) => ClientMessage::Unexpected { kind },
    };
    Ok(message)
}

/// Returns the `sequenceId` of an ack or sequence message, which must be present.
pub(crate) fn required_sequence_id(sequence_id: Option<i64>, kind: &str) -> Result<i64, String> {
    sequence_id.ok_or_else(|| format!("invalid {kind} message: missing field `sequenceId`"))
}

fn encode_sequence_message(kind: i64, sequence_id: i64) -> String {
    terminate(format!("{{\"type\":{kind},\"sequenceId\":{sequence_id}}}"))
}

fn parse_invocation(raw: RawMessage, kind: &str) -> Result<Invocation, String> {
    let target = raw
        .target
        .ok_or_else(|| format!("invalid {kind}: missing field `target`"))?;
    let arguments = raw
        .arguments
        .ok_or_else(|| format!("invalid {kind}: missing field `arguments`"))?;

    Ok(Invocation {
        invocation_id: raw.invocation_id,
        target,
        arguments,
        stream_ids: raw.stream_ids.unwrap_or_default(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompletionMessage<'a> {
    #[serde(rename = "type")]
    kind: i64,
    invocation_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Encodes a completion that carries a result.
pub fn encode_completion_result(invocation_id: &str, result: &Value) -> String {
    encode(&CompletionMessage {
        kind: COMPLETION,
        invocation_id,
        result: Some(result),
        error: None,
    })
}

/// Encodes a completion that carries an error.
pub fn encode_completion_error(invocation_id: &str, error: &str) -> String {
    encode(&CompletionMessage {
        kind: COMPLETION,
        invocation_id,
        result: None,
        error: Some(error),
    })
}

/// Builds the payload that the client method receives as its only argument:
/// `{"event_id", "group", "seq", "type", "data"}`.
fn envelope(message: &HubMessage) -> Value {
    json!({
        "event_id": message.event_id,
        "group": message.group,
        "seq": message.seq,
        "type": message.event_type,
        "data": message.data,
    })
}

#[derive(Serialize)]
struct ClientInvocation<'a> {
    #[serde(rename = "type")]
    kind: i64,
    target: &'a str,
    arguments: [&'a Value; 1],
}

/// Encodes a non-blocking invocation of the client method `target` with one argument.
pub fn encode_client_invocation(target: &str, argument: &Value) -> String {
    encode(&ClientInvocation {
        kind: INVOCATION,
        target,
        arguments: [argument],
    })
}

/// Encodes a ping, which the server sends to keep an idle connection alive.
pub fn encode_ping() -> String {
    terminate(format!("{{\"type\":{PING}}}"))
}

/// A `Close` message that the server sends before it closes the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tells clients with automatic reconnect enabled to reconnect.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_reconnect: bool,
}

impl CloseMessage {
    /// Creates a close caused by the client, which should not reconnect and repeat it.
    pub fn error(error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            allow_reconnect: false,
        }
    }

    /// Creates a close after which the client may reconnect and join again.
    pub fn reconnectable(error: Option<String>) -> Self {
        Self {
            error,
            allow_reconnect: true,
        }
    }

    pub fn encode(&self) -> String {
        #[derive(Serialize)]
        struct Tagged<'a> {
            #[serde(rename = "type")]
            kind: i64,
            #[serde(flatten)]
            close: &'a CloseMessage,
        }
        encode(&Tagged {
            kind: CLOSE,
            close: self,
        })
    }
}

fn encode(message: &impl Serialize) -> String {
    let json = serde_json::to_string(message)
        .expect("hub protocol messages contain only string keys and serializable values");
    terminate(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(frame: &str) -> Value {
        let json = frame
            .strip_suffix('\u{1e}')
            .expect("frame ends with the record separator");
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn handshake_accepts_json_and_messagepack() {
        assert_eq!(
            parse_handshake(r#"{"protocol":"json","version":1}"#),
            Ok(HubProtocol::Json)
        );
        assert_eq!(
            parse_handshake(r#"{"protocol":"messagepack","version":1}"#),
            Ok(HubProtocol::MessagePack)
        );
        assert_eq!(
            parse_handshake(r#"{"protocol":"json","version":2}"#),
            Ok(HubProtocol::Json)
        );
    }

    #[test]
    fn handshake_rejects_unknown_protocol() {
        let error = parse_handshake(r#"{"protocol":"blazorpack","version":1}"#).unwrap_err();

        assert_eq!(error, "Requested protocol 'blazorpack' is not available.");
    }

    #[test]
    fn handshake_rejects_other_version() {
        let error = parse_handshake(r#"{"protocol":"json","version":3}"#).unwrap_err();

        assert!(error.contains("version 3"), "{error}");
    }

    #[test]
    fn handshake_rejects_malformed_request() {
        let error = parse_handshake(r#"{"protocol":"json""#).unwrap_err();

        assert!(error.starts_with("Handshake request is invalid"), "{error}");
    }

    #[test]
    fn handshake_response_encoding() {
        assert_eq!(encode_handshake_response(None), "{}\u{1e}");
        assert_eq!(
            decode(&encode_handshake_response(Some("bad"))),
            json!({"error": "bad"})
        );
    }

    #[test]
    fn parse_invocation_with_id_and_headers() {
        let record = r#"{"type":1,"headers":{"a":"b"},"invocationId":"7","target":"JoinTask","arguments":["x"]}"#;

        let message = parse_client_message(record).unwrap();

        assert_eq!(
            message,
            ClientMessage::Invocation(Invocation {
                invocation_id: Some("7".to_owned()),
                target: "JoinTask".to_owned(),
                arguments: vec![json!("x")],
                stream_ids: vec![],
            })
        );
    }

    #[test]
    fn parse_non_blocking_invocation() {
        let record = r#"{"type":1,"target":"JoinTask","arguments":[]}"#;

        let ClientMessage::Invocation(invocation) = parse_client_message(record).unwrap() else {
            panic!("expected an invocation");
        };

        assert_eq!(invocation.invocation_id, None);
    }

    #[test]
    fn parse_invocation_without_target_fails() {
        let error = parse_client_message(r#"{"type":1,"arguments":[]}"#).unwrap_err();

        assert!(error.contains("`target`"), "{error}");
    }

    #[test]
    fn parse_stream_invocation_without_id_fails() {
        let error = parse_client_message(r#"{"type":4,"target":"x","arguments":[]}"#).unwrap_err();

        assert!(error.contains("`invocationId`"), "{error}");
    }

    #[test]
    fn parse_ping_close_and_cancel() {
        assert_eq!(
            parse_client_message(r#"{"type":6}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse_client_message(r#"{"type":7,"error":"bye"}"#),
            Ok(ClientMessage::Close {
                error: Some("bye".to_owned())
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":5,"invocationId":"1"}"#),
            Ok(ClientMessage::CancelInvocation)
        );
    }

    #[test]
    fn parse_stream_item_is_unexpected() {
        let message = parse_client_message(r#"{"type":2,"invocationId":"1","item":3}"#);

        assert_eq!(
            message,
            Ok(ClientMessage::Unexpected {
                kind: "stream item"
            })
        );
    }

    #[test]
    fn parse_unknown_type_fails() {
        let error = parse_client_message(r#"{"type":42}"#).unwrap_err();

        assert_eq!(error, "unknown hub message type 42");
    }

    #[test]
    fn parse_missing_type_fails() {
        let error = parse_client_message(r#"{"target":"x"}"#).unwrap_err();

        assert!(error.contains("`type`"), "{error}");
    }

    #[test]
    fn parse_malformed_json_fails() {
        let error = parse_client_message("{not json").unwrap_err();

        assert!(error.starts_with("invalid hub message"), "{error}");
    }

    #[test]
    fn parse_non_object_fails() {
        assert!(parse_client_message("[1,2]").is_err());
        assert!(parse_client_message("").is_err());
    }

    #[test]
    fn completion_encoding() {
        assert_eq!(
            decode(&encode_completion_result("1", &json!({"seq": 3}))),
            json!({"type": 3, "invocationId": "1", "result": {"seq": 3}})
        );
        assert_eq!(
            decode(&encode_completion_error("2", "task x not found")),
            json!({"type": 3, "invocationId": "2", "error": "task x not found"})
        );
    }

    #[test]
    fn hub_message_encoding() {
        let message = HubMessage {
            group: "task:1".to_owned(),
            seq: 4,
            event_id: uuid::Uuid::nil(),
            event_type: "task.updated".to_owned(),
            method: "taskUpdated".to_owned(),
            data: json!({"title": "t"}),
        };

        let Frame::Text(text) = HubProtocol::Json.hub_message(&message) else {
            panic!("the json protocol encodes text frames");
        };
        let frame = decode(text.as_str());

        assert_eq!(
            frame,
            json!({
                "type": 1,
                "target": "taskUpdated",
                "arguments": [{
                    "event_id": uuid::Uuid::nil(),
                    "group": "task:1",
                    "seq": 4,
                    "type": "task.updated",
                    "data": {"title": "t"}
                }]
            })
        );
    }

    #[test]
    fn client_invocation_encoding() {
        let frame = decode(&encode_client_invocation(
            "resync",
            &json!({"group": "task:1"}),
        ));

        assert_eq!(
            frame,
            json!({"type": 1, "target": "resync", "arguments": [{"group": "task:1"}]})
        );
    }

    #[test]
    fn ping_and_close_encoding() {
        assert_eq!(decode(&encode_ping()), json!({"type": 6}));
        assert_eq!(
            decode(&CloseMessage::error("boom").encode()),
            json!({"type": 7, "error": "boom"})
        );
        assert_eq!(
            decode(&CloseMessage::reconnectable(None).encode()),
            json!({"type": 7, "allowReconnect": true})
        );
    }
}
