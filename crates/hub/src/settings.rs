//! Tunables of the hub server.

use std::time::Duration;

/// Hub settings. [`HubSettings::default`] fits the defaults of the official JavaScript
/// client (`@microsoft/signalr` 10.0), which pings every 15 s and drops a server that
/// stays silent for 30 s.
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Endpoint base path: the hub serves `{path}/negotiate` and the WebSocket at `{path}`.
    pub path: String,
    /// The server sends a `Ping` message when it has sent nothing else for this long.
    pub keep_alive_interval: Duration,
    /// The server closes a connection that has sent nothing, not even a ping, for this long.
    pub client_timeout: Duration,
    /// Maximum time between the WebSocket upgrade and a complete handshake request.
    pub handshake_timeout: Duration,
    /// How long a negotiated connection token stays valid before its transport starts.
    pub negotiate_timeout: Duration,
    /// How long a long polling request waits for messages before it returns empty. The
    /// official JavaScript client aborts a poll after 100 s, so keep this below that.
    pub long_poll_timeout: Duration,
    /// Maximum size in bytes of one incoming WebSocket message or `POST` body, and of one
    /// hub message.
    pub max_message_size: usize,
    /// Capacity, in messages, of each connection's outbound queue. A client that falls
    /// this far behind is disconnected instead of buffering without bound.
    pub outbound_queue_capacity: usize,
}

/// Settings that would make the hub misbehave, such as a zero keep-alive interval.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hub settings: {0}")]
pub struct InvalidHubSettings(String);

impl HubSettings {
    /// Checks that the path is an absolute path and that every duration and size is
    /// positive.
    pub fn validate(&self) -> Result<(), InvalidHubSettings> {
        let invalid = |message: String| Err(InvalidHubSettings(message));

        if !self.path.starts_with('/') {
            return invalid(format!("path {:?} must start with '/'", self.path));
        }
        let durations = [
            ("keep_alive_interval", self.keep_alive_interval),
            ("client_timeout", self.client_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("negotiate_timeout", self.negotiate_timeout),
            ("long_poll_timeout", self.long_poll_timeout),
        ];
        for (name, duration) in durations {
            if duration.is_zero() {
                return invalid(format!("{name} must be longer than zero"));
            }
        }
        if self.max_message_size == 0 {
            return invalid("max_message_size must be at least 1 byte".to_owned());
        }
        if self.outbound_queue_capacity == 0 {
            return invalid("outbound_queue_capacity must be at least 1 message".to_owned());
        }
        Ok(())
    }
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            path: "/hubs/tasks".to_owned(),
            keep_alive_interval: Duration::from_secs(15),
            client_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(15),
            negotiate_timeout: Duration::from_secs(15),
            long_poll_timeout: Duration::from_secs(90),
            max_message_size: 64 * 1024,
            outbound_queue_capacity: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_valid() {
        assert_eq!(HubSettings::default().validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_bad_values() {
        let cases = [
            (
                HubSettings {
                    path: "hubs/tasks".to_owned(),
                    ..HubSettings::default()
                },
                "path",
            ),
            (
                HubSettings {
                    keep_alive_interval: Duration::ZERO,
                    ..HubSettings::default()
                },
                "keep_alive_interval",
            ),
            (
                HubSettings {
                    client_timeout: Duration::ZERO,
                    ..HubSettings::default()
                },
                "client_timeout",
            ),
            (
                HubSettings {
                    max_message_size: 0,
                    ..HubSettings::default()
                },
                "max_message_size",
            ),
            (
                HubSettings {
                    outbound_queue_capacity: 0,
                    ..HubSettings::default()
                },
                "outbound_queue_capacity",
            ),
        ];

        for (settings, field) in cases {
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains(field), "{error:?} does not name {field}");
        }
    }
}
