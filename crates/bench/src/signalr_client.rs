//! A minimal SignalR client for the benchmark: negotiate, WebSocket, JSON hub protocol
//! handshake, `JoinTask`, then counting `taskUpdated` invocations.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::payload::{find_sent_ns, unix_nanos};
use crate::stats::DeliveryRecorder;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RECORD_SEPARATOR: char = '\u{1e}';

/// The client sends a ping this often, well within the hub's default 30 s client timeout.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct SignalrTarget {
    /// HTTP root of the server, such as `http://127.0.0.1:4000`.
    pub base_url: String,
    /// Hub path, such as `/hubs/tasks`.
    pub hub_path: String,
    pub bearer_token: String,
    pub task_id: Uuid,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NegotiateResponse {
    connection_token: String,
}

/// Negotiates, opens the WebSocket, completes the handshake and joins the task's group.
pub async fn connect(target: &SignalrTarget, http: &reqwest::Client) -> anyhow::Result<Socket> {
    let hub_url = format!("{}{}", target.base_url, target.hub_path);
    let negotiate_url = format!("{hub_url}/negotiate?negotiateVersion=1");
    let negotiated: NegotiateResponse = http
        .post(&negotiate_url)
        .bearer_auth(&target.bearer_token)
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .with_context(|| format!("negotiate at {negotiate_url} failed"))?
        .json()
        .await
        .context("invalid negotiate response")?;

    let socket_url = format!(
        "{}?id={}&access_token={}",
        hub_url.replacen("http", "ws", 1),
        negotiated.connection_token,
        target.bearer_token
    );
    let (mut socket, _response) =
        tokio_tungstenite::connect_async_with_config(&socket_url, Some(client_config()), false)
            .await
            .with_context(|| format!("WebSocket connect to {hub_url} failed"))?;

    socket
        .send(record(r#"{"protocol":"json","version":1}"#))
        .await?;
    let handshake = next_text(&mut socket).await?;
    ensure!(
        handshake.trim_end_matches(RECORD_SEPARATOR) == "{}",
        "handshake failed: {handshake:?}"
    );

    let join = format!(
        r#"{{"type":1,"invocationId":"1","target":"JoinTask","arguments":["{}"]}}"#,
        target.task_id
    );
    socket.send(record(&join)).await?;
    wait_for_join_completion(&mut socket).await?;
    Ok(socket)
}

/// Reads until the completion of invocation "1", skipping pings.
async fn wait_for_join_completion(socket: &mut Socket) -> anyhow::Result<()> {
    loop {
        let text = next_text(socket).await?;
        for message in text.split(RECORD_SEPARATOR).filter(|m| !m.is_empty()) {
            if message.contains(r#""type":3"#) && message.contains(r#""invocationId":"1""#) {
                ensure!(
                    !message.contains(r#""error""#),
                    "JoinTask failed: {message}"
                );
                return Ok(());
            }
            if message.contains(r#""type":7"#) {
                bail!("server closed the connection during JoinTask: {message}");
            }
        }
    }
}

/// Counts `taskUpdated` invocations into `recorder` until the connection closes, and
/// returns why it closed. Sends a ping every [`PING_INTERVAL`].
pub async fn receive(
    mut socket: Socket,
    index: usize,
    recorder: Arc<DeliveryRecorder>,
) -> anyhow::Error {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        return anyhow::anyhow!("server closed the WebSocket: {frame:?}")
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return error.into(),
                    None => return anyhow::anyhow!("WebSocket ended"),
                };
                let received_ns = unix_nanos();
                for message in text.split(RECORD_SEPARATOR).filter(|m| !m.is_empty()) {
                    if message.contains(r#""target":"taskUpdated""#) {
                        if let Some(sent_ns) = find_sent_ns(message) {
                            recorder.record(index, sent_ns, received_ns);
                        }
                    } else if message.contains(r#""type":7"#) {
                        return anyhow::anyhow!("server sent Close: {message}");
                    }
                }
            }
            _ = ping.tick() => {
                if let Err(error) = socket.send(record(r#"{"type":6}"#)).await {
                    return error.into();
                }
            }
        }
    }
}

/// Client WebSocket settings: a 4 KiB read buffer in place of tungstenite's 128 KiB, which
/// it zero-fills per connection, so 10,000 clients stay light on memory and cache.
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

fn record(json: &str) -> Message {
    Message::text(format!("{json}{RECORD_SEPARATOR}"))
}

async fn next_text(socket: &mut Socket) -> anyhow::Result<String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => bail!("server closed the WebSocket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
            None => bail!("WebSocket ended"),
        }
    }
}
