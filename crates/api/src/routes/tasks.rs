//! Tasks: create, read, list, and JSON merge patch with optimistic concurrency.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Map, Value};
use tasklane_auth::policy::ProjectAction;
use tasklane_store::tasks::{self, NewTask, Task, TaskFilter, TaskPatch};
use tasklane_store::{projects, Page};
use uuid::Uuid;

use super::required_text;
use crate::extract::{Caller, Json, Path, Query};
use crate::project_access::authorize_in_project;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list).post(create))
        .route("/tasks/{id}", get(read).patch(patch))
}

const PRIORITIES: [&str; 5] = ["urgent", "high", "medium", "low", "none"];
const MAX_TITLE_CHARS: usize = 500;
const MAX_DESCRIPTION_BYTES: usize = 512 * 1024;
const MAX_LABELS: usize = 50;

/// A response carrying the task and its version as a strong `ETag`.
fn task_response(status: StatusCode, task: Task) -> Response {
    let etag =
        HeaderValue::from_str(&format!("\"{}\"", task.version)).expect("digits are a valid header");
    (status, [(header::ETAG, etag)], axum::Json(task)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTask {
    project_id: Uuid,
    title: String,
    description: Option<String>,
    status: Option<String>,
    priority: Option<String>,
    assignee_id: Option<Uuid>,
    due_date: Option<NaiveDate>,
    #[serde(default)]
    labels: Vec<String>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateTask>,
) -> Result<Response, ApiError> {
    caller.require_writer()?;
    if projects::find(&state.pool, caller.tenant_id, request.project_id)
        .await?
        .is_none()
    {
        return Err(ApiError::Unprocessable(format!(
            "project {} does not exist",
            request.project_id
        )));
    }
    authorize_in_project(&state, &caller, request.project_id, ProjectAction::Write).await?;
    let new = NewTask {
        project_id: request.project_id,
        title: required_text("title", &request.title, MAX_TITLE_CHARS)?,
        description: request.description.map(parse_description).transpose()?,
        status: request.status,
        priority: parse_priority(request.priority.as_deref().unwrap_or("none"))?,
        assignee_id: request.assignee_id,
        due_date: request.due_date,
        labels: parse_labels(request.labels)?,
    };
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let task = tasks::create(&mut tx, caller.tenant_id, caller.user_id, new).await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(task_response(StatusCode::CREATED, task))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let task = tasks::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    Ok(task_response(StatusCode::OK, task))
}

#[derive(Deserialize)]
struct ListParams {
    project: Option<Uuid>,
    status: Option<String>,
    assignee: Option<Uuid>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<Task>>, ApiError> {
    let paging = crate::extract::PageParams {
        cursor: params.cursor,
        limit: params.limit,
    };
    let filter = TaskFilter {
        project_id: params.project,
        status: params.status,
        assignee_id: params.assignee,
    };
    let page = tasks::list(
        &state.pool,
        caller.tenant_id,
        &filter,
        paging.uuid_cursor()?,
        paging.limit()?,
    )
    .await?;
    Ok(Json(page))
}

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    caller.require_writer()?;
    let existing = tasks::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound("task"))?;
    authorize_in_project(&state, &caller, existing.project_id, ProjectAction::Write).await?;
    let expected_version = parse_if_match(&headers)?;
    let Value::Object(fields) = &body else {
        return Err(ApiError::Unprocessable(
            "a merge patch must be a JSON object".into(),
        ));
    };
    let parsed = parse_patch(fields)?;
    if fields.is_empty() {
        // An empty merge patch changes nothing, so it neither bumps the version nor emits an event.
        let task = tasks::get(&state.pool, caller.tenant_id, id)
            .await?
            .ok_or(ApiError::NotFound("task"))?;
        if expected_version.is_some_and(|expected| expected != task.version) {
            return Err(ApiError::PreconditionFailed(format!(
                "the task is at version {}",
                task.version
            )));
        }
        return Ok(task_response(StatusCode::OK, task));
    }
    let mut tx = state
        .pool
        .begin()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let task = tasks::patch(
        &mut tx,
        caller.tenant_id,
        caller.user_id,
        id,
        expected_version,
        parsed,
        body,
    )
    .await?;
    tx.commit()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(task_response(StatusCode::OK, task))
}

/// Reads `If-Match: "<version>"`; `*` and an absent header impose no version.
fn parse_if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not valid text".into()))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| {
            ApiError::BadRequest(format!("If-Match {text:?} is not an ETag this API issued"))
        })
}

fn parse_patch(fields: &Map<String, Value>) -> Result<TaskPatch, ApiError> {
    let mut patch = TaskPatch::default();
    for (name, value) in fields {
        match name.as_str() {
            "title" => {
                patch.title = Some(required_text(
                    "title",
                    expect_str(name, value)?,
                    MAX_TITLE_CHARS,
                )?)
            }
            "description" => {
                patch.description = Some(
                    nullable_str(name, value)?
                        .map(|d| parse_description(d.to_owned()))
                        .transpose()?,
                )
            }
            "status" => {
                patch.status = Some(required_text("status", expect_str(name, value)?, 100)?)
            }
            "priority" => patch.priority = Some(parse_priority(expect_str(name, value)?)?),
            "assignee_id" => {
                patch.assignee_id = Some(
                    nullable_str(name, value)?
                        .map(|s| Uuid::parse_str(s).map_err(|_| invalid(name, "a UUID")))
                        .transpose()?,
                )
            }
            "due_date" => {
                patch.due_date = Some(
                    nullable_str(name, value)?
                        .map(|s| {
                            s.parse::<NaiveDate>()
                                .map_err(|_| invalid(name, "a date as YYYY-MM-DD"))
                        })
                        .transpose()?,
                )
            }
            "labels" => {
                let labels: Vec<String> = serde_json::from_value(value.clone())
                    .map_err(|_| invalid(name, "an array of strings"))?;
                patch.labels = Some(parse_labels(labels)?);
            }
            other => {
                return Err(ApiError::Unprocessable(format!(
                    "unknown or read-only field {other:?}"
                )))
            }
        }
    }
    Ok(patch)
}

fn invalid(field: &str, expected: &str) -> ApiError {
    ApiError::Unprocessable(format!("{field} must be {expected}"))
}

fn expect_str<'a>(field: &str, value: &'a Value) -> Result<&'a str, ApiError> {
    value.as_str().ok_or_else(|| invalid(field, "a string"))
}

fn nullable_str<'a>(field: &str, value: &'a Value) -> Result<Option<&'a str>, ApiError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        _ => Err(invalid(field, "a string or null")),
    }
}

fn parse_priority(value: &str) -> Result<String, ApiError> {
    if PRIORITIES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::Unprocessable(format!(
            "priority {value:?} must be one of {}",
            PRIORITIES.join(", ")
        )))
    }
}

fn parse_description(value: String) -> Result<String, ApiError> {
    if value.len() > MAX_DESCRIPTION_BYTES {
        return Err(ApiError::Unprocessable(format!(
            "description must have at most {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    Ok(value)
}

fn parse_labels(labels: Vec<String>) -> Result<Vec<String>, ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::Unprocessable(format!(
            "a task may have at most {MAX_LABELS} labels"
        )));
    }
    let mut clean: Vec<String> = Vec::new();
    for label in labels {
        let label = required_text("label", &label, 100)?;
        if !clean.contains(&label) {
            clean.push(label);
        }
    }
    Ok(clean)
}
