//! Tasks: creation, reads, merge-patch updates and their history.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, EventEnvelope, EventType};
use uuid::Uuid;

use crate::{outbox, projects, Page, StoreError, Tx};

/// A task in its REST representation, which is also the `data` of its events.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Task {
    pub id: Uuid,
    pub key: String,
    pub project_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: String,
    pub status_category: String,
    pub priority: String,
    pub source_priority: Option<String>,
    pub assignee_id: Option<Uuid>,
    pub due_date: Option<NaiveDate>,
    pub labels: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub archived_at: Option<DateTime<Utc>>,
    pub source: Option<String>,
    pub source_key: Option<String>,
}

const SELECT_TASK: &str = "
    select t.id, t.key, t.project_id, t.title, t.description, t.status,
           s.category as status_category, t.priority, t.source_priority, t.assignee_id,
           t.due_date, t.labels, t.version, t.created_at, t.updated_at, t.created_by,
           t.archived_at, t.source, t.source_key
    from tasks t
    join project_statuses s on s.project_id = t.project_id and s.name = t.status";

/// Fields of a task about to be created, validated by the caller.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub project_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<String>,
    pub priority: String,
    pub assignee_id: Option<Uuid>,
    pub due_date: Option<NaiveDate>,
    pub labels: Vec<String>,
}

/// Takes the next task number of a project, returning the task key it forms.
pub(crate) async fn next_key(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    project_id: Uuid,
) -> Result<String, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "update projects set next_task_number = next_task_number + 1
         where tenant_id = $1 and id = $2
         returning key, next_task_number - 1",
    )
    .bind(tenant_id)
    .bind(project_id)
    .fetch_optional(&mut **tx)
    .await?;
    let (key, number) = row.ok_or(StoreError::NotFound("project"))?;
    Ok(format!("{key}-{number}"))
}

pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor_id: Uuid,
    new: NewTask,
) -> Result<Task, StoreError> {
    let key = next_key(tx, tenant_id, new.project_id).await?;
    let status = new
        .status
        .unwrap_or_else(|| projects::INITIAL_STATUS.to_owned());
    ensure_status_exists(tx, new.project_id, &status).await?;
    ensure_member(tx, tenant_id, new.assignee_id).await?;
    let id = new_id();
    sqlx::query(
        "insert into tasks (id, tenant_id, project_id, key, title, description, status, priority,
                            assignee_id, due_date, labels, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(new.project_id)
    .bind(&key)
    .bind(&new.title)
    .bind(&new.description)
    .bind(&status)
    .bind(&new.priority)
    .bind(new.assignee_id)
    .bind(new.due_date)
    .bind(&new.labels)
    .bind(actor_id)
    .execute(&mut **tx)
    .await?;
    let task = fetch_in_tx(tx, tenant_id, id).await?;
    record_change(
        tx,
        tenant_id,
        actor_id,
        &task,
        EventType::TaskCreated,
        serde_json::to_value(&task).unwrap_or_default(),
    )
    .await?;
    Ok(task)
}

/// Writes a history row and the outbox event for a task that just changed.
pub(crate) async fn record_change(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor_id: Uuid,
    task: &Task,
    event_type: EventType,
    changes: serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into task_history (id, tenant_id, task_id, version, actor_id, changes)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(task.id)
    .bind(task.version)
    .bind(actor_id)
    .bind(changes)
    .execute(&mut **tx)
    .await?;
    let event = EventEnvelope::new(
        event_type,
        tenant_id,
        Some(actor_id),
        task.id,
        Some(task.version),
        serde_json::to_value(task).unwrap_or_default(),
    );
    outbox::append(tx, &event).await
}

async fn ensure_status_exists(
    tx: &mut Tx<'_>,
    project_id: Uuid,
    status: &str,
) -> Result<(), StoreError> {
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from project_statuses where project_id = $1 and name = $2)",
    )
    .bind(project_id)
    .bind(status)
    .fetch_one(&mut **tx)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "status {status:?} does not exist in this project"
        )))
    }
}

async fn ensure_member(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    user_id: Option<Uuid>,
) -> Result<(), StoreError> {
    let Some(user_id) = user_id else {
        return Ok(());
    };
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from memberships where tenant_id = $1 and user_id = $2)",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "assignee {user_id} is not a member of this tenant"
        )))
    }
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Task>, StoreError> {
    let sql = format!("{SELECT_TASK} where t.tenant_id = $1 and t.id = $2");
    let task = sqlx::query_as::<_, Task>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(task)
}

pub(crate) async fn fetch_in_tx(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Task, StoreError> {
    let sql = format!("{SELECT_TASK} where t.tenant_id = $1 and t.id = $2");
    sqlx::query_as::<_, Task>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("task"))
}

/// Filters of `GET /tasks`.
#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub project_id: Option<Uuid>,
    pub status: Option<String>,
    pub assignee_id: Option<Uuid>,
}

pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    filter: &TaskFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Task>, StoreError> {
    let sql = format!(
        "{SELECT_TASK}
         where t.tenant_id = $1 and t.archived_at is null
           and ($2::uuid is null or t.project_id = $2)
           and ($3::text is null or t.status = $3)
           and ($4::uuid is null or t.assignee_id = $4)
           and ($5::uuid is null or t.id > $5)
         order by t.id limit $6"
    );
    let rows = sqlx::query_as::<_, Task>(&sql)
        .bind(tenant_id)
        .bind(filter.project_id)
        .bind(&filter.status)
        .bind(filter.assignee_id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id.to_string()))
}

/// A JSON merge patch of a task, parsed: `None` leaves a field, `Some(None)` clears it.
#[derive(Debug, Default, Clone)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub assignee_id: Option<Option<Uuid>>,
    pub due_date: Option<Option<NaiveDate>>,
    pub labels: Option<Vec<String>>,
}

/// Applies a patch when the task is still at `expected_version` (if given), bumping its version.
pub async fn patch(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    actor_id: Uuid,
    id: Uuid,
    expected_version: Option<i64>,
    patch: TaskPatch,
    changes: serde_json::Value,
) -> Result<Task, StoreError> {
    let current: Option<(i64, Uuid)> = sqlx::query_as(
        "select version, project_id from tasks where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let (version, project_id) = current.ok_or(StoreError::NotFound("task"))?;
    if let Some(expected) = expected_version {
        if expected != version {
            return Err(StoreError::VersionMismatch {
                expected,
                current: version,
            });
        }
    }
    if let Some(status) = &patch.status {
        ensure_status_exists(tx, project_id, status).await?;
    }
    if let Some(assignee) = patch.assignee_id {
        ensure_member(tx, tenant_id, assignee).await?;
    }
    sqlx::query(
        "update tasks set
            title = coalesce($3, title),
            description = case when $4 then $5 else description end,
            status = coalesce($6, status),
            priority = coalesce($7, priority),
            assignee_id = case when $8 then $9 else assignee_id end,
            due_date = case when $10 then $11 else due_date end,
            labels = coalesce($12, labels),
            version = version + 1,
            updated_at = now()
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(&patch.title)
    .bind(patch.description.is_some())
    .bind(patch.description.clone().flatten())
    .bind(&patch.status)
    .bind(&patch.priority)
    .bind(patch.assignee_id.is_some())
    .bind(patch.assignee_id.flatten())
    .bind(patch.due_date.is_some())
    .bind(patch.due_date.flatten())
    .bind(&patch.labels)
    .execute(&mut **tx)
    .await?;
    let task = fetch_in_tx(tx, tenant_id, id).await?;
    record_change(
        tx,
        tenant_id,
        actor_id,
        &task,
        EventType::TaskUpdated,
        changes,
    )
    .await?;
    Ok(task)
}

/// Returns true when the tenant owns a task with this id.
pub async fn exists(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let exists =
        sqlx::query_scalar("select exists (select 1 from tasks where tenant_id = $1 and id = $2)")
            .bind(tenant_id)
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(exists)
}
