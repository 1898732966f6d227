//! A SignalR hub server on axum, written from the SignalR specifications in
//! dotnet/aspnetcore (`src/SignalR/docs/specs/HubProtocol.md` and `TransportProtocols.md`).
//!
//! What it implements:
//! - `POST {path}/negotiate`, negotiate versions 0 and 1. It offers only the WebSockets
//!   transport with text frames.
//! - The WebSockets transport at `{path}?id=<connectionToken>`, or without `id` for
//!   clients that skip negotiate. An unknown id gets 404, a second WebSocket for the same
//!   id gets 409, and an id negotiated by another user gets 403.
//! - The JSON hub protocol, version 1. Clients may invoke `JoinTask(taskId)` and
//!   `JoinJob(jobId)`. The server invokes `taskUpdated`, `notification` and `jobProgress`
//!   on the client with one envelope argument
//!   `{"event_id", "group", "seq", "type", "data"}`.
//!
//! Clients authenticate with a bearer token, from the `Authorization` header or the
//! `access_token` query parameter. The token is checked at negotiate and again at connect,
//! and the connect must come from the user who negotiated.
//!
//! Every connection joins `user:{user_id}` and `tenant:{tenant_id}` when it connects.
//! A join waits for [`HubBackend::join`] to read the group's sequence number and snapshot,
//! and holds back the group's messages meanwhile. Afterwards the client receives exactly
//! the messages with a greater sequence number, each once.
//!
//! NOTE: Server-sent events, long polling, MessagePack and stateful reconnect are not
//! implemented. Groups are local to the process, so running several server processes
//! requires every process to receive every relay message.

mod backend;
mod connection;
mod framing;
mod groups;
mod http;
mod hub;
mod invocation;
mod negotiate;
mod protocol;
mod session;
mod settings;

pub use backend::{
    AuthRejected, HubBackend, HubMessage, JoinError, JoinGrant, JoinTarget, Principal,
};
pub use hub::Hub;
pub use session::CLOSE_TIMEOUT;
pub use settings::{HubSettings, InvalidHubSettings};
