//! PostgreSQL access: the schema's migrations and one module per kind of row.
//!
//! Every function that changes state takes a transaction and writes its outbox event in it,
//! so a change and the news of it commit together or not at all.

pub mod access_cache;
pub mod account_tokens;
pub mod accounts;
pub mod api_tokens;
pub mod auth_events;
pub mod browser_sessions;
pub mod comments;
pub mod error;
pub mod hub;
pub mod idempotency;
pub mod import;
pub mod invitations;
pub mod jobs;
pub mod login_attempts;
pub mod mail;
pub mod notifications;
pub mod oidc;
pub mod outbox;
pub mod project_roles;
pub mod projects;
pub mod refresh_tokens;
pub mod signing_keys;
pub mod tasks;
pub mod totp;
pub mod uploads;

pub use error::StoreError;
pub use sqlx::{PgPool, Postgres, Transaction};

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

pub type Tx<'a> = Transaction<'a, Postgres>;

/// Opens a connection pool. The connect timeout is short so readiness checks respond quickly.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// Applies every migration not yet applied.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// A page of a list, in the one envelope every list endpoint returns.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only shows that another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if has_more {
            rows.last().map(cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
