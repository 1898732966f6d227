//! Long-running jobs and the rows they could not process.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tasklane_domain::{new_id, EventEnvelope, EventType};
use uuid::Uuid;

use crate::{outbox, Page, StoreError, Tx};

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct JobCounts {
    pub total: i64,
    pub created: i64,
    pub updated: i64,
    pub failed: i64,
}

/// A job in its REST representation, also the `data` of its progress events.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub params: serde_json::Value,
    pub counts: JobCounts,
    /// Share of the work done, 0 to 100.
    pub progress: i32,
    pub error: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct JobRow {
    id: Uuid,
    tenant_id: Uuid,
    kind: String,
    status: String,
    params: serde_json::Value,
    total: i64,
    created: i64,
    updated: i64,
    failed: i64,
    progress: i32,
    error: Option<String>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    fn into_job(self) -> (Uuid, Job) {
        let progress = if self.status == "completed" {
            100
        } else {
            self.progress.min(99)
        };
        let job = Job {
            id: self.id,
            kind: self.kind,
            status: self.status,
            params: self.params,
            counts: JobCounts {
                total: self.total,
                created: self.created,
                updated: self.updated,
                failed: self.failed,
            },
            progress,
            error: self.error,
            created_by: self.created_by,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        };
        (self.tenant_id, job)
    }
}

const SELECT_JOB: &str =
    "select id, tenant_id, kind, status, params, total, created, updated, failed,
    progress, error, created_by, created_at, started_at, finished_at from jobs";

/// Creates a queued job and the `job.requested` event that carries it to the workers.
pub async fn create(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    created_by: Uuid,
    kind: &str,
    params: serde_json::Value,
) -> Result<Job, StoreError> {
    let id = new_id();
    sqlx::query(
        "insert into jobs (id, tenant_id, kind, status, params, created_by) values ($1, $2, $3, 'queued', $4, $5)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(kind)
    .bind(&params)
    .bind(created_by)
    .execute(&mut **tx)
    .await?;
    let job = fetch_in_tx(tx, tenant_id, id).await?;
    let event = EventEnvelope::new(
        EventType::JobRequested,
        tenant_id,
        Some(created_by),
        id,
        None,
        serde_json::to_value(&job).unwrap_or_default(),
    );
    outbox::append(tx, &event).await?;
    Ok(job)
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<Job>, StoreError> {
    let sql = format!("{SELECT_JOB} where tenant_id = $1 and id = $2");
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.into_job().1))
}

/// Reads a job by id alone, for a worker that got the id from a broker message.
pub async fn get_any_tenant(pool: &PgPool, id: Uuid) -> Result<Option<(Uuid, Job)>, StoreError> {
    let sql = format!("{SELECT_JOB} where id = $1");
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(JobRow::into_job))
}

pub(crate) async fn fetch_in_tx(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Job, StoreError> {
    let sql = format!("{SELECT_JOB} where tenant_id = $1 and id = $2");
    let row = sqlx::query_as::<_, JobRow>(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
    Ok(row.into_job().1)
}

/// Marks a job running and resets its counts, since a restarted job counts again from zero.
pub async fn start(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
    actor: Option<Uuid>,
) -> Result<Job, StoreError> {
    sqlx::query(
        "update jobs set status = 'running', started_at = now(), total = 0, created = 0,
                updated = 0, failed = 0, progress = 0, error = null
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    emit(tx, tenant_id, id, actor, EventType::JobProgress).await
}

/// Adds a batch's counts to a job and emits a progress event.
pub async fn add_progress(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
    actor: Option<Uuid>,
    delta: JobCounts,
    progress: i32,
) -> Result<Job, StoreError> {
    sqlx::query(
        "update jobs set total = total + $3, created = created + $4, updated = updated + $5,
                failed = failed + $6, progress = greatest(progress, least($7, 99))
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(delta.total)
    .bind(delta.created)
    .bind(delta.updated)
    .bind(delta.failed)
    .bind(progress)
    .execute(&mut **tx)
    .await?;
    emit(tx, tenant_id, id, actor, EventType::JobProgress).await
}

/// Ends a job as `completed` or `failed` and emits the final event.
pub async fn finish(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
    actor: Option<Uuid>,
    status: &str,
    error: Option<&str>,
) -> Result<Job, StoreError> {
    sqlx::query(
        "update jobs set status = $3, error = $4, finished_at = now(),
                progress = case when $3 = 'completed' then 100 else progress end
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(status)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    emit(tx, tenant_id, id, actor, EventType::JobFinished).await
}

async fn emit(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    id: Uuid,
    actor: Option<Uuid>,
    event_type: EventType,
) -> Result<Job, StoreError> {
    let job = fetch_in_tx(tx, tenant_id, id).await?;
    let event = EventEnvelope::new(
        event_type,
        tenant_id,
        actor,
        id,
        None,
        serde_json::to_value(&job).unwrap_or_default(),
    );
    outbox::append(tx, &event).await?;
    Ok(job)
}

/// A row a job could not process.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct JobError {
    pub id: i64,
    pub row_number: Option<i64>,
    #[sqlx(rename = "column_name")]
    pub column: Option<String>,
    pub reason: String,
}

pub async fn record_error(
    tx: &mut Tx<'_>,
    tenant_id: Uuid,
    job_id: Uuid,
    row_number: Option<i64>,
    column: Option<&str>,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into job_errors (tenant_id, job_id, row_number, column_name, reason)
         values ($1, $2, $3, $4, $5) on conflict do nothing",
    )
    .bind(tenant_id)
    .bind(job_id)
    .bind(row_number)
    .bind(column)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list_errors(
    pool: &PgPool,
    tenant_id: Uuid,
    job_id: Uuid,
    after: Option<i64>,
    limit: i64,
) -> Result<Page<JobError>, StoreError> {
    let rows = sqlx::query_as::<_, JobError>(
        "select id, row_number, column_name, reason from job_errors
         where tenant_id = $1 and job_id = $2 and ($3::bigint is null or id > $3)
         order by id limit $4",
    )
    .bind(tenant_id)
    .bind(job_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |e| e.id.to_string()))
}
