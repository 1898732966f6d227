//! Stateful reconnect of `HubProtocol.md`. Both sides number the invocation-type messages
//! they send from 1: invocations, stream items, completions, stream invocations and
//! cancels. Each side keeps what the other has not acknowledged with an `Ack`. After a
//! WebSocket reconnect, each sends a `Sequence` message and then everything not yet
//! acknowledged, and the receiver drops the messages it has already seen.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::connection::Frame;

/// Sequence state of one connection that negotiated stateful reconnect.
#[derive(Debug)]
pub(crate) struct StatefulState {
    sent: Mutex<SentMessages>,
    received: Mutex<ReceivedMessages>,
    /// Maximum number of unacknowledged messages kept for resending.
    capacity: usize,
    /// Set once the client sent its first message after the handshake.
    client_spoke: AtomicBool,
    client_spoke_notify: Notify,
}

#[derive(Debug)]
struct SentMessages {
    frames: VecDeque<(i64, Frame)>,
    next_id: i64,
}

#[derive(Debug)]
struct ReceivedMessages {
    /// Sequence id that the next invocation-type message from the client has.
    next_id: i64,
    /// Sequence id of the last message that was handled.
    latest_id: i64,
}

impl StatefulState {
    pub fn new(capacity: usize) -> Self {
        Self {
            sent: Mutex::new(SentMessages {
                frames: VecDeque::new(),
                next_id: 1,
            }),
            received: Mutex::new(ReceivedMessages {
                next_id: 1,
                latest_id: 0,
            }),
            capacity,
            client_spoke: AtomicBool::new(false),
            client_spoke_notify: Notify::new(),
        }
    }

    /// Records that a message from the client arrived after the handshake.
    pub fn mark_client_spoke(&self) {
        if !self.client_spoke.swap(true, Ordering::AcqRel) {
            self.client_spoke_notify.notify_waiters();
        }
    }

    /// Waits until [`Self::mark_client_spoke`] has been called.
    pub async fn client_spoke(&self) {
        loop {
            let notified = self.client_spoke_notify.notified();
            tokio::pin!(notified);
            // Registering before the check means a call in between still wakes this wait.
            notified.as_mut().enable();
            if self.client_spoke.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Keeps a sent frame until the client acknowledges it. Returns false when the client
    /// has left more than the capacity unacknowledged.
    pub fn record_sent(&self, frame: &Frame) -> bool {
        let mut sent = self.sent.lock();
        if sent.frames.len() >= self.capacity {
            return false;
        }
        let id = sent.next_id;
        sent.next_id += 1;
        sent.frames.push_back((id, frame.clone()));
        true
    }

    /// Forgets the sent frames up to and including `sequence_id`.
    pub fn ack(&self, sequence_id: i64) {
        let mut sent = self.sent.lock();
        while sent
            .frames
            .front()
            .is_some_and(|(id, _)| *id <= sequence_id)
        {
            sent.frames.pop_front();
        }
    }

    /// Returns the sequence id to announce after a reconnect and the frames to send again.
    pub fn unacknowledged(&self) -> (i64, Vec<Frame>) {
        let sent = self.sent.lock();
        let first_id = sent.frames.front().map_or(sent.next_id, |(id, _)| *id);
        let frames = sent.frames.iter().map(|(_, frame)| frame.clone()).collect();
        (first_id, frames)
    }

    /// Applies the client's `Sequence` message: its next message has `sequence_id`.
    pub fn restart_receiving(&self, sequence_id: i64) {
        self.received.lock().next_id = sequence_id;
    }

    /// Numbers one invocation-type message from the client. Returns its sequence id, or
    /// `None` when the message was already handled before a reconnect.
    pub fn receive(&self) -> Option<i64> {
        let mut received = self.received.lock();
        let id = received.next_id;
        received.next_id += 1;
        if id <= received.latest_id {
            return None;
        }
        received.latest_id = id;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_drops_acknowledged_frames() {
        let state = StatefulState::new(8);
        for text in ["a", "b", "c"] {
            assert!(state.record_sent(&Frame::from(text)));
        }

        state.ack(2);
        let (first_id, frames) = state.unacknowledged();

        assert_eq!(first_id, 3);
        assert_eq!(frames, [Frame::from("c")]);
    }

    #[test]
    fn unacknowledged_without_frames_announces_next_id() {
        let state = StatefulState::new(8);
        state.record_sent(&Frame::from("a"));
        state.ack(1);

        assert_eq!(state.unacknowledged(), (2, vec![]));
    }

    #[test]
    fn record_sent_stops_at_capacity() {
        let state = StatefulState::new(1);

        assert!(state.record_sent(&Frame::from("a")));
        assert!(!state.record_sent(&Frame::from("b")));
    }

    #[tokio::test]
    async fn client_spoke_wakes_a_waiting_task() {
        let state = std::sync::Arc::new(StatefulState::new(8));
        let waiting = {
            let state = std::sync::Arc::clone(&state);
            tokio::spawn(async move { state.client_spoke().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;

        state.mark_client_spoke();

        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the wait ended")
            .unwrap();
        // A later wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), state.client_spoke())
            .await
            .expect("the flag stays set");
    }

    #[test]
    fn receive_skips_messages_seen_before_reconnect() {
        let state = StatefulState::new(8);
        assert_eq!(state.receive(), Some(1));
        assert_eq!(state.receive(), Some(2));

        state.restart_receiving(2);

        assert_eq!(state.receive(), None);
        assert_eq!(state.receive(), Some(3));
    }
}
