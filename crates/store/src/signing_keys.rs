//! Access-token signing keys kept in PostgreSQL, shared by every process of a development
//! deployment that has no key in its configuration.

use sqlx::{FromRow, PgPool};

use crate::StoreError;

/// A stored key, newest first when listed.
#[derive(Debug, Clone, FromRow)]
pub struct StoredSigningKey {
    pub kid: String,
    pub private_key_pem: String,
}

/// Lists the stored keys, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<StoredSigningKey>, StoreError> {
    let keys = sqlx::query_as::<_, StoredSigningKey>(
        "select kid, private_key_pem from signing_keys order by created_at desc, kid",
    )
    .fetch_all(pool)
    .await?;
    Ok(keys)
}

/// Stores `key` unless a key already exists, and returns every stored key, newest first.
///
/// An advisory lock serialises processes starting together, so exactly one key is created.
pub async fn insert_if_none(
    pool: &PgPool,
    key: &StoredSigningKey,
) -> Result<Vec<StoredSigningKey>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock(hashtext('tasklane.signing_keys'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "insert into signing_keys (kid, private_key_pem)
         select $1, $2 where not exists (select 1 from signing_keys)",
    )
    .bind(&key.kid)
    .bind(&key.private_key_pem)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    list(pool).await
}
