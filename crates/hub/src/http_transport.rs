//! The HTTP transports of `TransportProtocols.md`: server-sent events and long polling
//! carry frames from the server, and `POST {path}?id=<token>` carries the client's messages.
//!
//! Both need a negotiated connection token. The first event stream or poll request for a
//! token starts the connection's session, and later requests find it by token.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use parking_lot::Mutex;
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backend::Principal;
use crate::connection::{Connection, Frame, Outgoing};
use crate::hub::HubShared;
use crate::outbound::OutboundPump;
use crate::session::{self, connection_span, Cleanup, Inbound, InboundEvent, CLOSE_TIMEOUT};

/// Capacity, in request bodies, of the queue between `POST` handlers and the session.
const INBOUND_CAPACITY: usize = 16;

/// How long a poll whose credential was rejected waits for its connection to close.
///
/// Revoking access rejects the credential as soon as the change commits, but the hub
/// closes the connection only when the application learns of the change (in Tasklane, from
/// a PostgreSQL notification and one more query). Without the wait, a poll sent in between
/// ends with 401 and the client reconnects instead of reading the `Close` message. The
/// value is an estimate with a wide margin, not a measured bound on that delay.
const REJECTED_POLL_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpTransportKind {
    ServerSentEvents,
    LongPolling,
}

impl HttpTransportKind {
    fn name(self) -> &'static str {
        match self {
            HttpTransportKind::ServerSentEvents => "serversentevents",
            HttpTransportKind::LongPolling => "longpolling",
        }
    }
}

/// One connection on an HTTP transport, shared by its session and its HTTP requests.
pub(crate) struct HttpConnection {
    pub kind: HttpTransportKind,
    pub connection: Arc<Connection>,
    inbound: mpsc::Sender<Bytes>,
    /// True while a `POST` is in progress, so an overlapping one gets 409.
    sending: AtomicBool,
    pump: Arc<tokio::sync::Mutex<OutboundPump>>,
    polls: Mutex<PollState>,
    /// Cancelled when the client has been handed the final frame or has left, so the
    /// session can forget the token.
    drained: CancellationToken,
}

struct PollState {
    /// Id of the poll request that currently waits for frames, if any.
    current: Option<(u64, CancellationToken)>,
    next_id: u64,
    /// When the last poll request ended, or when the connection started.
    last_seen: Instant,
}

/// The session's end of the `POST` bodies.
pub(crate) struct HttpInbound {
    receiver: mpsc::Receiver<Bytes>,
    http: Arc<HttpConnection>,
}

impl HttpConnection {
    fn new(
        shared: &HubShared,
        kind: HttpTransportKind,
        principal: Principal,
        connection_id: &str,
    ) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let settings = &shared.settings;
        let (connection, outbound) = Connection::new(
            shared.next_connection_key(),
            connection_id.to_owned(),
            principal,
            settings.outbound_queue_capacity,
        );
        let connection = Arc::new(connection);
        // Long polling clients neither send nor expect pings: each poll shows they are alive.
        let keep_alive = match kind {
            HttpTransportKind::ServerSentEvents => Some(settings.keep_alive_interval),
            HttpTransportKind::LongPolling => None,
        };
        let pump = OutboundPump::new(outbound, Arc::clone(&connection), keep_alive);
        let (inbound, receiver) = mpsc::channel(INBOUND_CAPACITY);
        let http = Self {
            kind,
            connection,
            inbound,
            sending: AtomicBool::new(false),
            pump: Arc::new(tokio::sync::Mutex::new(pump)),
            polls: Mutex::new(PollState {
                current: None,
                next_id: 0,
                last_seen: Instant::now(),
            }),
            drained: CancellationToken::new(),
        };
        (Arc::new(http), receiver)
    }

    /// Registers a new poll request and ends the previous one, which then returns 204.
    fn start_poll(&self) -> (u64, CancellationToken) {
        let mut polls = self.polls.lock();
        let id = polls.next_id;
        polls.next_id += 1;
        let cancel = CancellationToken::new();
        if let Some((_, previous)) = polls.current.replace((id, cancel.clone())) {
            previous.cancel();
        }
        polls.last_seen = Instant::now();
        (id, cancel)
    }

    /// Registers a poll request only when no other poll is waiting, and returns `None`
    /// otherwise, leaving the waiting poll in place.
    fn start_poll_if_none_waiting(&self) -> Option<(u64, CancellationToken)> {
        let mut polls = self.polls.lock();
        if polls.current.is_some() {
            return None;
        }
        let id = polls.next_id;
        polls.next_id += 1;
        let cancel = CancellationToken::new();
        polls.current = Some((id, cancel.clone()));
        polls.last_seen = Instant::now();
        Some((id, cancel))
    }

    fn end_poll(&self, id: u64) {
        let mut polls = self.polls.lock();
        if polls
            .current
            .as_ref()
            .is_some_and(|(current, _)| *current == id)
        {
            polls.current = None;
        }
        polls.last_seen = Instant::now();
    }

    /// When a long polling client that sends no further poll counts as gone: `None` while
    /// a poll request is waiting.
    fn poll_deadline(&self, client_timeout: Duration) -> Option<Instant> {
        let polls = self.polls.lock();
        match polls.current {
            Some(_) => None,
            None => Some(polls.last_seen + client_timeout),
        }
    }
}

impl HttpInbound {
    pub async fn next(&mut self, client_timeout: Duration) -> InboundEvent {
        match self.http.kind {
            // The client sends a ping at least every keep-alive interval.
            HttpTransportKind::ServerSentEvents => {
                match timeout(client_timeout, self.receiver.recv()).await {
                    Err(_elapsed) => InboundEvent::TimedOut,
                    Ok(received) => data_event(received),
                }
            }
            // The client sends no pings, so it is alive while it keeps polling.
            HttpTransportKind::LongPolling => loop {
                let deadline = self.http.poll_deadline(client_timeout);
                let wake_at = deadline.unwrap_or_else(|| Instant::now() + client_timeout);
                tokio::select! {
                    received = self.receiver.recv() => return data_event(received),
                    () = sleep_until(wake_at) => {
                        let expired = self
                            .http
                            .poll_deadline(client_timeout)
                            .is_some_and(|deadline| deadline <= Instant::now());
                        if expired {
                            return InboundEvent::TimedOut;
                        }
                    }
                }
            },
        }
    }
}

fn data_event(received: Option<Bytes>) -> InboundEvent {
    match received {
        Some(bytes) => InboundEvent::Data {
            bytes,
            binary: false,
        },
        None => InboundEvent::Ended,
    }
}

/// Finds or starts the token's HTTP transport of `kind`. Returns the connection and
/// whether this request started it.
pub(crate) fn claim(
    shared: &Arc<HubShared>,
    token: &str,
    principal: &Principal,
    kind: HttpTransportKind,
) -> Result<(Arc<HttpConnection>, bool), crate::negotiate::ClaimError> {
    let mut receiver = None;
    let claim = shared
        .negotiations
        .claim_http(token, principal, kind, |connection_id| {
            let (http, inbound) =
                HttpConnection::new(shared, kind, principal.clone(), connection_id);
            receiver = Some(inbound);
            http
        })?;

    if let Some(receiver) = receiver {
        let inbound = HttpInbound {
            receiver,
            http: Arc::clone(&claim.connection),
        };
        let task = run_session(
            Arc::clone(shared),
            Arc::clone(&claim.connection),
            inbound,
            token.to_owned(),
        );
        shared.tasks.spawn(task);
    }
    Ok((claim.connection, claim.created))
}

async fn run_session(
    shared: Arc<HubShared>,
    http: Arc<HttpConnection>,
    inbound: HttpInbound,
    token: String,
) {
    let connection = Arc::clone(&http.connection);
    let span = connection_span(
        &connection.connection_id,
        &connection.principal,
        http.kind.name(),
    );
    let cleanup = Cleanup {
        shared: Arc::clone(&shared),
        token: Some(token),
        connection: Arc::clone(&connection),
    };
    async move {
        let binary_transport = http.kind == HttpTransportKind::LongPolling;
        session::run(
            &shared,
            &connection,
            Inbound::Http(inbound),
            binary_transport,
        )
        .await;
        shared.unregister(&connection);
        // The final frame waits for the client's next request, so the token stays valid.
        if timeout(CLOSE_TIMEOUT, http.drained.cancelled())
            .await
            .is_err()
        {
            tracing::debug!("hub client did not fetch the final frame in time");
        }
        drop(cleanup);
    }
    .instrument(span)
    .await;
}

/// Starts the response of a server-sent events request. The caller checked that `http`
/// was created by this request, so no other request holds its outbound queue.
pub(crate) async fn event_stream(http: Arc<HttpConnection>) -> Response {
    let pump = Arc::clone(&http.pump).lock_owned().await;
    let stream = EventStream { pump, http };

    // A comment line first, so that the client sees the stream open before any event.
    let prelude = futures::stream::once(async { Ok(Bytes::from_static(b":\r\n\r\n")) });
    let events = futures::stream::unfold(stream, |mut stream| async move {
        let outgoing = stream.pump.next().await?;
        Some((Ok::<_, Infallible>(encode_event(outgoing.frame)), stream))
    });
    let body = Body::from_stream(prelude.chain(events));

    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The state of an event stream response. Dropping it, when the stream ends or the client
/// disconnects, ends the connection.
struct EventStream {
    pump: OwnedMutexGuard<OutboundPump>,
    http: Arc<HttpConnection>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.http.connection.close(None);
        self.http.drained.cancel();
    }
}

/// Encodes a frame as one server-sent event, with a `data:` line per line of the frame.
fn encode_event(frame: Frame) -> Bytes {
    let bytes = frame.into_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let mut event = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        event.push_str("data: ");
        event.push_str(line.strip_suffix('\r').unwrap_or(line));
        event.push_str("\r\n");
    }
    event.push_str("\r\n");
    Bytes::from(event)
}

/// Handles a long polling request: the first request of a connection returns at once,
/// later ones wait for frames. A poll that a newer poll replaces returns 204, as does a
/// poll after the connection ended.
pub(crate) async fn poll(
    shared: &HubShared,
    http: Arc<HttpConnection>,
    first_poll: bool,
) -> Response {
    if first_poll {
        return empty_response(StatusCode::OK);
    }
    let (id, cancel) = http.start_poll();
    let response = wait_for_frames(shared, &http, &cancel).await;
    http.end_poll(id);
    response
}

/// Handles a long polling request whose credential was rejected: once the connection
/// closes it returns the final frame, and if the connection is still open after
/// [`REJECTED_POLL_WAIT`] it returns `rejected`. The request never receives other frames,
/// because a closed connection's queued frames are dropped.
///
/// It also returns `rejected` when another poll is waiting at the close. That poll, whose
/// credential was accepted, receives the final frame, so a request without a valid
/// credential can never take it away or end that poll with 204.
pub(crate) async fn poll_final_frame(
    shared: &HubShared,
    http: Arc<HttpConnection>,
    rejected: Response,
) -> Response {
    if timeout(REJECTED_POLL_WAIT, http.connection.closed())
        .await
        .is_err()
    {
        return rejected;
    }
    let Some((id, cancel)) = http.start_poll_if_none_waiting() else {
        return rejected;
    };
    let response = wait_for_frames(shared, &http, &cancel).await;
    http.end_poll(id);
    response
}

async fn wait_for_frames(
    shared: &HubShared,
    http: &HttpConnection,
    cancel: &CancellationToken,
) -> Response {
    let mut pump = tokio::select! {
        biased;
        () = cancel.cancelled() => return empty_response(StatusCode::NO_CONTENT),
        pump = http.pump.lock() => pump,
    };
    let first = tokio::select! {
        biased;
        () = cancel.cancelled() => return empty_response(StatusCode::NO_CONTENT),
        frame = pump.next() => frame,
        () = tokio::time::sleep(shared.settings.long_poll_timeout) => {
            return empty_response(StatusCode::OK);
        }
    };
    let Some(Outgoing { frame: first, .. }) = first else {
        http.drained.cancel();
        return empty_response(StatusCode::NO_CONTENT);
    };

    let content_type = match first {
        Frame::Text(_) => "text/plain; charset=utf-8",
        Frame::Binary(_) => "application/octet-stream",
    };
    let mut body = BytesMut::from(first.into_bytes().as_ref());
    while let Some(outgoing) = pump.try_next() {
        body.extend_from_slice(&outgoing.frame.into_bytes());
    }
    if pump.is_finished() {
        http.drained.cancel();
    }
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.freeze(),
    )
        .into_response()
}

/// Receives one `POST` body and hands it to the session. Returns 409 while another `POST`
/// of the connection is in progress and 404 once the connection has ended.
pub(crate) async fn receive(http: &HttpConnection, body: Body, max_len: usize) -> Response {
    if http.sending.swap(true, Ordering::AcqRel) {
        return (
            StatusCode::CONFLICT,
            "another send request for this connection is in progress",
        )
            .into_response();
    }
    let response = forward_body(http, body, max_len).await;
    http.sending.store(false, Ordering::Release);
    response
}

async fn forward_body(http: &HttpConnection, body: Body, max_len: usize) -> Response {
    if http.connection.is_closing() {
        return connection_ended();
    }

    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::debug!(%error, "reading a hub send request failed");
                return (StatusCode::BAD_REQUEST, "failed to read the request body")
                    .into_response();
            }
        };
        if buffer.len() + chunk.len() > max_len {
            let message = format!("request body exceeds the maximum of {max_len} bytes");
            return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        buffer.extend_from_slice(&chunk);
    }

    tokio::select! {
        () = http.connection.closed() => connection_ended(),
        sent = http.inbound.send(buffer.freeze()) => match sent {
            Ok(()) => empty_response(StatusCode::OK),
            Err(_closed) => connection_ended(),
        },
    }
}

/// Ends the connection at the client's request, without a `Close` message.
pub(crate) fn delete(http: &HttpConnection) -> Response {
    http.connection.close(None);
    http.drained.cancel();
    empty_response(StatusCode::ACCEPTED)
}

fn connection_ended() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this connection has ended: negotiate again",
    )
        .into_response()
}

fn empty_response(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_event_splits_lines() {
        let event = encode_event(Frame::from("a\nb\r\nc"));

        assert_eq!(&event[..], b"data: a\r\ndata: b\r\ndata: c\r\n\r\n");
    }

    #[test]
    fn encode_event_single_line() {
        let event = encode_event(Frame::from("{\"type\":6}\u{1e}"));

        assert_eq!(&event[..], "data: {\"type\":6}\u{1e}\r\n\r\n".as_bytes());
    }
}
