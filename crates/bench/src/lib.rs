//! Shared code of the hub benchmark's two programs: `hub-bench-server`, which serves the
//! SignalR hub and emits timed messages, and `hub-loadgen`, which opens WebSocket clients
//! against it or against the Socket.IO baseline in `bench/socketio-server` and measures
//! deliveries per second, latency and server memory. `scripts/bench-hub` runs both.

pub mod control;
pub mod payload;
pub mod signalr_client;
pub mod socketio_client;
pub mod stats;
pub mod system;
