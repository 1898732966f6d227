//! Background roles. Each is a loop that stops when its cancellation token fires.

pub mod bulk;
pub mod email;
pub mod notify;
pub mod relay;
