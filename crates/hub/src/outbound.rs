//! The reading end of a connection's outbound queue, shared by every transport: queued
//! frames, a keep-alive ping when the connection was idle, and after a close the final
//! frame (a `Close` message or a failed handshake response).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::connection::{Connection, Frame, Outgoing};
use crate::protocol::encode_handshake_response;
use crate::queue::OutboundReceiver;

pub(crate) struct OutboundPump {
    outbound: OutboundReceiver,
    connection: Arc<Connection>,
    /// `None` for long polling, where each poll request shows that the client is alive.
    keep_alive: Option<Duration>,
    ping_at: Option<Instant>,
    finished: bool,
}

impl OutboundPump {
    pub fn new(
        outbound: OutboundReceiver,
        connection: Arc<Connection>,
        keep_alive: Option<Duration>,
    ) -> Self {
        let ping_at = keep_alive.map(|interval| Instant::now() + interval);
        Self {
            outbound,
            connection,
            keep_alive,
            ping_at,
            finished: false,
        }
    }

    /// Waits for the next frame to send. Once the connection closes, the queued frames are
    /// dropped, the final frame (if any) is returned, and then only `None`.
    ///
    /// Cancel safe: a frame is never lost when the returned future is dropped.
    pub async fn next(&mut self) -> Option<Outgoing> {
        if self.finished {
            return None;
        }
        let ping_at = self.ping_at;
        let frame = tokio::select! {
            biased;
            () = self.connection.closed() => return self.finish(),
            frame = self.outbound.recv() => frame,
            () = sleep_until(ping_at.unwrap_or_else(Instant::now)), if ping_at.is_some() => {
                control(self.connection.protocol().ping())
            }
        };
        self.reset_ping();
        Some(frame)
    }

    /// Returns the next frame if one is ready without waiting.
    pub fn try_next(&mut self) -> Option<Outgoing> {
        if self.finished {
            return None;
        }
        if self.connection.is_closing() {
            return self.finish();
        }
        let frame = self.outbound.try_recv()?;
        self.reset_ping();
        Some(frame)
    }

    /// Returns whether the final frame has been returned, so the transport may end.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn reset_ping(&mut self) {
        self.ping_at = self.keep_alive.map(|interval| Instant::now() + interval);
    }

    fn finish(&mut self) -> Option<Outgoing> {
        self.finished = true;
        if let Some(error) = self.connection.handshake_error() {
            return Some(control(Frame::from(encode_handshake_response(Some(
                &error,
            )))));
        }
        self.connection
            .close_message()
            .map(|close| control(self.connection.protocol().close(&close)))
    }
}

fn control(frame: Frame) -> Outgoing {
    Outgoing {
        frame,
        sequenced: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Principal;
    use crate::protocol::CloseMessage;
    use uuid::Uuid;

    fn pump(keep_alive: Option<Duration>) -> (Arc<Connection>, OutboundPump) {
        let principal = Principal::new(Uuid::nil(), Uuid::nil());
        let (connection, receiver) = Connection::new(1, "c1".to_owned(), principal, 8);
        let connection = Arc::new(connection);
        let pump = OutboundPump::new(receiver, Arc::clone(&connection), keep_alive);
        (connection, pump)
    }

    #[tokio::test]
    async fn next_returns_queued_frames_in_order() {
        let (connection, mut pump) = pump(None);
        connection.send("a");
        connection.send("b");

        assert_eq!(pump.next().await.unwrap().frame, Frame::from("a"));
        assert_eq!(pump.try_next().unwrap().frame, Frame::from("b"));
        assert_eq!(pump.try_next(), None);
    }

    #[tokio::test]
    async fn next_sends_ping_when_idle() {
        let (_connection, mut pump) = pump(Some(Duration::from_millis(20)));

        let outgoing = pump.next().await.unwrap();

        assert_eq!(outgoing.frame, Frame::from(crate::protocol::encode_ping()));
        assert!(!outgoing.sequenced);
    }

    #[tokio::test]
    async fn close_drops_queue_and_ends_with_close_message() {
        let (connection, mut pump) = pump(None);
        connection.send("dropped");

        connection.close(Some(CloseMessage::error("bye")));

        assert_eq!(
            pump.next().await.unwrap().frame,
            Frame::from(CloseMessage::error("bye").encode())
        );
        assert!(pump.is_finished());
        assert_eq!(pump.next().await, None);
    }

    #[tokio::test]
    async fn rejected_handshake_ends_with_handshake_response() {
        let (connection, mut pump) = pump(None);

        connection.reject_handshake("no".to_owned());

        assert_eq!(
            pump.try_next().unwrap().frame,
            Frame::from(encode_handshake_response(Some("no")))
        );
        assert_eq!(pump.try_next(), None);
    }
}
