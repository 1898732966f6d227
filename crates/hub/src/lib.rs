//! A SignalR hub server on axum, written from the SignalR specifications in
//! dotnet/aspnetcore (`src/SignalR/docs/specs/HubProtocol.md` and `TransportProtocols.md`).
//!
//! What it implements:
//! - `POST {path}/negotiate`, negotiate versions 0 and 1. It offers WebSockets and long
//!   polling with the text and binary transfer formats, and server-sent events with text.
//! - The WebSockets transport at `{path}?id=<connectionToken>`, or without `id` for
//!   clients that skip negotiate. An unknown id gets 404, a second WebSocket for the same
//!   id gets 409, and an id negotiated by another user gets 403.
//! - Server-sent events (`GET {path}?id=...` with `Accept: text/event-stream`) and long
//!   polling (any other `GET {path}?id=...`), each paired with `POST {path}?id=...` for
//!   the client's messages. An unknown id gets 404, a `POST` that overlaps another gets
//!   409, a second event stream gets 409, and a poll replaced by a newer poll returns 204.
//!   The first poll of a connection returns at once with no data, and a poll with nothing
//!   to return ends after [`HubSettings::long_poll_timeout`] with an empty 200.
//!   `DELETE {path}?id=...` ends the connection, and its waiting poll returns 204. A long
//!   polling client that sends no poll for [`HubSettings::client_timeout`] is closed.
//! - The JSON and MessagePack hub protocols, versions 1 and 2, chosen in the handshake.
//!   MessagePack is rejected on server-sent events, which carry only text. Clients may
//!   invoke `JoinTask(taskId)`, `JoinJob(jobId)`, `LeaveTask(taskId)`, `LeaveJob(jobId)`,
//!   `Resume([{"group", "after_seq"}])` and `OnlineUsers()`. The server invokes
//!   `taskUpdated`, `notification` and `jobProgress` on the client with one envelope
//!   argument `{"event_id", "group", "seq", "type", "data"}`, `resync` with `{"group"}`,
//!   and `viewers` and `onlineUsers` with `{"group", "users": [{"user_id", "name",
//!   "handle"}]}`.
//!
//! Clients authenticate with a bearer token, from the `Authorization` header or the
//! `access_token` query parameter. The token is checked at negotiate and again on every
//! transport request, which must come from the user who negotiated.
//!
//! Every connection joins `user:{user_id}` and `tenant:{tenant_id}` when it connects.
//! A join waits for [`HubBackend::join`] to read the group's sequence number and snapshot,
//! and holds back the group's messages meanwhile. Afterwards the client receives exactly
//! the messages with a greater sequence number, each once.
//!
//! The application may pass a message to [`Hub::dispatch`] more than once. Each
//! connection drops a message whose sequence number is not above the last one it sent in
//! that group, so a repeat reaches no client twice. The same rule drops a message that
//! arrives after a later one of its group, so the caller must dispatch each group's
//! messages in sequence order.
//!
//! A client that reconnects calls `Resume` with the last sequence number it received in
//! each group. The hub authorizes each group again (task and job groups with the join
//! check, user and tenant groups only for the connection's own), replays the missed
//! messages from [`HubBackend::catch_up`] and then the live ones, with no gap and no
//! duplicate. When the history no longer reaches back, or the client missed more than
//! half of [`HubSettings::outbound_queue_capacity`], the client gets `resync` for that
//! group and must join again (task and job groups) or refetch its state.
//!
//! Stateful reconnect works over WebSockets only: a client that negotiates with
//! `useStatefulReconnect=true` gets `"useStatefulReconnect": true`. When its WebSocket is
//! lost without a close frame, the connection stays open for
//! [`HubSettings::client_timeout`] and the next WebSocket for the same connection token
//! takes over. Both sides number their invocation-type messages, acknowledge them with
//! `Ack`, and after the reconnect send a `Sequence` message and resend what was not
//! acknowledged, so a message is neither lost nor handled twice if the client reconnects
//! in time. The server keeps at most [`HubSettings::outbound_queue_capacity`]
//! unacknowledged messages and closes the connection beyond that.
//!
//! With a [`PresenceStore`] (see [`Hub::set_presence`]), the hub keeps presence sets that
//! every node shares: the viewers of each task (connections that joined `task:{id}`) and
//! the online users of each tenant. [`Hub::run_presence_heartbeat`] refreshes this node's
//! entries, so the store can expire the entries of a node that died. The store publishes
//! each change, and each node passes it to [`Hub::dispatch_presence`], which sends it
//! without a sequence number, so `Resume` never replays it.
//!
//! A connection closes with `allowReconnect: true` when [`Principal::expires_at`] passes,
//! so the client negotiates again with a fresh token. The application closes the
//! connections of a user whose access was revoked with [`Hub::close_user`] or
//! [`Hub::close_user_where`] and [`CloseReason::AccessRevoked`], which sends
//! `allowReconnect: false`.
//!
//! Several hub nodes can serve one hub without sticky sessions when each has a
//! [`HubCluster`] (see [`Hub::with_cluster`]). The node that negotiates a connection owns
//! it and records itself in [`ConnectionOwners`]. Another node that receives a transport
//! request for that connection (`GET`, `POST` or `DELETE` at `{path}?id=...`, including
//! the WebSocket upgrade) forwards it to the owner, streaming the response or tunnelling
//! the upgraded connection. When the owner is gone, the client gets 404, negotiates again
//! and calls `Resume`. Every node must still receive every relay message, because groups
//! are local to the process.
//!
//! NOTE: Streaming invocations and client results are not implemented. Without a
//! [`HubCluster`], or while its registry is unreachable, HTTP transport connections and
//! stateful reconnect state are local to the process, so negotiated connections need
//! sticky sessions.

mod backend;
mod cluster;
mod connection;
mod forward;
mod framing;
mod groups;
mod http;
mod http_transport;
mod hub;
mod invocation;
mod msgpack;
mod negotiate;
mod outbound;
mod presence;
mod protocol;
mod queue;
mod resume;
mod session;
mod settings;
mod stateful;

pub use backend::{
    AuthRejected, CatchUp, CookieRejected, HubBackend, HubMessage, JoinError, JoinGrant,
    JoinTarget, Principal,
};
pub use cluster::{owner_key, ConnectionOwners, HubCluster, OwnersUnavailable};
pub use forward::{forward_request, forwarding_client, ForwardError};
pub use hub::{CloseReason, Hub};
pub use presence::{PresenceError, PresenceMember, PresenceStore, PresenceUser};
pub use session::CLOSE_TIMEOUT;
pub use settings::{HubSettings, InvalidHubSettings};
