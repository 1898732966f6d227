//! State of one client connection shared between its transport and the fan-out: the
//! bounded outbound queue, group memberships with per-group sequence filtering, and the
//! signal that closes the connection.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backend::{HubMessage, Principal};
use crate::protocol::{CloseMessage, HubProtocol};
use crate::queue::{outbound_queue, OutboundReceiver, OutboundSender, PushError};
use crate::stateful::StatefulState;

/// Internal key of a connection in the hub's registries.
pub(crate) type ConnectionKey = u64;

/// One message for the client, in the transfer format its transport sends it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    /// Converts the frame into the bytes that the HTTP transports send.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Frame::Text(text) => Bytes::from(text),
            Frame::Binary(bytes) => bytes,
        }
    }
}

impl From<String> for Frame {
    fn from(text: String) -> Self {
        Frame::Text(Utf8Bytes::from(text))
    }
}

impl From<&str> for Frame {
    fn from(text: &str) -> Self {
        Frame::Text(Utf8Bytes::from(text))
    }
}

/// A frame in the outbound queue. `sequenced` frames are invocation-type messages, which
/// stateful reconnect numbers and sends again after a reconnect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub frame: Frame,
    pub sequenced: bool,
}

/// A relay message shared by every recipient, encoded at most once per hub protocol.
#[derive(Clone, Debug)]
pub(crate) struct OutboundEvent {
    pub seq: i64,
    encoded: Arc<EncodedMessage>,
}

#[derive(Debug)]
struct EncodedMessage {
    message: HubMessage,
    json: OnceLock<Frame>,
    message_pack: OnceLock<Frame>,
}

impl OutboundEvent {
    pub fn new(message: HubMessage) -> Self {
        Self {
            seq: message.seq,
            encoded: Arc::new(EncodedMessage {
                message,
                json: OnceLock::new(),
                message_pack: OnceLock::new(),
            }),
        }
    }

    /// Returns the message encoded for `protocol`, encoding it on first use.
    pub fn frame(&self, protocol: HubProtocol) -> Frame {
        let cell = match protocol {
            HubProtocol::Json => &self.encoded.json,
            HubProtocol::MessagePack => &self.encoded.message_pack,
        };
        cell.get_or_init(|| protocol.hub_message(&self.encoded.message))
            .clone()
    }
}

/// Membership state of a connection in one group.
#[derive(Debug)]
enum Membership {
    /// A join is waiting for the backend. Messages are held back until the join's
    /// sequence number is known. `previous_seq` is the last delivered sequence number
    /// when the connection was already a member before this join.
    Joining {
        previous_seq: Option<i64>,
        buffer: Vec<OutboundEvent>,
    },
    /// Messages are delivered if their sequence number exceeds `last_seq`.
    Joined { last_seq: i64 },
}

pub(crate) struct Connection {
    pub key: ConnectionKey,
    /// Public connection id from negotiate, safe to log.
    pub connection_id: String,
    pub principal: Principal,
    outbound: OutboundSender,
    queue_capacity: usize,
    memberships: Mutex<HashMap<String, Membership>>,
    closing: CancellationToken,
    /// The `Close` message to send before closing the transport, if any.
    close_message: Mutex<Option<CloseMessage>>,
    /// The error to send as the handshake response before closing, if the handshake failed.
    handshake_error: Mutex<Option<String>>,
    /// The hub protocol chosen in the handshake. JSON until then.
    protocol: OnceLock<HubProtocol>,
    /// Set when the connection negotiated stateful reconnect.
    stateful: OnceLock<StatefulState>,
}

impl Connection {
    /// Creates a connection and the receiving end of its outbound queue.
    pub fn new(
        key: ConnectionKey,
        connection_id: String,
        principal: Principal,
        queue_capacity: usize,
    ) -> (Self, OutboundReceiver) {
        let (outbound, receiver) = outbound_queue(queue_capacity);
        let connection = Self {
            key,
            connection_id,
            principal,
            outbound,
            queue_capacity,
            memberships: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
            close_message: Mutex::new(None),
            handshake_error: Mutex::new(None),
            protocol: OnceLock::new(),
            stateful: OnceLock::new(),
        };
        (connection, receiver)
    }

    /// Records the protocol chosen in the handshake. Only the first call has an effect.
    pub fn set_protocol(&self, protocol: HubProtocol) {
        let _ = self.protocol.set(protocol);
    }

    pub fn protocol(&self) -> HubProtocol {
        self.protocol.get().copied().unwrap_or(HubProtocol::Json)
    }

    /// Turns on stateful reconnect, keeping up to `capacity` unacknowledged messages.
    pub fn enable_stateful(&self, capacity: usize) {
        let _ = self.stateful.set(StatefulState::new(capacity));
    }

    pub fn stateful(&self) -> Option<&StatefulState> {
        self.stateful.get()
    }

    /// Queues a frame that stateful reconnect does not number, such as the handshake
    /// response or an `Ack`.
    pub fn send_control(&self, frame: Frame) -> bool {
        self.enqueue(Outgoing {
            frame,
            sequenced: false,
        })
    }

    /// Queues a frame for the writer. A full queue closes the connection, because a client
    /// that reads this slowly would otherwise make the server buffer without bound.
    pub fn send(&self, frame: impl Into<Frame>) -> bool {
        self.enqueue(Outgoing {
            frame: frame.into(),
            sequenced: true,
        })
    }

    fn enqueue(&self, outgoing: Outgoing) -> bool {
        match self.outbound.push(outgoing) {
            Ok(()) => true,
            Err(PushError::Full) => {
                self.close_slow_consumer();
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Delivers a relay message of `group` according to this connection's membership.
    pub fn deliver(&self, group: &str, event: &OutboundEvent) {
        let mut memberships = self.memberships.lock();
        match memberships.get_mut(group) {
            None => {}
            Some(Membership::Joining { buffer, .. }) => {
                if buffer.len() >= self.queue_capacity {
                    buffer.clear();
                    drop(memberships);
                    self.close_slow_consumer();
                    return;
                }
                buffer.push(event.clone());
            }
            Some(Membership::Joined { last_seq }) => self.send_newer(last_seq, event),
        }
    }

    /// Queues `event` if it is newer than `last_seq`, and then advances `last_seq`.
    fn send_newer(&self, last_seq: &mut i64, event: &OutboundEvent) {
        if event.seq > *last_seq && self.send(event.frame(self.protocol())) {
            *last_seq = event.seq;
        }
    }

    /// Adds a membership that delivers every message not older than the last one seen.
    pub fn add_joined(&self, group: &str) {
        self.memberships
            .lock()
            .insert(group.to_owned(), Membership::Joined { last_seq: i64::MIN });
    }

    /// Starts holding back the messages of `group` until [`Self::finish_join`] or
    /// [`Self::fail_join`]. Returns whether the connection was already a member.
    pub fn begin_join(&self, group: &str) -> bool {
        let mut memberships = self.memberships.lock();
        let previous_seq = match memberships.get(group) {
            Some(Membership::Joined { last_seq }) => Some(*last_seq),
            Some(Membership::Joining { previous_seq, .. }) => *previous_seq,
            None => None,
        };
        memberships.insert(
            group.to_owned(),
            Membership::Joining {
                previous_seq,
                buffer: Vec::new(),
            },
        );
        previous_seq.is_some()
    }

    /// Queues the join's completion, then the held-back messages after `grant_seq`, and
    /// switches to live delivery of messages after `grant_seq`.
    ///
    /// Both happen under the membership lock, so no message of the group can be queued
    /// between the completion and the held-back messages.
    pub fn finish_join(&self, group: &str, completion: Option<Frame>, grant_seq: i64) {
        let mut memberships = self.memberships.lock();
        let buffer = match memberships.remove(group) {
            Some(Membership::Joining { buffer, .. }) => buffer,
            _ => Vec::new(),
        };
        let last_seq = self.send_after_completion(completion, buffer, grant_seq);
        memberships.insert(group.to_owned(), Membership::Joined { last_seq });
    }

    /// Queues the join's error completion and restores the membership that existed before
    /// the join, if any. Returns whether the connection is still a member of `group`.
    pub fn fail_join(&self, group: &str, completion: Option<Frame>) -> bool {
        let mut memberships = self.memberships.lock();
        let Some(Membership::Joining {
            previous_seq,
            buffer,
        }) = memberships.remove(group)
        else {
            if let Some(frame) = completion {
                self.send(frame);
            }
            return false;
        };

        match previous_seq {
            Some(previous_seq) => {
                let last_seq = self.send_after_completion(completion, buffer, previous_seq);
                memberships.insert(group.to_owned(), Membership::Joined { last_seq });
                true
            }
            None => {
                if let Some(frame) = completion {
                    self.send(frame);
                }
                false
            }
        }
    }

    /// Queues `completion` and then the buffered events after `after_seq`. Returns the
    /// sequence number of the last event queued, or `after_seq` if none was.
    fn send_after_completion(
        &self,
        completion: Option<Frame>,
        buffer: Vec<OutboundEvent>,
        after_seq: i64,
    ) -> i64 {
        if let Some(frame) = completion {
            if !self.send(frame) {
                return after_seq;
            }
        }
        self.send_events(buffer, after_seq)
    }

    /// Queues the events after `after_seq` whose sequence number exceeds every one queued
    /// before. Returns the sequence number of the last event queued, or `after_seq`.
    fn send_events(&self, events: impl IntoIterator<Item = OutboundEvent>, after_seq: i64) -> i64 {
        let mut last_seq = after_seq;
        for event in events {
            if event.seq <= last_seq {
                continue;
            }
            if !self.send(event.frame(self.protocol())) {
                break;
            }
            last_seq = event.seq;
        }
        last_seq
    }

    /// Queues the missed events of `group` after `after_seq`, then the held-back live events
    /// after the last of them, and switches to live delivery. Returns the sequence number
    /// of the last event queued, or `after_seq` if none was.
    ///
    /// Like [`Self::finish_join`], this runs under the membership lock, so no live message
    /// can slip in between the missed ones and the held-back ones.
    pub fn finish_catch_up(&self, group: &str, missed: Vec<OutboundEvent>, after_seq: i64) -> i64 {
        let mut memberships = self.memberships.lock();
        let buffer = match memberships.remove(group) {
            Some(Membership::Joining { buffer, .. }) => buffer,
            _ => Vec::new(),
        };
        let last_seq = self.send_events(missed.into_iter().chain(buffer), after_seq);
        memberships.insert(group.to_owned(), Membership::Joined { last_seq });
        last_seq
    }

    /// Ends the membership in `group`. Returns whether the connection was a member.
    pub fn leave(&self, group: &str) -> bool {
        self.memberships.lock().remove(group).is_some()
    }

    /// Names of the groups this connection belongs to or is joining.
    pub fn group_names(&self) -> Vec<String> {
        self.memberships.lock().keys().cloned().collect()
    }

    /// Names of the groups whose join has completed.
    pub fn joined_group_names(&self) -> Vec<String> {
        self.memberships
            .lock()
            .iter()
            .filter(|(_, membership)| matches!(membership, Membership::Joined { .. }))
            .map(|(group, _)| group.clone())
            .collect()
    }

    /// Queues a frame outside the group's numbered stream, such as a presence update,
    /// if the connection has completed its join of `group`.
    pub fn send_if_joined(&self, group: &str, frame: impl FnOnce(HubProtocol) -> Frame) {
        let joined = matches!(
            self.memberships.lock().get(group),
            Some(Membership::Joined { .. })
        );
        if joined {
            self.send(frame(self.protocol()));
        }
    }

    /// Closes the connection: the transport drops the queued frames, sends `message` (if
    /// any) as a `Close` message and then ends. Only the first call has an effect.
    pub fn close(&self, message: Option<CloseMessage>) {
        let mut close_message = self.close_message.lock();
        if self.closing.is_cancelled() {
            return;
        }
        *close_message = message;
        self.closing.cancel();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Completes when [`Self::close`] has been called.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    pub fn close_message(&self) -> Option<CloseMessage> {
        self.close_message.lock().clone()
    }

    /// Closes the connection after a failed handshake: the transport sends a handshake
    /// response carrying `error` in place of a `Close` message.
    pub fn reject_handshake(&self, error: String) {
        let _close_message = self.close_message.lock();
        if self.closing.is_cancelled() {
            return;
        }
        *self.handshake_error.lock() = Some(error);
        self.closing.cancel();
    }

    pub fn handshake_error(&self) -> Option<String> {
        self.handshake_error.lock().clone()
    }

    fn close_slow_consumer(&self) {
        if self.is_closing() {
            return;
        }
        tracing::warn!(
            connection_id = %self.connection_id,
            user_id = %self.principal.user_id,
            capacity = self.queue_capacity,
            "closing hub connection because its outbound queue is full"
        );
        self.close(Some(CloseMessage::reconnectable(Some(format!(
            "outbound queue full: the client fell {} messages behind",
            self.queue_capacity
        )))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn connection(capacity: usize) -> (Connection, OutboundReceiver) {
        let principal = Principal::new(Uuid::nil(), Uuid::nil());
        Connection::new(1, "c1".to_owned(), principal, capacity)
    }

    /// Builds an event whose JSON frame is `m{seq}`, so the tests can read the order.
    fn event(seq: i64) -> OutboundEvent {
        let message = HubMessage {
            group: "g".to_owned(),
            seq,
            event_id: Uuid::nil(),
            event_type: "test".to_owned(),
            method: "test".to_owned(),
            data: serde_json::Value::Null,
        };
        let event = OutboundEvent::new(message);
        event
            .encoded
            .json
            .set(Frame::from(format!("m{seq}")))
            .unwrap();
        event
    }

    fn drain(receiver: &mut OutboundReceiver) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(outgoing) = receiver.try_recv() {
            let frame = outgoing.frame;
            let Frame::Text(text) = frame else {
                panic!("expected a text frame, got {frame:?}");
            };
            frames.push(text.as_str().to_owned());
        }
        frames
    }

    #[test]
    fn joined_drops_repeats_and_old_messages() {
        let (connection, mut receiver) = connection(16);
        connection.add_joined("g");

        for seq in [1, 2, 2, 1, 3] {
            connection.deliver("g", &event(seq));
        }

        assert_eq!(drain(&mut receiver), ["m1", "m2", "m3"]);
    }

    #[test]
    fn deliver_ignores_other_groups() {
        let (connection, mut receiver) = connection(16);
        connection.add_joined("g");

        connection.deliver("other", &event(1));

        assert!(drain(&mut receiver).is_empty());
    }

    #[test]
    fn join_buffers_then_filters_by_grant_seq() {
        let (connection, mut receiver) = connection(16);

        let was_member = connection.begin_join("task:1");
        for seq in 1..=5 {
            connection.deliver("task:1", &event(seq));
        }
        connection.finish_join("task:1", Some(Frame::from("done")), 3);
        connection.deliver("task:1", &event(5));
        connection.deliver("task:1", &event(6));

        assert!(!was_member);
        assert_eq!(drain(&mut receiver), ["done", "m4", "m5", "m6"]);
    }

    #[test]
    fn failed_join_of_new_group_drops_buffer() {
        let (connection, mut receiver) = connection(16);

        connection.begin_join("task:1");
        connection.deliver("task:1", &event(1));
        let still_member = connection.fail_join("task:1", Some(Frame::from("error")));
        connection.deliver("task:1", &event(2));

        assert!(!still_member);
        assert_eq!(drain(&mut receiver), ["error"]);
        assert!(connection.group_names().is_empty());
    }

    #[test]
    fn failed_rejoin_keeps_membership() {
        let (connection, mut receiver) = connection(16);
        connection.begin_join("task:1");
        connection.finish_join("task:1", None, 2);

        connection.begin_join("task:1");
        connection.deliver("task:1", &event(2));
        connection.deliver("task:1", &event(3));
        let still_member = connection.fail_join("task:1", Some(Frame::from("error")));
        connection.deliver("task:1", &event(4));

        assert!(still_member);
        assert_eq!(drain(&mut receiver), ["error", "m3", "m4"]);
    }

    #[test]
    fn catch_up_sends_missed_then_newer_held_back() {
        let (connection, mut receiver) = connection(16);

        connection.begin_join("task:1");
        for seq in [5, 6] {
            connection.deliver("task:1", &event(seq));
        }
        let missed = (3..=5).map(event).collect();
        let last_seq = connection.finish_catch_up("task:1", missed, 2);
        connection.deliver("task:1", &event(6));
        connection.deliver("task:1", &event(7));

        assert_eq!(last_seq, 6);
        assert_eq!(drain(&mut receiver), ["m3", "m4", "m5", "m6", "m7"]);
    }

    #[test]
    fn leave_stops_delivery() {
        let (connection, mut receiver) = connection(16);
        connection.add_joined("task:1");

        let was_member = connection.leave("task:1");
        connection.deliver("task:1", &event(1));

        assert!(was_member);
        assert!(!connection.leave("task:1"));
        assert!(drain(&mut receiver).is_empty());
    }

    #[test]
    fn event_frame_follows_protocol() {
        let message = HubMessage {
            group: "g".to_owned(),
            seq: 1,
            event_id: Uuid::nil(),
            event_type: "test".to_owned(),
            method: "notification".to_owned(),
            data: serde_json::json!({"n": 1}),
        };
        let event = OutboundEvent::new(message.clone());

        let json = event.frame(HubProtocol::Json);
        let message_pack = event.frame(HubProtocol::MessagePack);

        assert_eq!(json, HubProtocol::Json.hub_message(&message));
        assert!(matches!(message_pack, Frame::Binary(_)), "{message_pack:?}");
    }

    #[test]
    fn full_queue_closes_connection() {
        let (connection, mut receiver) = connection(2);
        connection.add_joined("g");

        for seq in 1..=3 {
            connection.deliver("g", &event(seq));
        }

        assert!(connection.is_closing());
        let message = connection.close_message().expect("a close message is set");
        assert!(message.allow_reconnect);
        assert!(message.error.unwrap().contains("outbound queue full"));
        assert_eq!(drain(&mut receiver), ["m1", "m2"]);
    }

    #[test]
    fn full_join_buffer_closes_connection() {
        let (connection, _receiver) = connection(2);

        connection.begin_join("g");
        for seq in 1..=3 {
            connection.deliver("g", &event(seq));
        }

        assert!(connection.is_closing());
    }

    #[test]
    fn close_keeps_first_message() {
        let (connection, _receiver) = connection(2);

        connection.close(Some(CloseMessage::error("first")));
        connection.close(Some(CloseMessage::error("second")));

        assert_eq!(
            connection.close_message(),
            Some(CloseMessage::error("first"))
        );
    }
}
