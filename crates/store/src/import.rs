//! Upserting imported rows: tasks keyed by (tenant, source, source key), their comments,
//! mentions, and the placeholder people they refer to.
//!
//! Replaying a batch, or importing the same file again, updates rows in place and never
//! duplicates them.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use tasklane_auth::policy::{is_allowed_in_project_by_name, ProjectAction};
use tasklane_domain::{new_id, EventType, Handle, ProjectKey};
use uuid::Uuid;

use crate::{accounts, comments, projects, tasks, StoreError, Tx};

/// One imported task, already parsed and converted.
#[derive(Debug, Clone)]
pub struct ImportTask {
    pub row_number: i64,
    pub source_key: String,
    pub project_key: Option<String>,
    pub project_name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<String>,
    pub status_category: String,
    pub priority: String,
    pub source_priority: Option<String>,
    pub assignee: Option<String>,
    pub due_date: Option<NaiveDate>,
    pub labels: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub comments: Vec<ImportComment>,
    /// Every person the row refers to: user name and display name.
    pub people: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct ImportComment {
    pub index: usize,
    pub author: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub body: String,
    pub mentions: Vec<String>,
}

/// Settings shared by every batch of one import.
#[derive(Debug, Clone)]
pub struct ImportScope {
    pub tenant_id: Uuid,
    pub actor_id: Uuid,
    pub source: String,
    /// The project every row goes to; without it each row's project key picks or creates one.
    pub project_id: Option<Uuid>,
}

/// Lookups remembered across the batches of one import.
#[derive(Debug, Default)]
pub struct ImportCache {
    projects: HashMap<String, (Uuid, String)>,
    people: HashMap<String, Uuid>,
}

/// Outcome of one row.
#[derive(Debug)]
pub enum RowOutcome {
    Created,
    Updated,
    Failed {
        column: Option<String>,
        reason: String,
    },
}

/// Upserts one row inside a savepoint, so a row the database rejects fails alone.
pub async fn upsert_row(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    cache: &mut ImportCache,
    row: &ImportTask,
) -> Result<RowOutcome, StoreError> {
    let mut savepoint = sqlx::Acquire::begin(&mut **tx).await?;
    let failure = match upsert_task(&mut savepoint, scope, cache, row).await {
        Ok(outcome) => {
            savepoint.commit().await?;
            return Ok(outcome);
        }
        Err(StoreError::Invalid(reason)) => reason,
        Err(StoreError::Database(sqlx::Error::Database(db))) if db.constraint().is_some() => {
            format!(
                "rejected by the database rule {}",
                db.constraint().unwrap_or_default()
            )
        }
        Err(error) if error.is_bad_value() => format!(
            "a value is invalid: {}",
            error.database_message().unwrap_or("rejected")
        ),
        Err(error) => return Err(error),
    };
    savepoint.rollback().await?;
    // People or projects this row created are gone with the savepoint, so cached ids of
    // them would point at nothing.
    cache.people.clear();
    cache.projects.clear();
    Ok(RowOutcome::Failed {
        column: None,
        reason: failure,
    })
}

async fn upsert_task(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    cache: &mut ImportCache,
    row: &ImportTask,
) -> Result<RowOutcome, StoreError> {
    let (project_id, project_key) = resolve_project(tx, scope, cache, row).await?;
    let status = row
        .status
        .clone()
        .unwrap_or_else(|| projects::INITIAL_STATUS.to_owned());
    projects::ensure_status(
        tx,
        scope.tenant_id,
        project_id,
        &status,
        &row.status_category,
        100,
    )
    .await?;
    for (username, display_name) in &row.people {
        resolve_person(tx, scope, cache, username, display_name.as_deref()).await?;
    }
    let assignee_id = row
        .assignee
        .as_ref()
        .and_then(|name| cache.people.get(name).copied());

    let existing: Option<Uuid> = sqlx::query_scalar(
        "select id from tasks where tenant_id = $1 and source = $2 and source_key = $3",
    )
    .bind(scope.tenant_id)
    .bind(&scope.source)
    .bind(&row.source_key)
    .fetch_optional(&mut **tx)
    .await?;

    let (task_id, outcome) = match existing {
        Some(id) => {
            update_task(tx, scope, id, project_id, &status, assignee_id, row).await?;
            (id, RowOutcome::Updated)
        }
        None => {
            let key = choose_key(
                tx,
                scope.tenant_id,
                project_id,
                &project_key,
                &row.source_key,
            )
            .await?;
            let id = insert_task(tx, scope, project_id, &key, &status, assignee_id, row).await?;
            (id, RowOutcome::Created)
        }
    };

    for comment in &row.comments {
        upsert_comment(tx, scope, cache, task_id, &row.source_key, comment).await?;
    }
    let task = tasks::fetch_in_tx(tx, scope.tenant_id, task_id).await?;
    let changes = serde_json::json!({ "source": scope.source, "source_key": row.source_key });
    tasks::record_change(
        tx,
        scope.tenant_id,
        scope.actor_id,
        &task,
        EventType::TaskImported,
        changes,
    )
    .await?;
    Ok(outcome)
}

async fn resolve_project(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    cache: &mut ImportCache,
    row: &ImportTask,
) -> Result<(Uuid, String), StoreError> {
    let cache_key = match scope.project_id {
        Some(id) => id.to_string(),
        None => row.project_key.clone().ok_or_else(|| {
            StoreError::Invalid("the row has no project key and the import names no project".into())
        })?,
    };
    if let Some(found) = cache.projects.get(&cache_key) {
        return Ok(found.clone());
    }
    let project = match scope.project_id {
        Some(id) => {
            let key: Option<String> =
                sqlx::query_scalar("select key from projects where tenant_id = $1 and id = $2")
                    .bind(scope.tenant_id)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
            (id, key.ok_or(StoreError::NotFound("project"))?)
        }
        None => {
            let key =
                ProjectKey::parse(&cache_key).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let name = row.project_name.clone().unwrap_or_else(|| key.to_string());
            let project = projects::find_or_create_by_key(
                tx,
                scope.tenant_id,
                scope.actor_id,
                key.as_str(),
                &name,
            )
            .await?;
            ensure_actor_may_write(tx, scope, project.id, &project.key).await?;
            (project.id, project.key)
        }
    };
    cache.projects.insert(cache_key, project.clone());
    Ok(project)
}

/// Applies the role policy to a project that the import found by the key in the file: the
/// importer's tenant role and their role in that project must both allow writing. The API
/// checks a project named in the request before the job starts.
async fn ensure_actor_may_write(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    project_id: Uuid,
    key: &str,
) -> Result<(), StoreError> {
    let roles: Option<(String, Option<String>)> = sqlx::query_as(
        "select m.role, pr.role from memberships m
         left join project_roles pr
             on pr.tenant_id = m.tenant_id and pr.user_id = m.user_id and pr.project_id = $3
         where m.tenant_id = $1 and m.user_id = $2",
    )
    .bind(scope.tenant_id)
    .bind(scope.actor_id)
    .bind(project_id)
    .fetch_optional(&mut **tx)
    .await?;
    let allowed = roles.is_some_and(|(tenant_role, project_role)| {
        is_allowed_in_project_by_name(&tenant_role, project_role.as_deref(), ProjectAction::Write)
    });
    if allowed {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "your role does not allow writing in project {key}"
        )))
    }
}

/// Finds the placeholder member standing for an imported person, creating one if needed.
async fn resolve_person(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    cache: &mut ImportCache,
    username: &str,
    display_name: Option<&str>,
) -> Result<Uuid, StoreError> {
    if let Some(id) = cache.people.get(username) {
        return Ok(*id);
    }
    let found: Option<Uuid> = sqlx::query_scalar(
        "select user_id from memberships where tenant_id = $1 and source = $2 and source_key = $3",
    )
    .bind(scope.tenant_id)
    .bind(&scope.source)
    .bind(username)
    .fetch_optional(&mut **tx)
    .await?;
    let user_id = match found {
        Some(id) => id,
        None => {
            let user_id = new_id();
            sqlx::query("insert into users (id, name) values ($1, $2)")
                .bind(user_id)
                .bind(display_name.unwrap_or(username))
                .execute(&mut **tx)
                .await?;
            let handle =
                accounts::free_handle(tx, scope.tenant_id, Handle::derive_from(username).as_str())
                    .await?;
            sqlx::query(
                "insert into memberships (tenant_id, user_id, role, handle, source, source_key)
                 values ($1, $2, 'member', $3, $4, $5)",
            )
            .bind(scope.tenant_id)
            .bind(user_id)
            .bind(handle)
            .bind(&scope.source)
            .bind(username)
            .execute(&mut **tx)
            .await?;
            user_id
        }
    };
    cache.people.insert(username.to_owned(), user_id);
    Ok(user_id)
}

/// Largest source task number kept as is; a larger one would leave the project's counter
/// too close to the end of `bigint` for new tasks.
const MAX_KEPT_TASK_NUMBER: i64 = 1_000_000_000;

/// Keeps the source key (`DPSA-31463`) when it belongs to the project and is free, and
/// otherwise takes the project's next number.
async fn choose_key(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    project_id: Uuid,
    project_key: &str,
    source_key: &str,
) -> Result<String, StoreError> {
    let number = source_key
        .strip_prefix(project_key)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|n| (1..MAX_KEPT_TASK_NUMBER).contains(n));
    if let Some(number) = number {
        let taken: bool = sqlx::query_scalar(
            "select exists (select 1 from tasks where tenant_id = $1 and key = $2)",
        )
        .bind(tenant_id)
        .bind(source_key)
        .fetch_one(&mut **tx)
        .await?;
        if !taken {
            // Later tasks of the project must not be given this number again.
            sqlx::query("update projects set next_task_number = greatest(next_task_number, $2 + 1) where id = $1")
                .bind(project_id)
                .bind(number)
                .execute(&mut **tx)
                .await?;
            return Ok(source_key.to_owned());
        }
    }
    tasks::next_key(tx, tenant_id, project_id).await
}

async fn insert_task(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    project_id: Uuid,
    key: &str,
    status: &str,
    assignee_id: Option<Uuid>,
    row: &ImportTask,
) -> Result<Uuid, StoreError> {
    let id = new_id();
    sqlx::query(
        "insert into tasks (id, tenant_id, project_id, key, title, description, status, priority,
                            source_priority, assignee_id, due_date, labels, created_by,
                            created_at, updated_at, source, source_key)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 coalesce($14, now()), coalesce($15, now()), $16, $17)",
    )
    .bind(id)
    .bind(scope.tenant_id)
    .bind(project_id)
    .bind(key)
    .bind(&row.title)
    .bind(&row.description)
    .bind(status)
    .bind(&row.priority)
    .bind(&row.source_priority)
    .bind(assignee_id)
    .bind(row.due_date)
    .bind(&row.labels)
    .bind(scope.actor_id)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(&scope.source)
    .bind(&row.source_key)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

async fn update_task(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    id: Uuid,
    project_id: Uuid,
    status: &str,
    assignee_id: Option<Uuid>,
    row: &ImportTask,
) -> Result<(), StoreError> {
    sqlx::query(
        "update tasks set project_id = $3, title = $4, description = $5, status = $6, priority = $7,
                source_priority = $8, assignee_id = $9, due_date = $10, labels = $11,
                version = version + 1, updated_at = now()
         where tenant_id = $1 and id = $2",
    )
    .bind(scope.tenant_id)
    .bind(id)
    .bind(project_id)
    .bind(&row.title)
    .bind(&row.description)
    .bind(status)
    .bind(&row.priority)
    .bind(&row.source_priority)
    .bind(assignee_id)
    .bind(row.due_date)
    .bind(&row.labels)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Upserts an imported comment and records its mentions. Imported mentions are history:
/// they send no notifications, so no `comment.created` event is written.
async fn upsert_comment(
    tx: &mut Tx<'_>,
    scope: &ImportScope,
    cache: &ImportCache,
    task_id: Uuid,
    task_source_key: &str,
    comment: &ImportComment,
) -> Result<(), StoreError> {
    let source_key = format!("{task_source_key}#{}", comment.index);
    let author_id = comment
        .author
        .as_ref()
        .and_then(|name| cache.people.get(name).copied());
    let comment_id: Uuid = sqlx::query_scalar(
        "insert into comments (id, tenant_id, task_id, author_id, body, created_at, source, source_key)
         values ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8)
         on conflict (tenant_id, source, source_key)
         do update set body = excluded.body, author_id = excluded.author_id, task_id = excluded.task_id
         returning id",
    )
    .bind(new_id())
    .bind(scope.tenant_id)
    .bind(task_id)
    .bind(author_id)
    .bind(&comment.body)
    .bind(comment.created_at)
    .bind(&scope.source)
    .bind(&source_key)
    .fetch_one(&mut **tx)
    .await?;
    let mentioned: Vec<Uuid> = comment
        .mentions
        .iter()
        .filter_map(|name| cache.people.get(name).copied())
        .collect();
    comments::insert_mentions(tx, scope.tenant_id, comment_id, &mentioned).await
}
