//! A minimal Socket.IO v4 client for the benchmark: Engine.IO v4 over a WebSocket
//! (`/socket.io/?EIO=4&transport=websocket`), the default namespace, a `joinTask` event
//! with an acknowledgement, then counting `taskUpdated` events.
//!
//! Engine.IO packets are text frames that start with a type digit: `0` open, `2` ping,
//! `3` pong, `4` message. A Socket.IO packet follows the `4`: `0` connect, `1` disconnect,
//! `2` event, `3` acknowledgement, so `42[...]` is an event.

use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::payload::{find_sent_ns, unix_nanos};
use crate::signalr_client::{client_config, Socket};
use crate::stats::DeliveryRecorder;

/// Where to connect.
#[derive(Clone, Debug)]
pub struct SocketioTarget {
    /// HTTP root of the server, such as `http://127.0.0.1:4100`.
    pub base_url: String,
    pub task_id: Uuid,
}

/// Opens the WebSocket, connects the default namespace and joins the task's room.
pub async fn connect(target: &SocketioTarget) -> anyhow::Result<Socket> {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        target.base_url.replacen("http", "ws", 1)
    );
    let (mut socket, _response) =
        tokio_tungstenite::connect_async_with_config(&url, Some(client_config()), false)
            .await
            .with_context(|| format!("WebSocket connect to {url} failed"))?;

    let open = next_packet(&mut socket).await?;
    ensure!(
        open.starts_with('0'),
        "expected an Engine.IO open packet, got {open:?}"
    );

    socket.send(Message::text("40")).await?;
    let connected = next_packet(&mut socket).await?;
    ensure!(
        connected.starts_with("40"),
        "namespace connect failed: {connected:?}"
    );

    let join = format!(r#"421["joinTask","{}"]"#, target.task_id);
    socket.send(Message::text(join)).await?;
    let ack = next_packet(&mut socket).await?;
    ensure!(
        ack.starts_with("431"),
        "expected the joinTask acknowledgement, got {ack:?}"
    );
    ensure!(!ack.contains(r#""error""#), "joinTask failed: {ack}");
    Ok(socket)
}

/// Counts `taskUpdated` events into `recorder` and answers pings until the connection
/// closes, and returns why it closed.
pub async fn receive(
    mut socket: Socket,
    index: usize,
    recorder: Arc<DeliveryRecorder>,
) -> anyhow::Error {
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return anyhow::anyhow!("server closed the WebSocket: {frame:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return error.into(),
            None => return anyhow::anyhow!("WebSocket ended"),
        };
        let received_ns = unix_nanos();
        if text.starts_with(r#"42["taskUpdated""#) {
            if let Some(sent_ns) = find_sent_ns(&text) {
                recorder.record(index, sent_ns, received_ns);
            }
        } else if text.as_str() == "2" {
            if let Err(error) = socket.send(Message::text("3")).await {
                return error.into();
            }
        } else if text.starts_with("41") || text.starts_with('1') {
            return anyhow::anyhow!("server disconnected the client: {}", text.as_str());
        }
    }
}

/// Returns the next text packet, answering pings on the way.
async fn next_packet(socket: &mut Socket) -> anyhow::Result<String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                socket.send(Message::text("3")).await?;
            }
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => bail!("server closed the WebSocket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
            None => bail!("WebSocket ended"),
        }
    }
}
