//! The MessagePack hub protocol of `HubProtocol.md`. Each message is a MessagePack array
//! whose first element is the message type. Each is prefixed with its length as a
//! variable-length integer: 7 bits per byte, least significant group first, at most 5
//! bytes.

use rmpv::Value as Pack;
use serde_json::{Map, Number, Value};

use crate::framing::FramingError;
use crate::protocol::{
    message_kind, required_sequence_id, ClientMessage, CloseMessage, Invocation, MessageKind,
};

/// The largest message length the prefix can announce, 2^31 - 1 bytes.
const MAX_PREFIXED_LEN: u64 = i32::MAX as u64;
/// A length prefix never has more than 5 bytes.
const MAX_PREFIX_BYTES: usize = 5;

/// Completion result kinds of the MessagePack protocol.
const ERROR_RESULT: i64 = 1;
const NON_VOID_RESULT: i64 = 3;

/// Splits incoming bytes into length-prefixed messages and keeps an incomplete rest until
/// more bytes arrive.
#[derive(Debug)]
pub(crate) struct BinaryReader {
    buffer: Vec<u8>,
    max_message_len: usize,
}

impl BinaryReader {
    pub fn new(max_message_len: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_message_len,
        }
    }

    /// Appends `bytes` and returns the payloads of the messages they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FramingError> {
        self.buffer.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut start = 0;
        while let Some((len, prefix_len)) = read_length(&self.buffer[start..])? {
            if len > self.max_message_len as u64 {
                return Err(FramingError::MessageTooLarge {
                    max: self.max_message_len,
                });
            }
            let body_start = start + prefix_len;
            let body_end = body_start + len as usize;
            if body_end > self.buffer.len() {
                break;
            }
            messages.push(self.buffer[body_start..body_end].to_vec());
            start = body_end;
        }
        self.buffer.drain(..start);
        Ok(messages)
    }
}

/// Reads a length prefix. Returns the length and the prefix's size, or `None` when the
/// prefix is incomplete.
fn read_length(bytes: &[u8]) -> Result<Option<(u64, usize)>, FramingError> {
    let mut len: u64 = 0;
    for (index, byte) in bytes.iter().take(MAX_PREFIX_BYTES).enumerate() {
        len |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if len > MAX_PREFIXED_LEN {
                return Err(FramingError::InvalidLengthPrefix);
            }
            return Ok(Some((len, index + 1)));
        }
    }
    if bytes.len() >= MAX_PREFIX_BYTES {
        return Err(FramingError::InvalidLengthPrefix);
    }
    Ok(None)
}

/// Prefixes a MessagePack payload with its length.
fn frame(message: &Pack) -> Vec<u8> {
    let mut payload = Vec::new();
    rmpv::encode::write_value(&mut payload, message)
        .expect("writing MessagePack to a Vec cannot fail");

    let mut framed = Vec::with_capacity(payload.len() + MAX_PREFIX_BYTES);
    let mut len = payload.len();
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            framed.push(low);
            break;
        }
        framed.push(low | 0x80);
    }
    framed.extend_from_slice(&payload);
    framed
}

/// Parses one message payload into a client message. The error text is sent to the client
/// in a `Close` message.
pub(crate) fn parse_client_message(payload: &[u8]) -> Result<ClientMessage, String> {
    let mut reader = payload;
    let value = rmpv::decode::read_value(&mut reader)
        .map_err(|error| format!("invalid hub message: {error}"))?;
    let Pack::Array(items) = value else {
        return Err("invalid hub message: expected a MessagePack array".to_owned());
    };
    let kind = items
        .first()
        .and_then(Pack::as_i64)
        .ok_or_else(|| "invalid hub message: missing message type".to_owned())?;

    let message = match message_kind(kind)? {
        MessageKind::Invocation => {
            ClientMessage::Invocation(parse_invocation(&items, "invocation")?)
        }
        MessageKind::StreamInvocation => {
            let invocation = parse_invocation(&items, "stream invocation")?;
            if invocation.invocation_id.is_none() {
                return Err("invalid stream invocation: missing invocation id".to_owned());
            }
            ClientMessage::StreamInvocation(invocation)
        }
        MessageKind::CancelInvocation => ClientMessage::CancelInvocation,
        MessageKind::Ping => ClientMessage::Ping,
        MessageKind::Close => ClientMessage::Close {
            error: items.get(1).and_then(Pack::as_str).map(str::to_owned),
        },
        MessageKind::Ack => ClientMessage::Ack {
            sequence_id: required_sequence_id(items.get(1).and_then(Pack::as_i64), "ack")?,
        },
        MessageKind::Sequence => ClientMessage::Sequence {
            sequence_id: required_sequence_id(items.get(1).and_then(Pack::as_i64), "sequence")?,
        },
        MessageKind::Unexpected(kind) => ClientMessage::Unexpected { kind },
    };
    Ok(message)
}

/// Reads `[type, headers, invocationId, target, arguments, streamIds?]`.
fn parse_invocation(items: &[Pack], kind: &str) -> Result<Invocation, String> {
    if items.len() < 5 {
        return Err(format!("invalid {kind}: expected at least 5 elements"));
    }
    let invocation_id = match &items[2] {
        Pack::Nil => None,
        Pack::String(id) => Some(
            id.as_str()
                .ok_or_else(|| format!("invalid {kind}: invocation id is not UTF-8"))?
                .to_owned(),
        ),
        _ => return Err(format!("invalid {kind}: invocation id is not a string")),
    };
    let target = items[3]
        .as_str()
        .ok_or_else(|| format!("invalid {kind}: target is not a string"))?
        .to_owned();
    let Pack::Array(arguments) = &items[4] else {
        return Err(format!("invalid {kind}: arguments are not an array"));
    };
    let arguments = arguments
        .iter()
        .map(to_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("invalid {kind}: {error}"))?;
    let stream_ids = match items.get(5) {
        None | Some(Pack::Nil) => Vec::new(),
        Some(Pack::Array(ids)) => ids
            .iter()
            .map(|id| id.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("invalid {kind}: stream ids are not strings"))?,
        Some(_) => return Err(format!("invalid {kind}: stream ids are not an array")),
    };

    Ok(Invocation {
        invocation_id,
        target,
        arguments,
        stream_ids,
    })
}

/// Converts a MessagePack argument into JSON, which the hub methods read.
fn to_json(value: &Pack) -> Result<Value, String> {
    let json = match value {
        Pack::Nil => Value::Null,
        Pack::Boolean(flag) => Value::Bool(*flag),
        Pack::Integer(integer) => match (integer.as_i64(), integer.as_u64()) {
            (Some(signed), _) => Value::from(signed),
            (None, Some(unsigned)) => Value::from(unsigned),
            (None, None) => return Err("integer out of range".to_owned()),
        },
        Pack::F32(float) => float_to_json(f64::from(*float))?,
        Pack::F64(float) => float_to_json(*float)?,
        Pack::String(text) => Value::String(
            text.as_str()
                .ok_or_else(|| "string is not UTF-8".to_owned())?
                .to_owned(),
        ),
        Pack::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Pack::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let key = key
                    .as_str()
                    .ok_or_else(|| "map key is not a string".to_owned())?;
                map.insert(key.to_owned(), to_json(value)?);
            }
            Value::Object(map)
        }
        Pack::Binary(_) => return Err("binary arguments are not supported".to_owned()),
        Pack::Ext(..) => return Err("extension types are not supported".to_owned()),
    };
    Ok(json)
}

fn float_to_json(float: f64) -> Result<Value, String> {
    Number::from_f64(float)
        .map(Value::Number)
        .ok_or_else(|| format!("number {float} has no JSON form"))
}

/// Converts a JSON value into MessagePack, for results and message payloads.
fn to_pack(value: &Value) -> Pack {
    match value {
        Value::Null => Pack::Nil,
        Value::Bool(flag) => Pack::Boolean(*flag),
        Value::Number(number) => {
            if let Some(signed) = number.as_i64() {
                Pack::from(signed)
            } else if let Some(unsigned) = number.as_u64() {
                Pack::from(unsigned)
            } else {
                Pack::F64(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(text) => Pack::from(text.as_str()),
        Value::Array(items) => Pack::Array(items.iter().map(to_pack).collect()),
        Value::Object(map) => Pack::Map(
            map.iter()
                .map(|(key, value)| (Pack::from(key.as_str()), to_pack(value)))
                .collect(),
        ),
    }
}

fn empty_headers() -> Pack {
    Pack::Map(Vec::new())
}

/// Encodes a completion that carries a result.
pub(crate) fn encode_completion_result(invocation_id: &str, result: &Value) -> Vec<u8> {
    frame(&Pack::Array(vec![
        Pack::from(MessageKind::COMPLETION),
        empty_headers(),
        Pack::from(invocation_id),
        Pack::from(NON_VOID_RESULT),
        to_pack(result),
    ]))
}

/// Encodes a completion that carries an error.
pub(crate) fn encode_completion_error(invocation_id: &str, error: &str) -> Vec<u8> {
    frame(&Pack::Array(vec![
        Pack::from(MessageKind::COMPLETION),
        empty_headers(),
        Pack::from(invocation_id),
        Pack::from(ERROR_RESULT),
        Pack::from(error),
    ]))
}

/// Encodes a non-blocking invocation of the client method `target` with one argument.
pub(crate) fn encode_client_invocation(target: &str, argument: &Value) -> Vec<u8> {
    frame(&Pack::Array(vec![
        Pack::from(MessageKind::INVOCATION),
        empty_headers(),
        Pack::Nil,
        Pack::from(target),
        Pack::Array(vec![to_pack(argument)]),
        Pack::Array(Vec::new()),
    ]))
}

pub(crate) fn encode_ping() -> Vec<u8> {
    frame(&Pack::Array(vec![Pack::from(MessageKind::PING)]))
}

/// Encodes an `Ack` or `Sequence` message, whose only field is the sequence id.
pub(crate) fn encode_sequence_message(kind: i64, sequence_id: i64) -> Vec<u8> {
    frame(&Pack::Array(vec![
        Pack::from(kind),
        Pack::from(sequence_id),
    ]))
}

pub(crate) fn encode_close(close: &CloseMessage) -> Vec<u8> {
    let error = close.error.as_deref().map_or(Pack::Nil, Pack::from);
    frame(&Pack::Array(vec![
        Pack::from(MessageKind::CLOSE),
        error,
        Pack::Boolean(close.allow_reconnect),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Strips the length prefix and decodes the payload.
    fn decode(framed: &[u8]) -> Pack {
        let mut reader = BinaryReader::new(1 << 20);
        let mut payloads = reader.push(framed).unwrap();
        assert_eq!(payloads.len(), 1, "one message");
        let payload = payloads.remove(0);
        rmpv::decode::read_value(&mut payload.as_slice()).unwrap()
    }

    fn pack(message: Pack) -> Vec<u8> {
        frame(&message)
    }

    #[test]
    fn length_prefix_round_trips() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 300_000] {
            let message = Pack::Binary(vec![7; len]);
            let framed = frame(&message);
            let mut reader = BinaryReader::new(1 << 20);

            let payloads = reader.push(&framed).unwrap();

            assert_eq!(payloads.len(), 1, "length {len}");
            let decoded = rmpv::decode::read_value(&mut payloads[0].as_slice()).unwrap();
            assert_eq!(decoded, message, "length {len}");
        }
    }

    #[test]
    fn reader_waits_for_split_messages() {
        let first = pack(Pack::Array(vec![Pack::from(6)]));
        let second = pack(Pack::Array(vec![Pack::from(7), Pack::Nil]));
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second);
        let mut reader = BinaryReader::new(1024);

        let head = reader.push(&bytes[..first.len() + 1]).unwrap();
        let tail = reader.push(&bytes[first.len() + 1..]).unwrap();

        assert_eq!(head, vec![first[1..].to_vec()]);
        assert_eq!(tail, vec![second[1..].to_vec()]);
    }

    #[test]
    fn reader_rejects_oversized_message() {
        let framed = pack(Pack::Binary(vec![0; 100]));
        let mut reader = BinaryReader::new(50);

        let result = reader.push(&framed[..3]);

        assert_eq!(result, Err(FramingError::MessageTooLarge { max: 50 }));
    }

    #[test]
    fn reader_rejects_overlong_prefix() {
        let mut reader = BinaryReader::new(1024);

        let result = reader.push(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);

        assert_eq!(result, Err(FramingError::InvalidLengthPrefix));
    }

    #[test]
    fn parse_invocation_with_id() {
        let message = Pack::Array(vec![
            Pack::from(1),
            Pack::Map(vec![]),
            Pack::from("7"),
            Pack::from("JoinTask"),
            Pack::Array(vec![
                Pack::from("x"),
                Pack::Map(vec![(Pack::from("a"), Pack::from(2))]),
            ]),
        ]);
        let payload = &pack(message)[1..];

        let parsed = parse_client_message(payload).unwrap();

        assert_eq!(
            parsed,
            ClientMessage::Invocation(Invocation {
                invocation_id: Some("7".to_owned()),
                target: "JoinTask".to_owned(),
                arguments: vec![json!("x"), json!({"a": 2})],
                stream_ids: vec![],
            })
        );
    }

    #[test]
    fn parse_non_blocking_invocation_and_close() {
        let invocation = Pack::Array(vec![
            Pack::from(1),
            Pack::Map(vec![]),
            Pack::Nil,
            Pack::from("LeaveTask"),
            Pack::Array(vec![]),
        ]);
        let close = Pack::Array(vec![Pack::from(7), Pack::from("bye")]);

        let ClientMessage::Invocation(parsed) =
            parse_client_message(&pack(invocation)[1..]).unwrap()
        else {
            panic!("expected an invocation");
        };
        let closed = parse_client_message(&pack(close)[1..]).unwrap();

        assert_eq!(parsed.invocation_id, None);
        assert_eq!(
            closed,
            ClientMessage::Close {
                error: Some("bye".to_owned())
            }
        );
    }

    #[test]
    fn parse_rejects_bad_messages() {
        let cases = [
            (Pack::from(1), "expected a MessagePack array"),
            (Pack::Array(vec![]), "missing message type"),
            (
                Pack::Array(vec![Pack::from(42)]),
                "unknown hub message type 42",
            ),
            (
                Pack::Array(vec![
                    Pack::from(1),
                    Pack::Map(vec![]),
                    Pack::Nil,
                    Pack::from("x"),
                ]),
                "at least 5 elements",
            ),
            (
                Pack::Array(vec![
                    Pack::from(1),
                    Pack::Map(vec![]),
                    Pack::Nil,
                    Pack::from("x"),
                    Pack::Array(vec![Pack::Binary(vec![1])]),
                ]),
                "binary arguments",
            ),
        ];

        for (message, expected) in cases {
            let error = parse_client_message(&pack(message.clone())[1..]).unwrap_err();
            assert!(error.contains(expected), "{message:?}: {error}");
        }
    }

    #[test]
    fn completion_encoding() {
        assert_eq!(
            decode(&encode_completion_result(
                "1",
                &json!({"seq": 3, "ok": true})
            )),
            Pack::Array(vec![
                Pack::from(3),
                Pack::Map(vec![]),
                Pack::from("1"),
                Pack::from(3),
                Pack::Map(vec![
                    (Pack::from("ok"), Pack::from(true)),
                    (Pack::from("seq"), Pack::from(3))
                ]),
            ])
        );
        assert_eq!(
            decode(&encode_completion_error("2", "boom")),
            Pack::Array(vec![
                Pack::from(3),
                Pack::Map(vec![]),
                Pack::from("2"),
                Pack::from(1),
                Pack::from("boom"),
            ])
        );
    }

    #[test]
    fn invocation_ping_and_close_encoding() {
        assert_eq!(
            decode(&encode_client_invocation("resync", &json!({"group": "g"}))),
            Pack::Array(vec![
                Pack::from(1),
                Pack::Map(vec![]),
                Pack::Nil,
                Pack::from("resync"),
                Pack::Array(vec![Pack::Map(vec![(
                    Pack::from("group"),
                    Pack::from("g")
                )])]),
                Pack::Array(vec![]),
            ])
        );
        assert_eq!(decode(&encode_ping()), Pack::Array(vec![Pack::from(6)]));
        assert_eq!(
            decode(&encode_close(&CloseMessage::reconnectable(None))),
            Pack::Array(vec![Pack::from(7), Pack::Nil, Pack::Boolean(true)])
        );
    }

    #[test]
    fn json_round_trips_through_messagepack() {
        let value = json!({"a": [1, -2, 3.5, null, true], "b": {"c": "d"}, "e": u64::MAX});

        assert_eq!(to_json(&to_pack(&value)), Ok(value));
    }
}
