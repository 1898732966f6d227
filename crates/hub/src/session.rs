//! The life of one WebSocket connection: handshake, then a reader loop in this task and a
//! writer task that owns the socket's sending half.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::Instrument as _;

use crate::backend::Principal;
use crate::connection::Connection;
use crate::framing::{FramingError, RecordReader};
use crate::hub::HubShared;
use crate::invocation;
use crate::protocol::{
    encode_completion_error, encode_handshake_response, encode_ping, parse_client_message,
    parse_handshake, ClientMessage, CloseMessage,
};

/// How long a closing connection may take to write its last frames. A client that stops
/// reading can block the writer on a full TCP buffer, so the writer is aborted after this.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a connection from the WebSocket upgrade until it closes.
pub(crate) async fn run(
    shared: Arc<HubShared>,
    socket: WebSocket,
    principal: Principal,
    connection_id: String,
    token: Option<String>,
) {
    let span = tracing::info_span!(
        "hub_connection",
        connection_id = %connection_id,
        user_id = %principal.user_id
    );
    let mut cleanup = Cleanup {
        shared: Arc::clone(&shared),
        token,
        connection: None,
    };
    run_connection(shared, socket, principal, connection_id, &mut cleanup)
        .instrument(span)
        .await;
}

/// Releases the connection token and unregisters the connection, also when the connection
/// task panics.
struct Cleanup {
    shared: Arc<HubShared>,
    token: Option<String>,
    connection: Option<Arc<Connection>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(connection) = &self.connection {
            connection.close(None);
            self.shared.unregister(connection);
        }
        if let Some(token) = &self.token {
            self.shared.negotiations.remove(token);
        }
    }
}

async fn run_connection(
    shared: Arc<HubShared>,
    mut socket: WebSocket,
    principal: Principal,
    connection_id: String,
    cleanup: &mut Cleanup,
) {
    let settings = &shared.settings;
    let mut reader = RecordReader::new(settings.max_message_size);

    let Some(leftover) = accept_handshake(&shared, &mut socket, &mut reader).await else {
        return;
    };

    let key = shared.next_connection_key();
    let (connection, outbound) = Connection::new(
        key,
        connection_id,
        principal,
        settings.outbound_queue_capacity,
    );
    let connection = Arc::new(connection);
    shared.register(&connection);
    cleanup.connection = Some(Arc::clone(&connection));
    tracing::info!("hub connection opened");

    let (sink, stream) = socket.split();
    let writer = tokio::spawn(
        write_loop(
            sink,
            outbound,
            Arc::clone(&connection),
            settings.keep_alive_interval,
        )
        .in_current_span(),
    );

    if handle_records(&shared, &connection, leftover).await {
        read_loop(&shared, &connection, stream, reader).await;
    }

    connection.close(None);
    finish_writer(writer).await;
    match connection.close_message() {
        Some(CloseMessage {
            error: Some(error), ..
        }) => tracing::info!(%error, "hub connection closed by the server"),
        Some(_) => tracing::info!("hub connection closed by the server"),
        None => tracing::info!("hub connection closed"),
    }
}

/// Reads the handshake request and sends the handshake response. Returns the records that followed the handshake
/// request, or `None` when the connection must end.
async fn accept_handshake(
    shared: &HubShared,
    socket: &mut WebSocket,
    reader: &mut RecordReader,
) -> Option<Vec<String>> {
    let settings = &shared.settings;
    let handshake = tokio::select! {
        () = shared.shutdown.cancelled() => {
            close_socket(socket).await;
            return None;
        }
        handshake = timeout(
            settings.handshake_timeout,
            read_handshake(socket, reader),
        ) => handshake,
    };
    let leftover = match handshake {
        Err(_elapsed) => {
            tracing::debug!(timeout = ?settings.handshake_timeout, "hub handshake timed out");
            close_socket(socket).await;
            return None;
        }
        Ok(Err(HandshakeFailure::Disconnected)) => return None,
        Ok(Err(HandshakeFailure::Rejected(error))) => {
            tracing::debug!(%error, "hub handshake rejected");
            let response = encode_handshake_response(Some(&error));
            let _ = socket.send(Message::Text(response.into())).await;
            close_socket(socket).await;
            return None;
        }
        Ok(Ok(leftover)) => leftover,
    };

    let response = encode_handshake_response(None);
    socket.send(Message::Text(response.into())).await.ok()?;
    Some(leftover)
}

enum HandshakeFailure {
    Disconnected,
    /// The text to send back as the handshake response's `error`.
    Rejected(String),
}

/// Reads until the first record, checks it as a handshake request, and returns the records
/// that followed it in the same WebSocket message.
async fn read_handshake(
    socket: &mut WebSocket,
    reader: &mut RecordReader,
) -> Result<Vec<String>, HandshakeFailure> {
    loop {
        let text = match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                return Err(HandshakeFailure::Disconnected)
            }
            Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
            // The handshake is always JSON text, but a client may send it as a binary
            // frame when it intends a binary protocol.
            Some(Ok(Message::Binary(bytes))) => {
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    HandshakeFailure::Rejected("Handshake request is not valid UTF-8.".to_owned())
                })?
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
        };

        let mut records = reader
            .push(&text)
            .map_err(|error| HandshakeFailure::Rejected(error.to_string()))?;
        if records.is_empty() {
            continue;
        }
        let handshake = records.remove(0);
        parse_handshake(&handshake).map_err(HandshakeFailure::Rejected)?;
        return Ok(records);
    }
}

/// Reads WebSocket messages until the client leaves, breaks the protocol, stays silent
/// longer than the client timeout, or the connection is closed from elsewhere.
async fn read_loop(
    shared: &HubShared,
    connection: &Arc<Connection>,
    mut stream: futures::stream::SplitStream<WebSocket>,
    mut reader: RecordReader,
) {
    let settings = &shared.settings;
    loop {
        let next = tokio::select! {
            biased;
            () = connection.closed() => return,
            next = timeout(settings.client_timeout, stream.next()) => next,
        };

        let message = match next {
            Err(_elapsed) => {
                tracing::info!(timeout = ?settings.client_timeout, "hub client timed out");
                connection.close(Some(CloseMessage::reconnectable(Some(format!(
                    "no message received from the client within {:?}",
                    settings.client_timeout
                )))));
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, "hub WebSocket read failed");
                connection.close(Some(CloseMessage::error(format!(
                    "invalid WebSocket message: {error}"
                ))));
                return;
            }
            Ok(Some(Ok(message))) => message,
        };

        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                protocol_error(
                    connection,
                    "binary WebSocket messages are not supported by the json hub protocol",
                );
                return;
            }
            // Control frames count as activity for the client timeout.
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => return,
        };

        if text.len() > settings.max_message_size {
            let error = FramingError::MessageTooLarge {
                max: settings.max_message_size,
            };
            protocol_error(connection, &error.to_string());
            return;
        }
        let records = match reader.push(text.as_str()) {
            Ok(records) => records,
            Err(error) => {
                protocol_error(connection, &error.to_string());
                return;
            }
        };
        if !handle_records(shared, connection, records).await {
            return;
        }
    }
}

/// Handles complete records in order. Returns false when the connection must stop reading.
async fn handle_records(
    shared: &HubShared,
    connection: &Arc<Connection>,
    records: Vec<String>,
) -> bool {
    for record in records {
        let message = match parse_client_message(&record) {
            Ok(message) => message,
            Err(error) => {
                protocol_error(connection, &error);
                return false;
            }
        };

        match message {
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
                    connection.send(encode_completion_error(id, &error).into());
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

/// Writes queued frames in order, sends a ping when nothing else was sent for
/// `keep_alive`, and on close sends the `Close` message and a WebSocket close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Utf8Bytes>,
    connection: Arc<Connection>,
    keep_alive: Duration,
) {
    let ping = Utf8Bytes::from(encode_ping());
    let mut ping_at = Instant::now() + keep_alive;

    loop {
        let frame = tokio::select! {
            biased;
            () = connection.closed() => break,
            frame = outbound.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            () = sleep_until(ping_at) => ping.clone(),
        };

        if let Err(error) = sink.send(Message::Text(frame)).await {
            tracing::debug!(%error, "hub WebSocket write failed");
            connection.close(None);
            return;
        }
        ping_at = Instant::now() + keep_alive;
    }

    if let Some(close) = connection.close_message() {
        let _ = sink.send(Message::Text(close.encode().into())).await;
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: Utf8Bytes::default(),
        })))
        .await;
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

/// Closes a socket before the writer task exists, bounded by [`CLOSE_TIMEOUT`].
async fn close_socket(socket: &mut WebSocket) {
    let frame = Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: Utf8Bytes::default(),
    }));
    let _ = timeout(CLOSE_TIMEOUT, socket.send(frame)).await;
}
