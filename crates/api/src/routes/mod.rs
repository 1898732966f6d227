//! One module per API area.

mod account_mail;
mod api_tokens;
mod auth;
mod browser_sessions;
mod comments;
pub mod health;
mod imports;
mod invitations;
mod jobs;
pub mod jwks;
mod members;
mod notifications;
mod oidc;
pub mod page;
mod project_roles;
mod projects;
mod sessions;
mod tasks;
mod totp;

use axum::Router;

use crate::AppState;

pub fn api_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .merge(auth::routes())
        .merge(account_mail::routes())
        .merge(sessions::routes())
        .merge(browser_sessions::routes())
        .merge(invitations::routes())
        .merge(api_tokens::routes())
        .merge(members::routes())
        .merge(projects::routes())
        .merge(project_roles::routes())
        .merge(tasks::routes())
        .merge(totp::routes())
        .merge(comments::routes())
        .merge(notifications::routes())
        .merge(imports::routes(&state))
        .merge(jobs::routes())
        .merge(oidc::routes())
}

/// Reads a required, trimmed, non-empty text field of at most `max_chars` characters.
pub(crate) fn required_text(
    field: &str,
    value: &str,
    max_chars: usize,
) -> Result<String, crate::ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(crate::ApiError::Unprocessable(format!(
            "{field} must not be empty"
        )));
    }
    if trimmed.chars().count() > max_chars {
        return Err(crate::ApiError::Unprocessable(format!(
            "{field} must have at most {max_chars} characters"
        )));
    }
    Ok(trimmed.to_owned())
}
