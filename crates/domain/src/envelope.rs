//! The one envelope every event travels in, from the outbox to RabbitMQ, Kafka and the hub.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Current version of the envelope's shape and of every event's `data`.
pub const SCHEMA_VERSION: u32 = 1;

/// An event as committed to the outbox.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub tenant_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub subject_id: Uuid,
    pub subject_version: Option<i64>,
    pub occurred_at: DateTime<Utc>,
    /// The subject's REST representation after the change.
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// Builds an envelope with a fresh id, stamped now.
    pub fn new(
        event_type: EventType,
        tenant_id: Uuid,
        actor_id: Option<Uuid>,
        subject_id: Uuid,
        subject_version: Option<i64>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            event_id: crate::new_id(),
            event_type: event_type.as_str().to_owned(),
            schema_version: SCHEMA_VERSION,
            tenant_id: Some(tenant_id),
            actor_id,
            subject_id,
            subject_version,
            occurred_at: Utc::now(),
            data,
        }
    }
}

/// Event types, spelled as they appear in `type` and as RabbitMQ routing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    TaskCreated,
    TaskUpdated,
    TaskImported,
    CommentCreated,
    NotificationCreated,
    ProjectCreated,
    JobRequested,
    JobProgress,
    JobFinished,
    UserRegistered,
    LoginSucceeded,
    LoginFailed,
    LoginLockedOut,
    RefreshTokenReused,
    MemberInvited,
    MemberJoined,
    MemberRoleChanged,
    MailQueued,
    EmailVerified,
    PasswordResetRequested,
    PasswordReset,
    OidcLinkRequested,
    OidcLinked,
    TotpEnabled,
    TotpDisabled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TaskCreated => "task.created",
            EventType::TaskUpdated => "task.updated",
            EventType::TaskImported => "task.imported",
            EventType::CommentCreated => "comment.created",
            EventType::NotificationCreated => "notification.created",
            EventType::ProjectCreated => "project.created",
            EventType::JobRequested => "job.requested",
            EventType::JobProgress => "job.progress",
            EventType::JobFinished => "job.finished",
            EventType::UserRegistered => "user.registered",
            EventType::LoginSucceeded => "auth.login_succeeded",
            EventType::LoginFailed => "auth.login_failed",
            EventType::LoginLockedOut => "auth.login_locked_out",
            EventType::RefreshTokenReused => "auth.refresh_token_reused",
            EventType::MemberInvited => "member.invited",
            EventType::MemberJoined => "member.joined",
            EventType::MemberRoleChanged => "member.role_changed",
            EventType::MailQueued => "mail.queued",
            EventType::EmailVerified => "auth.email_verified",
            EventType::PasswordResetRequested => "auth.password_reset_requested",
            EventType::PasswordReset => "auth.password_reset",
            EventType::TotpEnabled => "auth.totp_enabled",
            EventType::TotpDisabled => "auth.totp_disabled",
            EventType::OidcLinkRequested => "auth.oidc_link_requested",
            EventType::OidcLinked => "auth.oidc_linked",
        }
    }
}
