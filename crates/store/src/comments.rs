//! Comments and the @mentions they carry.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::names::{find_mentions, trim_mention};
use tasklane_domain::{new_id, EventEnvelope, EventType};
use uuid::Uuid;

use crate::{accounts, outbox, Page, StoreError, Tx};

/// A comment in its REST representation.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Comment {
    pub id: Uuid,
    pub task_id: Uuid,
    pub author_id: Option<Uuid>,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// People mentioned, resolved from @handles when the comment was written.
    pub mentions: Vec<Uuid>,
}

/// Adds a comment to a task, resolving its @handles to members and recording the mentions.
pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    author_id: Uuid,
    task_id: Uuid,
    body: &str,
) -> Result<Comment, StoreError> {
    let task_exists: bool =
        sqlx::query_scalar("select exists (select 1 from tasks where tenant_id = $1 and id = $2)")
            .bind(tenant_id)
            .bind(task_id)
            .fetch_one(&mut **tx)
            .await?;
    if !task_exists {
        return Err(StoreError::NotFound("task"));
    }

    let id = new_id();
    let created_at: DateTime<Utc> = sqlx::query_scalar(
        "insert into comments (id, tenant_id, task_id, author_id, body) values ($1, $2, $3, $4, $5)
         returning created_at",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(task_id)
    .bind(author_id)
    .bind(body)
    .fetch_one(&mut **tx)
    .await?;

    let mentioned = resolve_mentions(tx, tenant_id, body).await?;
    insert_mentions(tx, tenant_id, id, &mentioned).await?;

    let comment = Comment {
        id,
        task_id,
        author_id: Some(author_id),
        body: body.to_owned(),
        created_at,
        mentions: mentioned,
    };
    let event = EventEnvelope::new(
        EventType::CommentCreated,
        tenant_id,
        Some(author_id),
        id,
        None,
        serde_json::to_value(&comment).unwrap_or_default(),
    );
    outbox::append(tx, &event).await?;
    Ok(comment)
}

/// Resolves each mention as written, or else without trailing punctuation, to a member.
async fn resolve_mentions(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    body: &str,
) -> Result<Vec<Uuid>, StoreError> {
    let mut people = Vec::new();
    for mention in find_mentions(body) {
        let mut found =
            accounts::resolve_handles(tx, tenant_id, std::slice::from_ref(&mention)).await?;
        let trimmed = trim_mention(&mention);
        if found.is_empty() && trimmed != mention {
            found = accounts::resolve_handles(tx, tenant_id, &[trimmed.to_owned()]).await?;
        }
        for person in found {
            if !people.contains(&person) {
                people.push(person);
            }
        }
    }
    Ok(people)
}

pub(crate) async fn insert_mentions(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    comment_id: Uuid,
    user_ids: &[Uuid],
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into mentions (tenant_id, comment_id, user_id)
         select $1, $2, unnest($3::uuid[]) on conflict do nothing",
    )
    .bind(tenant_id)
    .bind(comment_id)
    .bind(user_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    task_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Comment>, StoreError> {
    let rows = sqlx::query_as::<_, Comment>(
        "select c.id, c.task_id, c.author_id, c.body, c.created_at,
                coalesce(array_agg(m.user_id) filter (where m.user_id is not null), '{}') as mentions
         from comments c left join mentions m on m.comment_id = c.id
         where c.tenant_id = $1 and c.task_id = $2 and ($3::uuid is null or c.id > $3)
         group by c.id
         order by c.id limit $4",
    )
    .bind(tenant_id)
    .bind(task_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id.to_string()))
}
