//! Types shared by every Tasklane crate: ids, the event envelope that travels through the
//! outbox to every broker and to the hub, and names validated at the edge.

pub mod envelope;
pub mod groups;
pub mod names;

pub use envelope::{EventEnvelope, EventType};
pub use names::{Handle, InvalidName, ProjectKey};

/// Creates a new time-ordered id (UUIDv7), so ids sort roughly by creation time and index well.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
