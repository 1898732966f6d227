//! The bulk worker: consumes `bulk-operations`, runs each import job, and commits the
//! Kafka offset only after the job's outcome is in PostgreSQL. A worker that crashes
//! mid-job gets the message again and re-runs the job; upserts make that harmless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tasklane_bus::kafka::KafkaConsumer;
use tasklane_cache::Cache;
use tasklane_domain::EventEnvelope;
use tasklane_import::{ImportFormat, ImportOptions, ImportReader, ImportRow, ImportedTask};
use tasklane_store::import::{
    self, ImportCache, ImportComment, ImportScope, ImportTask, RowOutcome,
};
use tasklane_store::jobs::{self, JobCounts};
use tasklane_store::{uploads, PgPool};
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Dependencies and settings of a bulk worker.
#[derive(Clone)]
pub struct BulkWorker {
    pub pool: PgPool,
    pub cache: Cache,
    pub source_zone: chrono_tz::Tz,
    pub batch_size: usize,
    pub retry_delay: Duration,
}

/// Attempts per job before it is marked failed.
const MAX_ATTEMPTS: u32 = 3;

impl BulkWorker {
    /// Consumes job requests until `cancel` fires.
    pub async fn run(self, consumer: KafkaConsumer, cancel: CancellationToken) {
        tracing::info!("bulk worker started");
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                next = consumer.next() => next,
            };
            let (payload, handle) = match next {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "kafka receive failed, retrying");
                    tokio::time::sleep(self.retry_delay).await;
                    continue;
                }
            };
            self.handle_message(&payload, &cancel).await;
            if cancel.is_cancelled() {
                // The job may be half done; leaving the offset uncommitted makes the next
                // worker run it again.
                break;
            }
            if let Err(error) = consumer.commit(&handle) {
                tracing::warn!(%error, offset = handle.offset, "kafka offset commit failed; the job may run again");
            }
        }
        tracing::info!("bulk worker stopped");
    }

    async fn handle_message(&self, payload: &[u8], cancel: &CancellationToken) {
        let event: EventEnvelope = match serde_json::from_slice(payload) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, "bulk-operations message is not an event envelope, skipped");
                return;
            }
        };
        let job_id = event.subject_id;
        for attempt in 1..=MAX_ATTEMPTS {
            match self.run_job(job_id).await {
                Ok(()) => return,
                Err(error) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(%job_id, attempt, error = format!("{error:#}"), "import attempt failed, retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.retry_delay * attempt) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%job_id, error = format!("{error:#}"), "import failed");
                    let _ = self
                        .mark_failed(job_id, "the import failed unexpectedly; see the server log")
                        .await;
                }
            }
        }
    }

    async fn run_job(&self, job_id: Uuid) -> anyhow::Result<()> {
        let span = tracing::info_span!("import", %job_id);
        self.run_job_in_span(job_id).instrument(span).await
    }

    async fn run_job_in_span(&self, job_id: Uuid) -> anyhow::Result<()> {
        let Some((tenant_id, job)) = jobs::get_any_tenant(&self.pool, job_id).await? else {
            tracing::warn!(%job_id, "job not found, skipped");
            return Ok(());
        };
        if matches!(job.status.as_str(), "completed" | "failed" | "cancelled") {
            tracing::info!(%job_id, status = job.status, "job already finished, skipped");
            return Ok(());
        }
        let params: ImportParams = serde_json::from_value(job.params.clone())?;
        let actor_id = job.created_by.unwrap_or_default();

        let mut tx = self.pool.begin().await?;
        jobs::start(&mut tx, tenant_id, job_id, Some(actor_id)).await?;
        tx.commit().await?;
        self.cache.set_job_status(job_id, "running", 0).await;

        let bytes_read = Arc::new(AtomicU64::new(0));
        let counter = bytes_read.clone();
        let chunks = uploads::read_chunks(self.pool.clone(), tenant_id, params.upload_id).inspect(
            move |chunk| {
                if let Ok(bytes) = chunk {
                    counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
            },
        );
        let format: ImportFormat = params.format.parse()?;
        let options = ImportOptions {
            source_zone: self.source_zone,
        };
        let mut reader =
            match ImportReader::new(StreamReader::new(Box::pin(chunks)), format, options).await {
                Ok(reader) => reader,
                Err(error) => {
                    // A file we cannot read at all is the caller's mistake, reported on the job.
                    self.finish(
                        tenant_id,
                        job_id,
                        actor_id,
                        "failed",
                        Some(&error.to_string()),
                    )
                    .await?;
                    return Ok(());
                }
            };

        let scope = ImportScope {
            tenant_id,
            actor_id,
            source: source_name(format, &reader, params.upload_id),
            project_id: params.project_id,
        };
        let mut cache = ImportCache::default();
        let mut seen = SeenRows::default();
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            let row = reader.next_row().await;
            let at_end = row.is_none();
            if let Some(row) = row {
                batch.push(row);
            }
            if batch.len() >= self.batch_size || (at_end && !batch.is_empty()) {
                let progress = percent(bytes_read.load(Ordering::Relaxed), params.size_bytes);
                let rows = seen.mark_repeats(std::mem::take(&mut batch));
                self.write_batch(&scope, &mut cache, &mut seen, job_id, rows, progress)
                    .await?;
            }
            if at_end {
                break;
            }
        }
        self.finish(tenant_id, job_id, actor_id, "completed", None)
            .await
    }

    /// Upserts a batch in one transaction, with its errors and a progress event.
    async fn write_batch(
        &self,
        scope: &ImportScope,
        cache: &mut ImportCache,
        seen: &mut SeenRows,
        job_id: Uuid,
        rows: Vec<ImportRow>,
        progress: i32,
    ) -> anyhow::Result<()> {
        let metrics = tasklane_telemetry::metrics();
        let mut counts = JobCounts {
            total: rows.len() as i64,
            ..Default::default()
        };
        let mut tx = self.pool.begin().await?;
        for row in rows {
            let (row_number, column, reason) = match row {
                ImportRow::Error(error) => (error.row_number, error.column, error.reason),
                ImportRow::Task(task) => {
                    let row_number = task.row_number;
                    match import::upsert_row(&mut tx, scope, cache, &to_store_row(task)).await? {
                        RowOutcome::Created => {
                            counts.created += 1;
                            continue;
                        }
                        RowOutcome::Updated => {
                            counts.updated += 1;
                            continue;
                        }
                        RowOutcome::Failed { column, reason } => (row_number, column, reason),
                    }
                }
            };
            counts.failed += 1;
            seen.errors_recorded += 1;
            if seen.errors_recorded <= MAX_RECORDED_ERRORS {
                jobs::record_error(
                    &mut tx,
                    scope.tenant_id,
                    job_id,
                    Some(row_number as i64),
                    column.as_deref(),
                    &reason,
                )
                .await?;
            }
        }
        jobs::add_progress(
            &mut tx,
            scope.tenant_id,
            job_id,
            Some(scope.actor_id),
            counts,
            progress,
        )
        .await?;
        tx.commit().await?;
        metrics
            .import_rows
            .with_label_values(&["created"])
            .inc_by(counts.created as u64);
        metrics
            .import_rows
            .with_label_values(&["updated"])
            .inc_by(counts.updated as u64);
        metrics
            .import_rows
            .with_label_values(&["failed"])
            .inc_by(counts.failed as u64);
        self.cache.set_job_status(job_id, "running", progress).await;
        Ok(())
    }

    async fn finish(
        &self,
        tenant_id: Uuid,
        job_id: Uuid,
        actor_id: Uuid,
        status: &str,
        error: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let job = jobs::finish(&mut tx, tenant_id, job_id, Some(actor_id), status, error).await?;
        tx.commit().await?;
        self.cache
            .set_job_status(job_id, status, job.progress)
            .await;
        tracing::info!(%job_id, status, created = job.counts.created, updated = job.counts.updated, failed = job.counts.failed, "import finished");
        Ok(())
    }

    async fn mark_failed(&self, job_id: Uuid, reason: &str) -> anyhow::Result<()> {
        if let Some((tenant_id, job)) = jobs::get_any_tenant(&self.pool, job_id).await? {
            self.finish(
                tenant_id,
                job_id,
                job.created_by.unwrap_or_default(),
                "failed",
                Some(reason),
            )
            .await?;
        }
        Ok(())
    }
}

/// Row errors stored per job; later ones are still counted in `failed`.
const MAX_RECORDED_ERRORS: u64 = 1000;

/// Keys and error count of one import, kept across its batches.
#[derive(Default)]
struct SeenRows {
    /// Source key to the row number that first used it.
    keys: std::collections::HashMap<String, u64>,
    errors_recorded: u64,
}

impl SeenRows {
    /// Turns a row that repeats an earlier row's key into an error, so it cannot silently
    /// overwrite that row.
    fn mark_repeats(&mut self, rows: Vec<ImportRow>) -> Vec<ImportRow> {
        rows.into_iter()
            .map(|row| match row {
                ImportRow::Task(task) => match self.keys.get(&task.source_key) {
                    Some(first) => ImportRow::Error(tasklane_import::RowError {
                        row_number: task.row_number,
                        column: Some("Issue key".into()),
                        reason: format!(
                            "key {} repeats row {first}; the row was skipped",
                            task.source_key
                        ),
                    }),
                    None => {
                        self.keys.insert(task.source_key.clone(), task.row_number);
                        ImportRow::Task(task)
                    }
                },
                error => error,
            })
            .collect()
    }
}

/// Returns the source name rows are upserted under. A generic CSV without a `key` column has no
/// stable row identity, so its rows belong to this upload alone and never overwrite
/// another file's rows.
fn source_name<R: tokio::io::AsyncRead + Unpin + Send>(
    format: ImportFormat,
    reader: &ImportReader<R>,
    upload_id: Uuid,
) -> String {
    let has_key = reader
        .header()
        .iter()
        .any(|column| column.trim().eq_ignore_ascii_case("key"));
    match format {
        ImportFormat::Csv if !has_key => format!("csv:{upload_id}"),
        _ => format.as_str().to_owned(),
    }
}

/// The parameters `POST /imports` stores on an import job.
#[derive(serde::Deserialize)]
struct ImportParams {
    upload_id: Uuid,
    format: String,
    project_id: Option<Uuid>,
    size_bytes: u64,
}

fn percent(done: u64, total: u64) -> i32 {
    if total == 0 {
        return 0;
    }
    ((done.min(total) * 100) / total) as i32
}

fn to_store_row(task: ImportedTask) -> ImportTask {
    let status_category =
        tasklane_import::status_category_from_source(task.status.as_deref().unwrap_or(""));
    let priority = tasklane_import::priority_from_source(task.priority.as_deref().unwrap_or(""));
    ImportTask {
        row_number: task.row_number as i64,
        source_key: task.source_key,
        project_key: task.project_key,
        project_name: task.project_name,
        title: task.title,
        description: task.description_markdown,
        status: task.status.filter(|s| !s.trim().is_empty()),
        status_category: status_category.as_str().to_owned(),
        priority: priority.as_str().to_owned(),
        source_priority: task.priority,
        assignee: task.assignee,
        due_date: task.due_date,
        labels: task.labels,
        created_at: task.created_at,
        updated_at: task.updated_at,
        comments: task
            .comments
            .into_iter()
            .map(|c| ImportComment {
                index: c.index,
                author: c.author,
                created_at: c.created_at,
                body: c.body_markdown,
                mentions: c.mentions,
            })
            .collect(),
        people: task
            .people
            .into_iter()
            .map(|p| (p.username, p.display_name))
            .collect(),
    }
}
