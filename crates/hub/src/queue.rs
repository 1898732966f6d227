//! The bounded queue of frames waiting to be written to one connection.
//!
//! A hub node serves thousands of mostly idle connections, so the queue allocates nothing
//! while empty and frees a burst's memory once drained. A tokio `mpsc` channel allocates a
//! block of 32 slots when it is created, over 1.5 KiB per idle connection here.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::connection::Outgoing;

/// The reason a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue is at capacity because the client reads too slowly.
    Full,
    /// The receiving side was dropped, so no transport will write the frame.
    Closed,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver after a push. `Notify` stores one permit when no task is waiting,
    /// so a push between the receiver's check and its wait is not missed.
    ready: Notify,
    capacity: usize,
}

struct State {
    frames: VecDeque<Outgoing>,
    receiver_dropped: bool,
}

/// The sending side, held by the connection.
pub(crate) struct OutboundSender {
    shared: Arc<Shared>,
}

/// The receiving side, held by the transport that writes the frames.
pub(crate) struct OutboundReceiver {
    shared: Arc<Shared>,
}

/// Creates a queue of at most `capacity` frames.
pub(crate) fn outbound_queue(capacity: usize) -> (OutboundSender, OutboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            receiver_dropped: false,
        }),
        ready: Notify::new(),
        capacity,
    });
    (
        OutboundSender {
            shared: Arc::clone(&shared),
        },
        OutboundReceiver { shared },
    )
}

impl OutboundSender {
    pub fn push(&self, outgoing: Outgoing) -> Result<(), PushError> {
        let mut state = self.shared.state.lock();
        if state.receiver_dropped {
            return Err(PushError::Closed);
        }
        if state.frames.len() >= self.shared.capacity {
            return Err(PushError::Full);
        }
        state.frames.push_back(outgoing);
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl OutboundReceiver {
    /// Waits for the next frame.
    ///
    /// Cancel safe: a frame is taken from the queue only in the poll that returns it.
    pub async fn recv(&mut self) -> Outgoing {
        loop {
            if let Some(outgoing) = self.try_recv() {
                return outgoing;
            }
            self.shared.ready.notified().await;
        }
    }

    /// Returns the next frame if one is queued.
    ///
    /// The queue frees its buffer whenever it runs empty, so an idle connection keeps none.
    /// That costs one allocation per burst, small beside the system call that writes it.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let mut state = self.shared.state.lock();
        let outgoing = state.frames.pop_front();
        if state.frames.is_empty() {
            state.frames = VecDeque::new();
        }
        outgoing
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock();
        state.receiver_dropped = true;
        state.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Frame;
    use std::time::Duration;

    fn outgoing(text: &str) -> Outgoing {
        Outgoing {
            frame: Frame::from(text),
            sequenced: true,
        }
    }

    #[test]
    fn frames_come_out_in_order_up_to_capacity() {
        let (sender, mut receiver) = outbound_queue(2);

        assert_eq!(sender.push(outgoing("a")), Ok(()));
        assert_eq!(sender.push(outgoing("b")), Ok(()));
        assert_eq!(sender.push(outgoing("c")), Err(PushError::Full));

        assert_eq!(receiver.try_recv(), Some(outgoing("a")));
        assert_eq!(receiver.try_recv(), Some(outgoing("b")));
        assert_eq!(receiver.try_recv(), None);
        assert_eq!(sender.push(outgoing("c")), Ok(()));
    }

    #[test]
    fn push_after_receiver_dropped_fails() {
        let (sender, receiver) = outbound_queue(2);
        drop(receiver);

        assert_eq!(sender.push(outgoing("a")), Err(PushError::Closed));
    }

    #[test]
    fn drained_queue_releases_burst_memory() {
        let (sender, mut receiver) = outbound_queue(100);
        for _ in 0..50 {
            sender.push(outgoing("x")).unwrap();
        }
        while receiver.try_recv().is_some() {}

        assert_eq!(receiver.shared.state.lock().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn recv_wakes_on_a_later_push() {
        let (sender, mut receiver) = outbound_queue(2);
        let waiting = tokio::spawn(async move { receiver.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;

        sender.push(outgoing("late")).unwrap();

        let received = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("recv woke up")
            .unwrap();
        assert_eq!(received, outgoing("late"));
    }

    #[tokio::test]
    async fn cancelled_recv_loses_no_frame() {
        let (sender, mut receiver) = outbound_queue(2);
        // A wait abandoned before anything arrives, as in a `select!` another branch won.
        let abandoned = tokio::time::timeout(Duration::from_millis(5), receiver.recv()).await;
        assert!(abandoned.is_err());

        sender.push(outgoing("kept")).unwrap();

        assert_eq!(receiver.recv().await, outgoing("kept"));
    }
}
