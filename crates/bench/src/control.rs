//! Client of the benchmark servers' control endpoint, which both servers serve:
//! `POST /bench/rate?messages_per_second=R` sets the emit rate and `GET /bench/stats`
//! returns `{"emitted": N, "messages_per_second": R}`.

use anyhow::{ensure, Context as _};
use serde::Deserialize;

/// Counters of a benchmark server.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct ServerStats {
    /// Messages emitted since the server started.
    pub emitted: u64,
    pub messages_per_second: f64,
}

pub struct ControlClient {
    base_url: String,
    http: reqwest::Client,
}

impl ControlClient {
    /// `base_url` is the server's HTTP root, such as `http://127.0.0.1:4000`.
    pub fn new(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub async fn set_rate(&self, messages_per_second: f64) -> anyhow::Result<()> {
        let url = format!(
            "{}/bench/rate?messages_per_second={messages_per_second}",
            self.base_url
        );
        let response = self
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("failed to set the emit rate at {url}"))?;
        ensure!(
            response.status().is_success(),
            "setting the emit rate at {url} failed with status {}",
            response.status()
        );
        Ok(())
    }

    pub async fn stats(&self) -> anyhow::Result<ServerStats> {
        let url = format!("{}/bench/stats", self.base_url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("failed to read server stats at {url}"))?;
        ensure!(
            response.status().is_success(),
            "reading server stats at {url} failed with status {}",
            response.status()
        );
        response
            .json()
            .await
            .with_context(|| format!("invalid server stats from {url}"))
    }
}
