//! `POST /imports`: stores an uploaded file in PostgreSQL chunk by chunk and queues an
//! import job; the bulk worker does the rest.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::BytesMut;
use tasklane_auth::policy::ProjectAction;
use tasklane_store::{jobs, projects, uploads, PgPool};
use uuid::Uuid;

use crate::extract::Caller;
use crate::project_access::authorize_in_project;
use crate::{ApiError, AppState};

const FORMATS: [&str; 2] = ["jira", "csv"];
/// Maximum size in bytes of a text part such as `format`.
const MAX_TEXT_PART_BYTES: usize = 256;

pub fn routes(state: &AppState) -> Router<AppState> {
    let limit = state.settings.server.max_upload_bytes;
    Router::new().route("/imports", post(create).layer(DefaultBodyLimit::max(limit)))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    caller.require_writer()?;
    let multipart = multipart.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let mut upload: Option<(Uuid, String, i64)> = None;
    let outcome = read_parts(&state, &caller, multipart, &mut upload).await;
    let queued = match outcome {
        Ok(parts) => queue_job(&state, &caller, upload.clone(), parts).await,
        Err(error) => Err(error),
    };
    if queued.is_err() {
        // The chunks were written outside a transaction, so a rejected request removes them.
        if let Some((upload_id, _, _)) = upload {
            if let Err(error) = uploads::delete(&state.pool, upload_id).await {
                tracing::warn!(%upload_id, %error, "could not delete the upload of a rejected import");
            }
        }
    }
    queued
}

/// The text parts of an import request.
struct ImportParts {
    format: Option<String>,
    project_id: Option<Uuid>,
}

/// Reads every part, storing the file as it arrives.
async fn read_parts(
    state: &AppState,
    caller: &Caller,
    mut multipart: Multipart,
    upload: &mut Option<(Uuid, String, i64)>,
) -> Result<ImportParts, ApiError> {
    let mut format = None;
    let mut project_id = None;

    while let Some(mut field) = multipart.next_field().await? {
        match field.name().unwrap_or_default() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::BadRequest(
                        "the request has more than one file part".into(),
                    ));
                }
                let filename = field.file_name().unwrap_or("upload.csv").to_owned();
                let content_type = field.content_type().map(str::to_owned);
                let id = uploads::create(
                    &state.pool,
                    caller.tenant_id,
                    caller.user_id,
                    &filename,
                    content_type.as_deref(),
                )
                .await?;
                *upload = Some((id, filename.clone(), 0));
                let size = store_file(&state.pool, caller.tenant_id, id, &mut field).await?;
                *upload = Some((id, filename, size));
            }
            "format" if format.is_some() => {
                return Err(ApiError::BadRequest(
                    "the request has more than one format part".into(),
                ))
            }
            "format" => format = Some(read_text(field).await?),
            "project_id" => {
                let text = read_text(field).await?;
                let id = Uuid::parse_str(text.trim()).map_err(|_| {
                    ApiError::Unprocessable(format!("project_id {text:?} is not a UUID"))
                })?;
                project_id = Some(id);
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected part {other:?}; expected file, format, project_id"
                )))
            }
        }
    }

    Ok(ImportParts { format, project_id })
}

/// Validates the request and commits the job with its `job.requested` event.
async fn queue_job(
    state: &AppState,
    caller: &Caller,
    upload: Option<(Uuid, String, i64)>,
    parts: ImportParts,
) -> Result<Response, ApiError> {
    let ImportParts { format, project_id } = parts;
    let (upload_id, filename, size) =
        upload.ok_or_else(|| ApiError::Unprocessable("the request has no file part".into()))?;
    if size == 0 {
        return Err(ApiError::Unprocessable("the uploaded file is empty".into()));
    }
    let format = format.unwrap_or_else(|| "jira".to_owned());
    if !FORMATS.contains(&format.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "format {format:?} must be one of {}",
            FORMATS.join(", ")
        )));
    }
    // Without project_id, the worker applies the same check to each project that the
    // file's keys name, and rows for a project the caller may not write in fail.
    if let Some(id) = project_id {
        if projects::find(&state.pool, caller.tenant_id, id)
            .await?
            .is_none()
        {
            return Err(ApiError::Unprocessable(format!(
                "project {id} does not exist"
            )));
        }
        authorize_in_project(state, caller, id, ProjectAction::Write).await?;
    }

    let params = serde_json::json!({
        "upload_id": upload_id,
        "filename": filename,
        "size_bytes": size,
        "format": format,
        "project_id": project_id,
    });
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let job = jobs::create(&mut tx, caller.tenant_id, caller.user_id, "import", params).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(job_id = %job.id, upload_id = %upload_id, size, "import queued");

    let location = format!("/api/v1/jobs/{}", job.id);
    let body = serde_json::json!({ "job_id": job.id, "status": job.status });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(body),
    )
        .into_response())
}

/// Writes the file part as ~1 MiB chunks as it arrives and returns its size in bytes.
async fn store_file(
    pool: &PgPool,
    tenant_id: Uuid,
    upload_id: Uuid,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<i64, ApiError> {
    let mut buffer = BytesMut::with_capacity(uploads::CHUNK_BYTES);
    let mut seq = 0;
    let mut size: i64 = 0;
    while let Some(bytes) = field.chunk().await? {
        size += bytes.len() as i64;
        buffer.extend_from_slice(&bytes);
        while buffer.len() >= uploads::CHUNK_BYTES {
            let chunk = buffer.split_to(uploads::CHUNK_BYTES);
            uploads::append_chunk(pool, tenant_id, upload_id, seq, &chunk).await?;
            seq += 1;
        }
    }
    if !buffer.is_empty() {
        uploads::append_chunk(pool, tenant_id, upload_id, seq, &buffer).await?;
    }
    uploads::set_size(pool, upload_id, size).await?;
    Ok(size)
}

async fn read_text(mut field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_PART_BYTES {
            return Err(ApiError::BadRequest(format!(
                "part {name:?} is longer than {MAX_TEXT_PART_BYTES} bytes"
            )));
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest(format!("part {name:?} is not UTF-8 text")))
}
