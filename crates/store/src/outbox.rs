//! The transactional outbox and the relay's per-destination cursors.

use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use tasklane_domain::EventEnvelope;

use crate::{StoreError, Tx};

/// Appends an event to the outbox inside the caller's transaction.
pub async fn append(tx: &mut Tx<'_>, event: &EventEnvelope) -> Result<(), StoreError> {
    sqlx::query(
        "insert into outbox (event_id, tenant_id, event_type, envelope) values ($1, $2, $3, $4)",
    )
    .bind(event.event_id)
    .bind(event.tenant_id)
    .bind(&event.event_type)
    .bind(sqlx::types::Json(event))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends many events with one statement.
pub async fn append_many(tx: &mut Tx<'_>, events: &[EventEnvelope]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    let tenants: Vec<_> = events.iter().map(|e| e.tenant_id).collect();
    let types: Vec<_> = events.iter().map(|e| e.event_type.clone()).collect();
    let bodies: Vec<_> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_default())
        .collect();
    sqlx::query(
        "insert into outbox (event_id, tenant_id, event_type, envelope)
         select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[])",
    )
    .bind(ids)
    .bind(tenants)
    .bind(types)
    .bind(bodies)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An outbox row as the relay reads it.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub tx_id: i64,
    pub envelope: sqlx::types::Json<EventEnvelope>,
}

/// A destination's position in the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct Cursor {
    pub tx_id: i64,
    pub outbox_id: i64,
}

/// Creates a destination's cursor at the start of the outbox unless it exists.
pub async fn ensure_cursor(pool: &sqlx::PgPool, destination: &str) -> Result<(), StoreError> {
    sqlx::query("insert into relay_cursors (destination) values ($1) on conflict do nothing")
        .bind(destination)
        .execute(pool)
        .await?;
    Ok(())
}

/// Locks a destination for the rest of the transaction and reads its cursor.
///
/// The lock is an advisory lock, not a row lock, so the transaction gets no transaction id
/// until it advances the cursor. A transaction id held while a broker call hangs would
/// hold back every relay reading below the oldest running transaction.
pub async fn lock_cursor(conn: &mut PgConnection, destination: &str) -> Result<Cursor, StoreError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("relay:{destination}"))
        .execute(&mut *conn)
        .await?;
    let cursor = sqlx::query_as::<_, Cursor>(
        "select tx_id, outbox_id from relay_cursors where destination = $1",
    )
    .bind(destination)
    .fetch_optional(&mut *conn)
    .await?;
    cursor.ok_or(StoreError::NotFound("relay cursor"))
}

/// Reads the events after `cursor` whose transactions are all finished.
///
/// A row is returned only when its transaction id is below the oldest transaction still
/// running: every transaction below that has committed or aborted, and every later one gets
/// a larger id, so nothing can appear behind the cursor afterwards.
pub async fn read_after(
    conn: &mut PgConnection,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let rows = sqlx::query_as::<_, OutboxRow>(
        "select id, tx_id, envelope from outbox
         where (tx_id, id) > ($1, $2)
           and tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
         order by tx_id, id
         limit $3",
    )
    .bind(cursor.tx_id)
    .bind(cursor.outbox_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// Moves a destination's cursor past `row`.
pub async fn advance_cursor(
    conn: &mut PgConnection,
    destination: &str,
    row: &OutboxRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "update relay_cursors set tx_id = $2, outbox_id = $3, updated_at = now()
         where destination = $1",
    )
    .bind(destination)
    .bind(row.tx_id)
    .bind(row.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
