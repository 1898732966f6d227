//! Notifications: messages to a person, such as a mention in a comment.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, EventEnvelope, EventType};
use uuid::Uuid;

use crate::{outbox, Page, StoreError, Tx};

/// A notification in its REST representation.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Notification {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub comment_id: Option<Uuid>,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// Kind of the notification a mention produces.
pub const MENTION: &str = "mention";

/// Records that `user_id` was mentioned in a comment, once, with its outbox event.
///
/// Returns `None` when this person was already notified of this comment, which makes a
/// redelivered message harmless.
pub async fn create_mention(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    task_id: Uuid,
    comment_id: Uuid,
    data: serde_json::Value,
) -> Result<Option<Notification>, StoreError> {
    let created = sqlx::query_as::<_, Notification>(
        "insert into notifications (id, tenant_id, user_id, kind, task_id, comment_id, data)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (user_id, kind, comment_id) do nothing
         returning id, user_id, kind, task_id, comment_id, data, created_at, read_at",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(user_id)
    .bind(MENTION)
    .bind(task_id)
    .bind(comment_id)
    .bind(data)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(notification) = &created {
        let event = EventEnvelope::new(
            EventType::NotificationCreated,
            tenant_id,
            None,
            notification.id,
            None,
            serde_json::to_value(notification).unwrap_or_default(),
        );
        outbox::append(tx, &event).await?;
    }
    Ok(created)
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Page<Notification>, StoreError> {
    let rows = sqlx::query_as::<_, Notification>(
        "select id, user_id, kind, task_id, comment_id, data, created_at, read_at
         from notifications
         where tenant_id = $1 and user_id = $2 and ($3::uuid is null or id < $3)
         order by id desc limit $4",
    )
    .bind(tenant_id)
    .bind(user_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |n| n.id.to_string()))
}
