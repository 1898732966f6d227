//! Projects and their statuses.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, EventEnvelope, EventType, ProjectKey};
use uuid::Uuid;

use crate::{outbox, Page, StoreError, Tx};

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Project {
    pub id: Uuid,
    pub key: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Statuses every new project starts with.
const DEFAULT_STATUSES: [(&str, &str); 3] = [
    ("To Do", "todo"),
    ("In Progress", "in_progress"),
    ("Done", "done"),
];

/// Status a new task gets when none is given.
pub const INITIAL_STATUS: &str = "To Do";

/// Derives a project key from a name: its first letters, upper-cased, or `TASK`.
pub fn derive_key(name: &str) -> String {
    let key: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .skip_while(|c| c.is_ascii_digit())
        .take(4)
        .collect();
    match ProjectKey::parse(&key) {
        Ok(valid) => valid.to_string(),
        Err(_) => "TASK".to_owned(),
    }
}

/// Creates a project with the default statuses and its outbox event.
pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor_id: Option<Uuid>,
    key: &str,
    name: &str,
) -> Result<Project, StoreError> {
    let inserted = sqlx::query_as::<_, Project>(
        "insert into projects (id, tenant_id, key, name) values ($1, $2, $3, $4)
         returning id, key, name, created_at",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(key)
    .bind(name)
    .fetch_one(&mut **tx)
    .await;
    let project = match inserted {
        Ok(project) => project,
        Err(error) if StoreError::is_unique_violation(&error, "projects_tenant_id_key_key") => {
            return Err(StoreError::Conflict(format!(
                "a project with key {key} already exists"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    for (position, (status, category)) in DEFAULT_STATUSES.iter().enumerate() {
        ensure_status(tx, tenant_id, project.id, status, category, position as i32).await?;
    }
    let event = EventEnvelope::new(
        EventType::ProjectCreated,
        tenant_id,
        actor_id,
        project.id,
        None,
        serde_json::to_value(&project).unwrap_or_default(),
    );
    outbox::append(tx, &event).await?;
    Ok(project)
}

/// Adds a status to a project unless it already has one of that name.
pub async fn ensure_status(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    project_id: Uuid,
    name: &str,
    category: &str,
    position: i32,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into project_statuses (tenant_id, project_id, name, category, position)
         values ($1, $2, $3, $4, $5) on conflict do nothing",
    )
    .bind(tenant_id)
    .bind(project_id)
    .bind(name)
    .bind(category)
    .bind(position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Project>, StoreError> {
    let rows = sqlx::query_as::<_, Project>(
        "select id, key, name, created_at from projects
         where tenant_id = $1 and ($2::uuid is null or id > $2)
         order by id limit $3",
    )
    .bind(tenant_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |p| p.id.to_string()))
}

pub async fn find(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Project>, StoreError> {
    let row = sqlx::query_as::<_, Project>(
        "select id, key, name, created_at from projects where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

/// Finds a project by key, or creates it, inside an import's transaction.
pub async fn find_or_create_by_key(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor_id: Uuid,
    key: &str,
    name: &str,
) -> Result<Project, StoreError> {
    let found = sqlx::query_as::<_, Project>(
        "select id, key, name, created_at from projects where tenant_id = $1 and key = $2",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    match found {
        Some(project) => Ok(project),
        None => create(tx, tenant_id, Some(actor_id), key, name).await,
    }
}
