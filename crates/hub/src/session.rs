//! The life of one hub connection on any transport: the handshake, then a loop that reads
//! the client's records and runs them. The transport owns the writing side: a writer task
//! for WebSockets, the response stream for server-sent events, the polls for long polling.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::Instrument as _;

use crate::backend::Principal;
use crate::connection::{Connection, Frame, Outgoing};
use crate::framing::{FramingError, RecordReader, RECORD_SEPARATOR};
use crate::http_transport::HttpInbound;
use crate::hub::{CloseReason, HubShared};
use crate::invocation;
use crate::msgpack::{self, BinaryReader};
use crate::outbound::OutboundPump;
use crate::protocol::{
    encode_handshake_response, parse_client_message, parse_handshake, ClientMessage, CloseMessage,
    HubProtocol,
};
use crate::stateful::StatefulState;

/// How long a closing connection may take to write its last frames. A client that stops
/// reading can block the writer on a full TCP buffer, so the writer is aborted after this.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The source of a connection's client messages.
pub(crate) enum Inbound {
    WebSocket(WebSocketInbound),
    /// Bodies of `POST {path}?id=...` requests, for server-sent events and long polling.
    Http(HttpInbound),
}

/// The next thing a transport read from the client.
pub(crate) enum InboundEvent {
    /// Message bytes. `binary` is true only for binary WebSocket messages.
    Data { bytes: Bytes, binary: bool },
    /// A WebSocket ping or pong, which counts as activity for the client timeout.
    Activity,
    /// The client ended the transport.
    Ended,
    /// The transport failed. The text goes into the `Close` message's error.
    Failed(String),
    /// The client showed no sign of life within the client timeout.
    TimedOut,
}

impl Inbound {
    async fn next(&mut self, client_timeout: Duration) -> InboundEvent {
        match self {
            Inbound::WebSocket(inbound) => inbound.next(client_timeout).await,
            Inbound::Http(inbound) => inbound.next(client_timeout).await,
        }
    }
}

type WebSocketSink = SplitSink<WebSocket, Message>;

/// The reading half of a connection's WebSocket. With stateful reconnect, a lost WebSocket
/// is replaced by the next one the client opens for the same connection token, within
/// the client timeout. The new sending half goes to the writer through `sinks`.
pub(crate) struct WebSocketInbound {
    stream: Option<SplitStream<WebSocket>>,
    /// Both present only when the connection negotiated stateful reconnect, so that other
    /// connections do not pay for the channels.
    reconnects: Option<mpsc::Receiver<WebSocket>>,
    sinks: Option<mpsc::Sender<WebSocketSink>>,
}

impl WebSocketInbound {
    async fn next(&mut self, client_timeout: Duration) -> InboundEvent {
        loop {
            // A new WebSocket is only ever kept boxed here, because a value kept across an
            // await is stored in this future, which every idle connection keeps. Boxing cut
            // it from 1,168 to 232 bytes (debug build, measured with `size_of_val`).
            let Some(stream) = self.stream.as_mut() else {
                let reconnected = Box::pin(self.await_reconnect(client_timeout)).await;
                if !reconnected {
                    return InboundEvent::Ended;
                }
                continue;
            };

            let wake = tokio::select! {
                socket = next_socket(&mut self.reconnects) => match socket {
                    Some(socket) => Wake::Reconnected(Box::new(socket)),
                    None => Wake::ReconnectsEnded,
                },
                read = timeout(client_timeout, stream.next()) => Wake::Read(read),
            };
            let read = match wake {
                Wake::Read(read) => read,
                Wake::Reconnected(socket) => {
                    let attach = Box::pin(self.attach(*socket));
                    attach.await;
                    continue;
                }
                Wake::ReconnectsEnded => continue,
            };
            let lost = matches!(read, Ok(None | Some(Err(_))));
            if lost && self.reconnects.is_some() {
                tracing::debug!("hub WebSocket lost, waiting for the client to reconnect");
                self.stream = None;
                continue;
            }
            return websocket_event(read);
        }
    }

    /// Waits up to `client_timeout` for the client's next WebSocket and switches to it.
    /// Returns false when none arrived.
    async fn await_reconnect(&mut self, client_timeout: Duration) -> bool {
        match timeout(client_timeout, next_socket(&mut self.reconnects)).await {
            Err(_elapsed) => {
                tracing::info!("hub client did not reconnect in time");
                false
            }
            Ok(None) => false,
            Ok(Some(socket)) => {
                self.attach(socket).await;
                true
            }
        }
    }

    /// Switches to a new WebSocket of the same connection.
    async fn attach(&mut self, socket: WebSocket) {
        tracing::info!("hub client reconnected its WebSocket");
        let (sink, stream) = socket.split();
        self.stream = Some(stream);
        if let Some(sinks) = &self.sinks {
            let _ = sinks.send(sink).await;
        }
    }
}

/// The event that ended a wait of [`WebSocketInbound::next`].
enum Wake {
    Read(WebSocketRead),
    /// A new WebSocket, boxed so the waiting future does not reserve room for one.
    Reconnected(Box<WebSocket>),
    ReconnectsEnded,
}

/// Waits for a replacement WebSocket, or forever when the connection has no reconnects.
async fn next_socket(reconnects: &mut Option<mpsc::Receiver<WebSocket>>) -> Option<WebSocket> {
    match reconnects {
        Some(reconnects) => reconnects.recv().await,
        None => std::future::pending().await,
    }
}

type WebSocketRead = Result<Option<Result<Message, axum::Error>>, tokio::time::error::Elapsed>;

fn websocket_event(read: WebSocketRead) -> InboundEvent {
    match read {
        Err(_elapsed) => InboundEvent::TimedOut,
        Ok(None | Some(Ok(Message::Close(_)))) => InboundEvent::Ended,
        Ok(Some(Err(error))) => {
            tracing::debug!(%error, "hub WebSocket read failed");
            InboundEvent::Failed(format!("invalid WebSocket message: {error}"))
        }
        Ok(Some(Ok(Message::Text(text)))) => InboundEvent::Data {
            bytes: Bytes::from(text),
            binary: false,
        },
        Ok(Some(Ok(Message::Binary(bytes)))) => InboundEvent::Data {
            bytes,
            binary: true,
        },
        Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => InboundEvent::Activity,
    }
}

/// The parts of a new WebSocket connection besides its first socket.
pub(crate) struct WebSocketSession {
    pub principal: Principal,
    pub connection_id: String,
    /// The negotiated connection token, absent when the client skipped negotiate.
    pub token: Option<String>,
    /// Later WebSockets of a connection that negotiated stateful reconnect.
    pub reconnects: Option<mpsc::Receiver<WebSocket>>,
}

/// Sets up a WebSocket connection and returns the future that runs it until it closes.
///
/// The setup runs before the future exists because an async function keeps its arguments
/// for its whole life: the WebSocket, which the reader and the writer task take over
/// here, would otherwise stay reserved in every connection's future.
pub(crate) fn run_websocket(
    shared: Arc<HubShared>,
    socket: WebSocket,
    session: WebSocketSession,
) -> impl Future<Output = ()> + Send {
    let span = connection_span(&session.connection_id, &session.principal, "websockets");
    let key = shared.next_connection_key();
    let (connection, outbound) = Connection::new(
        key,
        session.connection_id,
        session.principal,
        shared.settings.outbound_queue_capacity,
    );
    let connection = Arc::new(connection);
    if session.reconnects.is_some() {
        connection.enable_stateful(shared.settings.outbound_queue_capacity);
    }
    let cleanup = Cleanup {
        shared: Arc::clone(&shared),
        token: session.token,
        connection: Arc::clone(&connection),
    };

    let (sink, stream) = socket.split();
    let (sinks, new_sinks) = if session.reconnects.is_some() {
        let (sinks, new_sinks) = mpsc::channel(1);
        (Some(sinks), Some(new_sinks))
    } else {
        (None, None)
    };
    let pump = OutboundPump::new(
        outbound,
        Arc::clone(&connection),
        Some(shared.settings.keep_alive_interval),
    );
    let writer = tokio::spawn(
        write_websocket(Some(sink), new_sinks, pump, Arc::clone(&connection))
            .instrument(span.clone()),
    );
    let inbound = WebSocketInbound {
        stream: Some(stream),
        reconnects: session.reconnects,
        sinks,
    };

    async move {
        run(&shared, &connection, Inbound::WebSocket(inbound), true).await;
        finish_writer(writer).await;
        drop(cleanup);
    }
    .instrument(span)
}

/// Creates the span that every log line of one connection is recorded in.
pub(crate) fn connection_span(
    connection_id: &str,
    principal: &Principal,
    transport: &'static str,
) -> tracing::Span {
    tracing::info_span!(
        "hub_connection",
        connection_id = %connection_id,
        user_id = %principal.user_id,
        transport
    )
}

/// Releases the connection token and unregisters the connection, also when the connection
/// task panics.
pub(crate) struct Cleanup {
    pub shared: Arc<HubShared>,
    pub token: Option<String>,
    pub connection: Arc<Connection>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.connection.close(None);
        self.shared.unregister(&self.connection);
        if let Some(token) = &self.token {
            self.shared.negotiations.remove(token);
        }
    }
}

/// Runs the handshake and then the client's messages until the connection closes. Returns
/// once the connection is closed, and the transport then sends the final frame.
/// `binary_transport` is whether the transport can carry a binary hub protocol.
pub(crate) async fn run(
    shared: &HubShared,
    connection: &Arc<Connection>,
    mut inbound: Inbound,
    binary_transport: bool,
) {
    // The handshake and message handling are boxed: an async function's future is as large
    // as its largest await point, and these would otherwise size every idle connection's
    // task for the rare moment a join waits on the database.
    let handshake = Box::pin(accept_handshake(
        shared,
        connection,
        &mut inbound,
        binary_transport,
    ))
    .await;
    if let Some(leftover) = handshake {
        let mut reader =
            MessageReader::new(connection.protocol(), shared.settings.max_message_size);
        shared.register(connection);
        tracing::info!(
            protocol = connection.protocol().name(),
            "hub connection opened"
        );
        // Messages sent along with the handshake request count as the client's first.
        if let (false, Some(stateful)) = (leftover.is_empty(), connection.stateful()) {
            stateful.mark_client_spoke();
        }
        if Box::pin(handle_data(shared, connection, &mut reader, &leftover)).await {
            read_loop(shared, connection, inbound, reader).await;
        }
    }

    connection.close(None);
    if let Some(error) = connection.handshake_error() {
        tracing::debug!(%error, "hub handshake rejected");
        return;
    }
    match connection.close_message() {
        Some(CloseMessage {
            error: Some(error), ..
        }) => tracing::info!(%error, "hub connection closed by the server"),
        Some(_) => tracing::info!("hub connection closed by the server"),
        None => tracing::info!("hub connection closed"),
    }
}

/// Reads the handshake request and queues the handshake response. Returns the bytes that
/// followed the handshake request, or `None` when the connection must end.
async fn accept_handshake(
    shared: &HubShared,
    connection: &Connection,
    inbound: &mut Inbound,
    binary_transport: bool,
) -> Option<Bytes> {
    let settings = &shared.settings;
    let handshake = tokio::select! {
        () = shared.shutdown.cancelled() => return None,
        () = connection.closed() => return None,
        handshake = timeout(
            settings.handshake_timeout,
            read_handshake(inbound, settings.max_message_size, settings.client_timeout),
        ) => handshake,
    };
    match handshake {
        Err(_elapsed) => {
            tracing::debug!(timeout = ?settings.handshake_timeout, "hub handshake timed out");
            None
        }
        Ok(Err(HandshakeFailure::Disconnected)) => None,
        Ok(Err(HandshakeFailure::Rejected(error))) => {
            connection.reject_handshake(error);
            None
        }
        Ok(Ok((protocol, _))) if protocol.is_binary() && !binary_transport => {
            connection.reject_handshake(format!(
                "Cannot use the '{}' protocol on the current transport: it carries only text.",
                protocol.name()
            ));
            None
        }
        Ok(Ok((protocol, leftover))) => {
            connection.set_protocol(protocol);
            connection.send_control(Frame::from(encode_handshake_response(None)));
            Some(leftover)
        }
    }
}

enum HandshakeFailure {
    Disconnected,
    /// The text to send back as the handshake response's `error`.
    Rejected(String),
}

/// Reads until the first record separator, checks what precedes it as a handshake request,
/// and returns the chosen protocol and the bytes that followed the request.
///
/// The handshake request is JSON text whatever the hub protocol, so it is read as bytes:
/// a client may send it in a binary WebSocket message when it intends a binary protocol.
async fn read_handshake(
    inbound: &mut Inbound,
    max_len: usize,
    client_timeout: Duration,
) -> Result<(HubProtocol, Bytes), HandshakeFailure> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let bytes = match inbound.next(client_timeout).await {
            InboundEvent::Data { bytes, .. } => bytes,
            InboundEvent::Activity => continue,
            InboundEvent::Ended | InboundEvent::Failed(_) | InboundEvent::TimedOut => {
                return Err(HandshakeFailure::Disconnected)
            }
        };
        buffer.extend_from_slice(&bytes);

        let separator = RECORD_SEPARATOR as u8;
        let Some(end) = buffer.iter().position(|&byte| byte == separator) else {
            if buffer.len() > max_len {
                let error = FramingError::MessageTooLarge { max: max_len };
                return Err(HandshakeFailure::Rejected(error.to_string()));
            }
            continue;
        };
        let request = std::str::from_utf8(&buffer[..end]).map_err(|_| {
            HandshakeFailure::Rejected("Handshake request is not valid UTF-8.".to_owned())
        })?;
        let protocol = parse_handshake(request).map_err(HandshakeFailure::Rejected)?;
        return Ok((protocol, Bytes::copy_from_slice(&buffer[end + 1..])));
    }
}

/// Reads the client's messages until the client leaves, breaks the protocol, stays silent
/// longer than the client timeout, or the connection is closed from elsewhere.
async fn read_loop(
    shared: &HubShared,
    connection: &Arc<Connection>,
    mut inbound: Inbound,
    mut reader: MessageReader,
) {
    let settings = &shared.settings;
    let expiry = expiry_instant(&connection.principal);
    loop {
        let event = tokio::select! {
            biased;
            () = connection.closed() => return,
            () = sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                tracing::info!("hub connection's access token expired");
                connection.close(Some(CloseReason::TokenExpired.close_message()));
                return;
            }
            event = inbound.next(settings.client_timeout) => event,
        };

        let (bytes, binary) = match event {
            InboundEvent::TimedOut => {
                tracing::info!(timeout = ?settings.client_timeout, "hub client timed out");
                connection.close(Some(CloseMessage::reconnectable(Some(format!(
                    "no message received from the client within {:?}",
                    settings.client_timeout
                )))));
                return;
            }
            InboundEvent::Ended => return,
            InboundEvent::Failed(error) => {
                connection.close(Some(CloseMessage::error(error)));
                return;
            }
            InboundEvent::Activity => continue,
            InboundEvent::Data { bytes, binary } => (bytes, binary),
        };
        if let Some(stateful) = connection.stateful() {
            stateful.mark_client_spoke();
        }

        let protocol = connection.protocol();
        if binary != protocol.is_binary() && matches!(inbound, Inbound::WebSocket(_)) {
            let kind = if binary { "binary" } else { "text" };
            let error = format!(
                "{kind} WebSocket messages are not supported by the {} hub protocol",
                protocol.name()
            );
            protocol_error(connection, &error);
            return;
        }
        if !Box::pin(handle_data(shared, connection, &mut reader, &bytes)).await {
            return;
        }
    }
}

/// Converts the credential's expiry into an instant of the tokio clock. An expiry in the
/// past gives the current instant, so the connection closes at once.
fn expiry_instant(principal: &Principal) -> Option<Instant> {
    let expires_at = principal.expires_at?;
    let remaining = expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + remaining)
}

/// Splits incoming bytes into the messages of the connection's hub protocol.
enum MessageReader {
    Json(RecordReader),
    MessagePack(BinaryReader),
}

impl MessageReader {
    fn new(protocol: HubProtocol, max_message_size: usize) -> Self {
        match protocol {
            HubProtocol::Json => MessageReader::Json(RecordReader::new(max_message_size)),
            HubProtocol::MessagePack => {
                MessageReader::MessagePack(BinaryReader::new(max_message_size))
            }
        }
    }

    /// Returns the messages that `bytes` completes, each parsed or with the error that
    /// closes the connection.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Result<ClientMessage, String>>, String> {
        match self {
            MessageReader::Json(reader) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| "hub message is not valid UTF-8".to_owned())?;
                let records = reader.push(text).map_err(|error| error.to_string())?;
                Ok(records
                    .iter()
                    .map(|record| parse_client_message(record))
                    .collect())
            }
            MessageReader::MessagePack(reader) => {
                let payloads = reader.push(bytes).map_err(|error| error.to_string())?;
                Ok(payloads
                    .iter()
                    .map(|payload| msgpack::parse_client_message(payload))
                    .collect())
            }
        }
    }
}

/// Splits `bytes` into messages and runs them. Returns false when the connection must stop
/// reading.
async fn handle_data(
    shared: &HubShared,
    connection: &Arc<Connection>,
    reader: &mut MessageReader,
    bytes: &[u8],
) -> bool {
    let max = shared.settings.max_message_size;
    if bytes.len() > max {
        protocol_error(
            connection,
            &FramingError::MessageTooLarge { max }.to_string(),
        );
        return false;
    }
    match reader.push(bytes) {
        Ok(messages) => handle_messages(shared, connection, messages).await,
        Err(error) => {
            protocol_error(connection, &error);
            false
        }
    }
}

/// Handles parsed messages in order, and closes the connection at the first that failed to
/// parse. Returns false when the connection must stop reading.
async fn handle_messages(
    shared: &HubShared,
    connection: &Arc<Connection>,
    messages: Vec<Result<ClientMessage, String>>,
) -> bool {
    for message in messages {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                protocol_error(connection, &error);
                return false;
            }
        };

        // With stateful reconnect, invocation-type messages are numbered, repeats from
        // before a reconnect are skipped, and each handled one is acknowledged afterwards.
        let sequence_id = match (&message, connection.stateful()) {
            (
                ClientMessage::Invocation(_)
                | ClientMessage::StreamInvocation(_)
                | ClientMessage::CancelInvocation,
                Some(stateful),
            ) => match stateful.receive() {
                Some(id) => Some(id),
                None => continue,
            },
            _ => None,
        };

        match message {
            ClientMessage::Ack { sequence_id } if connection.stateful().is_some() => {
                if let Some(stateful) = connection.stateful() {
                    stateful.ack(sequence_id);
                }
            }
            ClientMessage::Sequence { sequence_id } if connection.stateful().is_some() => {
                if let Some(stateful) = connection.stateful() {
                    stateful.restart_receiving(sequence_id);
                }
            }
            ClientMessage::Ack { .. } | ClientMessage::Sequence { .. } => {
                let kind = if matches!(message, ClientMessage::Ack { .. }) {
                    "ack"
                } else {
                    "sequence"
                };
                protocol_error(
                    connection,
                    &format!(
                        "unexpected {kind} message: this connection did not negotiate \
                         stateful reconnect"
                    ),
                );
                return false;
            }
            ClientMessage::Invocation(invocation) => {
                // A join may wait on the backend, and a close must not wait for it.
                tokio::select! {
                    () = connection.closed() => return false,
                    () = invocation::handle(shared, connection, invocation) => {}
                }
            }
            ClientMessage::StreamInvocation(invocation) => {
                let error = format!(
                    "streaming invocations are not supported (hub method '{}')",
                    invocation.target
                );
                if let Some(id) = &invocation.invocation_id {
                    connection.send(connection.protocol().completion_error(id, &error));
                }
            }
            // Invocations run to completion before the next message is read, so there is
            // never an invocation in progress to cancel.
            ClientMessage::CancelInvocation | ClientMessage::Ping => {}
            ClientMessage::Close { error } => {
                tracing::debug!(error = error.as_deref(), "hub client sent close");
                return false;
            }
            ClientMessage::Unexpected { kind } => {
                protocol_error(
                    connection,
                    &format!("unexpected {kind} message: this hub does not accept it"),
                );
                return false;
            }
        }

        if let Some(sequence_id) = sequence_id {
            connection.send_control(connection.protocol().ack(sequence_id));
        }
        if connection.is_closing() {
            return false;
        }
    }
    true
}

fn protocol_error(connection: &Connection, error: &str) {
    tracing::debug!(%error, "closing hub connection after a protocol error");
    connection.close(Some(CloseMessage::error(error)));
}

/// Writes the connection's frames to the WebSocket until the final frame, then closes it.
///
/// With stateful reconnect, a failed write does not end the connection: the writer waits
/// for the socket of the client's reconnect, announces the first unacknowledged sequence
/// id, sends the unacknowledged frames again and goes on.
///
/// `sink` is `None` only while a stateful connection waits for its client to reconnect. It
/// is taken as an `Option` so the future does not store the sink twice, once as the
/// argument and once as the variable.
async fn write_websocket(
    mut sink: Option<WebSocketSink>,
    mut new_sinks: Option<mpsc::Receiver<WebSocketSink>>,
    mut pump: OutboundPump,
    connection: Arc<Connection>,
) {
    // The reader drops its end when the session ends, and a closed channel must not win
    // every `select!` below.
    let mut sinks_open = new_sinks.is_some();
    if let (Some(current), Some(stateful)) = (sink.as_mut(), connection.stateful()) {
        let sent = Box::pin(send_handshake_response_alone(
            current,
            &mut pump,
            &connection,
            stateful,
        ));
        if let Err(error) = sent.await {
            tracing::debug!(%error, "hub WebSocket write failed");
            sink = None;
        }
    }
    loop {
        let Some(current) = sink.as_mut() else {
            tokio::select! {
                () = connection.closed() => return,
                new_sink = next_sink(&mut new_sinks) => match new_sink {
                    Some(new_sink) => sink = Box::pin(resend(new_sink, &connection)).await,
                    None => return,
                },
            }
            continue;
        };

        let outgoing = tokio::select! {
            biased;
            new_sink = next_sink(&mut new_sinks), if sinks_open => {
                match new_sink {
                    Some(new_sink) => sink = Box::pin(resend(new_sink, &connection)).await,
                    None => sinks_open = false,
                }
                continue;
            }
            outgoing = pump.next() => outgoing,
        };
        let Some(outgoing) = outgoing else { break };

        if let Err(error) = write_batch(current, &mut pump, &connection, outgoing).await {
            tracing::debug!(%error, "hub WebSocket write failed");
            if connection.stateful().is_some() && !connection.is_closing() {
                sink = None;
                continue;
            }
            connection.close(None);
            return;
        }
    }

    if let Some(mut sink) = sink {
        let close = Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: Utf8Bytes::default(),
        }));
        let _ = Box::pin(sink.send(close)).await;
    }
}

/// Waits for the socket of a stateful reconnect, or forever on a connection without one.
async fn next_sink(new_sinks: &mut Option<mpsc::Receiver<WebSocketSink>>) -> Option<WebSocketSink> {
    match new_sinks {
        Some(new_sinks) => new_sinks.recv().await,
        None => std::future::pending().await,
    }
}

/// Longest time a stateful connection's writer keeps frames back after the handshake
/// response, waiting for the client's first message. It is short because the frames kept
/// back must not fill the queue of a client that speaks only at its keep-alive ping. The
/// JavaScript client pings at once.
const MAX_FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(1);

/// Sends the connection's first frame, the handshake response, on its own, and then waits
/// up to [`MAX_FIRST_MESSAGE_WAIT`] for the client's first message before the writer sends
/// anything else.
///
/// The official JavaScript client (10.0) starts counting the server's messages for stateful
/// reconnect only in a continuation after its handshake completes. A message that arrives in
/// the same read as the handshake response is handled but not counted, so after a reconnect
/// the client handles one resent message twice. That client sends a ping as soon as it
/// counts, and any other client speaks by its first invocation or keep-alive ping.
async fn send_handshake_response_alone(
    sink: &mut WebSocketSink,
    pump: &mut OutboundPump,
    connection: &Connection,
    stateful: &StatefulState,
) -> Result<(), axum::Error> {
    let Some(first) = pump.next().await else {
        return Ok(());
    };
    if first.sequenced {
        stateful.record_sent(&first.frame);
    }
    sink.send(websocket_message(first.frame)).await?;
    if pump.is_finished() {
        return Ok(());
    }

    tokio::select! {
        () = stateful.client_spoke() => {}
        () = connection.closed() => {}
        () = tokio::time::sleep(MAX_FIRST_MESSAGE_WAIT) => {
            tracing::debug!(
                connection_id = %connection.connection_id,
                wait = ?MAX_FIRST_MESSAGE_WAIT,
                "hub client sent nothing after its handshake, sending its messages anyway"
            );
        }
    }
    Ok(())
}

/// Frames written to a WebSocket before one flush. Frames that are already queued go out
/// in one system call instead of one each, and the bound keeps a flush from growing without
/// limit while the queue keeps filling.
const MAX_FRAMES_PER_FLUSH: usize = 64;

/// Writes `first` and the frames queued behind it, up to [`MAX_FRAMES_PER_FLUSH`], then
/// flushes them together.
async fn write_batch(
    sink: &mut WebSocketSink,
    pump: &mut OutboundPump,
    connection: &Connection,
    first: Outgoing,
) -> Result<(), axum::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(outgoing) = next.take() {
        if let (true, Some(stateful)) = (outgoing.sequenced, connection.stateful()) {
            if !stateful.record_sent(&outgoing.frame) {
                connection.close(Some(CloseMessage::reconnectable(Some(
                    "too many messages not acknowledged by the client".to_owned(),
                ))));
            }
        }
        sink.feed(websocket_message(outgoing.frame)).await?;
        written += 1;
        if written < MAX_FRAMES_PER_FLUSH {
            next = pump.try_next();
        }
    }
    sink.flush().await
}

fn websocket_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(text),
        Frame::Binary(bytes) => Message::Binary(bytes),
    }
}

/// Starts a replacement WebSocket with a `Sequence` message and the unacknowledged
/// frames. Returns the sink, or `None` when this socket failed too.
async fn resend(mut sink: WebSocketSink, connection: &Connection) -> Option<WebSocketSink> {
    let stateful = connection.stateful()?;
    let (first_id, frames) = stateful.unacknowledged();
    tracing::debug!(
        first_id,
        count = frames.len(),
        "resending unacknowledged hub messages"
    );
    let sequence = connection.protocol().sequence(first_id);
    for frame in std::iter::once(sequence).chain(frames) {
        if let Err(error) = sink.send(websocket_message(frame)).await {
            tracing::debug!(%error, "hub WebSocket write failed while resending");
            return None;
        }
    }
    Some(sink)
}

/// Waits for the writer to send its last frames, at most [`CLOSE_TIMEOUT`].
async fn finish_writer(mut writer: tokio::task::JoinHandle<()>) {
    match timeout(CLOSE_TIMEOUT, &mut writer).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "hub connection writer task failed"),
        Err(_elapsed) => {
            tracing::debug!("hub connection writer did not finish in time, aborting it");
            writer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{HubBackend, JoinError, JoinGrant, JoinTarget};
    use crate::settings::HubSettings;
    use crate::AuthRejected;
    use uuid::Uuid;

    /// Upper bound for the reading task's future of one WebSocket connection. A hub node
    /// keeps one per connection for as long as the client stays, so a large await point
    /// added to `run` shows up here rather than as memory per connection in production.
    const MAX_IDLE_READER_FUTURE_BYTES: usize = 1024;

    struct RejectingBackend;

    #[async_trait::async_trait]
    impl HubBackend for RejectingBackend {
        async fn authenticate(&self, _bearer_token: &str) -> Result<Principal, AuthRejected> {
            Err(AuthRejected::new("no tokens in this test"))
        }

        async fn join(
            &self,
            _principal: &Principal,
            _target: JoinTarget,
        ) -> Result<JoinGrant, JoinError> {
            Err(JoinError::Forbidden)
        }
    }

    #[test]
    fn reader_future_stays_small() {
        let hub = crate::Hub::new(Arc::new(RejectingBackend), HubSettings::default());
        let shared = &hub.shared;
        let principal = Principal::new(Uuid::nil(), Uuid::nil());
        let (connection, _receiver) = Connection::new(1, "c1".to_owned(), principal, 8);
        let connection = Arc::new(connection);
        let inbound = Inbound::WebSocket(WebSocketInbound {
            stream: None,
            reconnects: None,
            sinks: None,
        });

        let reader = run(shared, &connection, inbound, true);

        let size = std::mem::size_of_val(&reader);
        assert!(
            size <= MAX_IDLE_READER_FUTURE_BYTES,
            "the reader future takes {size} bytes"
        );
    }
}
