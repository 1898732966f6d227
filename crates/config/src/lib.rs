//! Typed settings, built once at start-up and passed down.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file, then environment
//! variables prefixed `TASKLANE_` with `__` between levels (`TASKLANE_DATABASE__URL`).
//! Unknown keys are an error, so a misspelt setting fails loudly instead of being ignored.
//! Secrets are `SecretString`, which never prints.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub rabbitmq: RabbitSettings,
    pub kafka: KafkaSettings,
    pub namespace: NamespaceSettings,
    pub auth: AuthSettings,
    pub import: ImportSettings,
    pub relay: RelaySettings,
    pub mail: MailSettings,
    pub presence: PresenceSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub hub: HubNodeSettings,
    #[serde(default)]
    pub oidc: OidcSettings,
}

/// OpenID Connect login with the providers that tenants configure.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Hosts (such as `login.example.com`, compared ignoring case) that a provider's issuer
    /// URL may name. The server fetches the issuer's discovery document, keys and token
    /// endpoint, so tenant admins choose which hosts it contacts.
    ///
    /// NOTE: empty, the default, allows every host, which lets a tenant admin make the
    /// server send requests to internal addresses (server-side request forgery). Set it in
    /// production.
    pub allowed_issuer_hosts: Vec<String>,
    /// Public URL of `GET /api/v1/auth/oidc/callback`, registered as the redirect URI at
    /// every provider. Defaults to `http://` and the `Host` header of the start request,
    /// which is wrong behind a TLS-terminating proxy.
    pub callback_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the HTTP server binds; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Largest request body accepted by `POST /imports`, in bytes.
    pub max_upload_bytes: usize,
    /// Largest JSON request body accepted elsewhere, in bytes.
    pub max_json_bytes: usize,
    /// How long shutdown waits for open requests before aborting them.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Origins (`scheme://host[:port]`) of the web pages allowed to use the session
    /// cookie: cookie-authenticated writes and hub connections from any other `Origin` are
    /// rejected. Set it to the public URL the browser shows.
    pub allowed_origins: Vec<String>,
}

/// The address at which other hub nodes reach this one.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubNodeSettings {
    /// Base URL, such as `http://10.0.0.5:8080`, at which other hub nodes forward the
    /// requests of connections that this node owns. Defaults to `http://` and the bound
    /// address, which works only when that address is reachable from the other nodes
    /// (not for `0.0.0.0`).
    pub advertise_url: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL URL; secret because it may carry a password.
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: SecretString,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitSettings {
    pub url: SecretString,
    /// `quorum` (replicated, the production choice) or `classic`, which is far lighter
    /// for the many short-lived queue sets that parallel tests create.
    pub queue_type: String,
    /// When set, RabbitMQ deletes a queue left without consumers this long; tests set it so
    /// their queues do not pile up.
    #[serde(default, with = "humantime_serde")]
    pub queue_expires: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    pub partitions: i32,
}

/// The prefix under which every Redis key, Kafka topic and RabbitMQ name lives, so parallel
/// tests and leftover state never collide.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSettings {
    pub prefix: String,
}

impl NamespaceSettings {
    /// Redis key `<prefix>:<name>`.
    pub fn redis_key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Kafka topic, RabbitMQ exchange or queue `<prefix>.<name>`.
    pub fn broker_name(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Ed25519 private key in PKCS#8 PEM that signs access tokens. When absent, every
    /// process shares a key generated at first start and stored in PostgreSQL, which suits
    /// development only because the private key then sits in the database.
    pub signing_key_pem: Option<SecretString>,
    /// Ed25519 public keys in SPKI PEM of earlier signing keys, which still verify tokens
    /// they signed; keep each one for at least `access_token_ttl` after a rotation.
    #[serde(default)]
    pub verification_key_pems: Vec<String>,
    pub issuer: String,
    pub audience: String,
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// A refresh token unused for this long is rejected.
    #[serde(with = "humantime_serde")]
    pub refresh_token_idle_ttl: Duration,
    /// How long after a login its refresh tokens stop working, however often they rotate.
    #[serde(with = "humantime_serde")]
    pub session_max_lifetime: Duration,
    /// How long the immediately previous refresh token still rotates after its successor
    /// was issued, for clients that refresh from two tabs at once.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// A browser session unused for this long is rejected.
    #[serde(with = "humantime_serde")]
    pub browser_session_idle_ttl: Duration,
    /// How long after a browser login its session stops working, however often it is used.
    #[serde(with = "humantime_serde")]
    pub browser_session_max_lifetime: Duration,
    pub login_limits: LoginLimits,
}

/// Limits on password attempts. Attempts count in fixed windows, and once a key exceeds its
/// limit, logins for it answer 429 until the window ends.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginLimits {
    /// Attempts per e-mail address and window, whether or not the account exists.
    pub max_attempts_per_account: i32,
    /// Attempts per client address and window; successful logins do not count.
    pub max_attempts_per_ip: i32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSettings {
    /// Zone in which the source's zone-less timestamps are read, such as `Europe/Berlin`.
    pub source_zone: chrono_tz::Tz,
    /// Rows upserted per transaction.
    pub batch_size: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// How often the relay polls the outbox when no NOTIFY arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Events read per batch.
    pub batch_size: i64,
    /// Delay before retrying a destination that failed.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

/// Presence of hub connections: task viewers and online users, kept in Redis.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSettings {
    /// How often each hub node refreshes its connections' presence entries.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Entries not refreshed for this long are dropped, so the viewers of a node that
    /// died disappear after at most this long. Keep it a few heartbeat intervals long.
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
}

/// Account mail (address verification, password reset) and the SMTP server that sends it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// Host name or address of the SMTP server. The connection is plain SMTP without TLS,
    /// so use a relay on the same host or a trusted network.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// User name for SMTP authentication, which is skipped when absent. The password
    /// travels unencrypted, like the mail.
    pub smtp_username: Option<String>,
    pub smtp_password: Option<SecretString>,
    /// The `From` header of every mail, such as `Tasklane <no-reply@example.com>`.
    pub from: String,
    /// Base URL of the web page that links in mail point to, such as
    /// `https://tasklane.example.com`.
    pub public_url: String,
    /// How long an address verification link works.
    #[serde(with = "humantime_serde")]
    pub verification_ttl: Duration,
    /// How long a password reset link works.
    #[serde(with = "humantime_serde")]
    pub password_reset_ttl: Duration,
    /// How long the email worker waits for the SMTP server before it requeues the mail.
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` for people, `json` for Elastic Common Schema lines.
    pub format: LogFormat,
    /// A `tracing` filter such as `info,tasklane=debug`.
    pub filter: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

const DEFAULTS: &str = r#"
[server]
bind = "127.0.0.1:8080"
max_upload_bytes = 209715200
max_json_bytes = 1048576
shutdown_grace = "10s"
allowed_origins = ["http://127.0.0.1:8080", "http://localhost:8080"]

[database]
url = "postgres://tasklane:tasklane@127.0.0.1:5432/tasklane"
max_connections = 20

[redis]
url = "redis://127.0.0.1:6379"

[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
queue_type = "quorum"

[kafka]
brokers = "127.0.0.1:9092"
partitions = 4

[namespace]
prefix = "tasklane"

[auth]
issuer = "tasklane"
audience = "tasklane-api"
access_token_ttl = "15m"
refresh_token_idle_ttl = "14days"
session_max_lifetime = "30days"
refresh_reuse_grace = "10s"
browser_session_idle_ttl = "30m"
browser_session_max_lifetime = "12h"

[auth.login_limits]
max_attempts_per_account = 5
max_attempts_per_ip = 50
window = "15m"

[import]
source_zone = "UTC"
batch_size = 200

[relay]
poll_interval = "250ms"
batch_size = 500
retry_delay = "2s"

[presence]
heartbeat_interval = "10s"
expiry = "30s"

[mail]
smtp_host = "127.0.0.1"
smtp_port = 2525
from = "Tasklane <no-reply@localhost>"
public_url = "http://127.0.0.1:8080"
verification_ttl = "24h"
password_reset_ttl = "30m"
smtp_timeout = "10s"

[log]
format = "text"
filter = "info,sqlx=warn"
"#;

impl Settings {
    /// Loads defaults, then `file` when given, then `TASKLANE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("TASKLANE_")
                .split("__")
                .ignore(&["TOKEN", "API_URL", "CONFIG"]),
        );
        figment.extract().map_err(|e| ConfigError(Box::new(e)))
    }

    /// Loads defaults with explicit overrides and no environment, for tests.
    pub fn with_overrides(overrides: impl Serialize) -> Result<Self, ConfigError> {
        Figment::from(Toml::string(DEFAULTS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let settings = Settings::with_overrides(serde_json::json!({})).unwrap();
        assert_eq!(settings.namespace.redis_key("x"), "tasklane:x");
        assert_eq!(settings.relay.poll_interval, Duration::from_millis(250));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Settings::with_overrides(serde_json::json!({"server": {"bnd": "x"}}));
        assert!(err.is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let overrides = serde_json::json!({ "auth": { "signing_key_pem": "PRIVATE KEY TEXT" } });
        let settings = Settings::with_overrides(overrides).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("PRIVATE KEY TEXT"), "{printed}");
        assert!(!printed.contains("tasklane:tasklane@"), "{printed}");
    }
}
