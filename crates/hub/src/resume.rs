//! The `Resume([{group, after_seq}])` hub method: a client that reconnects names the
//! groups it followed and the last sequence number it received in each, and gets the
//! messages it missed followed by the live ones, with no gap and no duplicate.
//!
//! Each group is authorized again: `task:` and `job:` groups with the same backend check
//! as a join, `user:` and `tenant:` groups only for the connection's own user and tenant.
//! As in a join, the connection holds back the group's live messages while the backend
//! reads the missed ones, and then sends the missed messages before the held-back ones.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend::{CatchUp, JoinError, JoinTarget, Principal};
use crate::connection::{Connection, Frame, OutboundEvent};
use crate::hub::HubShared;

/// The error text a client receives when the backend failed. The details are only logged.
const INTERNAL_ERROR: &str = "resume failed because of an internal server error";

/// Maximum number of groups in one `Resume` call, which bounds the work one call causes.
pub(crate) const MAX_RESUME_GROUPS: usize = 100;

/// One group to resume.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct ResumeRequest {
    pub group: String,
    /// Sequence number of the last message of `group` that the client received.
    pub after_seq: i64,
}

/// Parses `Resume`'s only argument: an array of `{"group": string, "after_seq": integer}`.
pub(crate) fn parse_arguments(arguments: &[Value]) -> Result<Vec<ResumeRequest>, String> {
    let expected = "Resume expects one argument: an array of {\"group\": string, \
                    \"after_seq\": integer}";
    let [argument] = arguments else {
        return Err(expected.to_owned());
    };
    let requests: Vec<ResumeRequest> =
        serde_json::from_value(argument.clone()).map_err(|error| format!("{expected}: {error}"))?;
    if requests.len() > MAX_RESUME_GROUPS {
        return Err(format!(
            "Resume accepts at most {MAX_RESUME_GROUPS} groups, got {}",
            requests.len()
        ));
    }
    Ok(requests)
}

/// A group name that a client may resume.
#[derive(Debug, PartialEq, Eq)]
enum ResumableGroup {
    /// A task or job group, which needs the backend's join check.
    Entity(JoinTarget),
    /// The connection's own user or tenant group, which it is always a member of.
    Own,
}

/// Checks the group name's form and, for user and tenant groups, that they are the
/// principal's own. The error is the text sent to the client.
fn parse_group(group: &str, principal: &Principal) -> Result<ResumableGroup, String> {
    let not_found = || format!("group {group} not found");
    let (kind, id) = group.split_once(':').ok_or_else(not_found)?;
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    match kind {
        "task" => Ok(ResumableGroup::Entity(JoinTarget::Task(id))),
        "job" => Ok(ResumableGroup::Entity(JoinTarget::Job(id))),
        "user" if id == principal.user_id => Ok(ResumableGroup::Own),
        "tenant" if id == principal.tenant_id => Ok(ResumableGroup::Own),
        _ => Err(not_found()),
    }
}

/// Resumes each requested group in order, then completes the invocation with one outcome
/// per group: `{"group", "seq"}` with the last sequence number sent, `{"group", "resync":
/// true}`, or `{"group", "error"}`.
pub(crate) async fn resume(
    shared: &HubShared,
    connection: &Arc<Connection>,
    invocation_id: Option<&str>,
    requests: Vec<ResumeRequest>,
) {
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in &requests {
        let outcome = match resume_group(shared, connection, request).await {
            Ok(outcome) => outcome,
            Err(error) => json!({"group": request.group, "error": error}),
        };
        outcomes.push(outcome);
    }

    if let Some(id) = invocation_id {
        let result = Value::Array(outcomes);
        connection.send(connection.protocol().completion_result(id, &result));
    }
}

async fn resume_group(
    shared: &HubShared,
    connection: &Arc<Connection>,
    request: &ResumeRequest,
) -> Result<Value, String> {
    let group = request.group.as_str();
    let principal = &connection.principal;
    let resumable = parse_group(group, principal)?;

    let was_member = connection.begin_join(group);
    if !was_member {
        shared.groups.add(group, connection);
    }

    if let ResumableGroup::Entity(target) = resumable {
        if let Err(error) = shared.backend.join(principal, target).await {
            abandon(shared, connection, group, None);
            return Err(join_error_text(group, target, error));
        }
    }

    let catch_up = shared
        .backend
        .catch_up(principal, group, request.after_seq)
        .await;
    // Replaying more than half the outbound queue at once could close the connection as a
    // slow consumer, so a client that missed that much fetches the current state instead.
    let max_replay = shared.settings.outbound_queue_capacity / 2;
    let catch_up = match catch_up {
        Ok(CatchUp::Messages(messages)) if messages.len() > max_replay => {
            tracing::debug!(
                group,
                missed = messages.len(),
                max_replay,
                "too many missed hub messages to replay"
            );
            Ok(CatchUp::Resync)
        }
        other => other,
    };
    match catch_up {
        Ok(CatchUp::Messages(messages)) => {
            let missed = messages
                .iter()
                .filter(|message| message.group == group)
                .map(|message| OutboundEvent::new(message.clone()))
                .collect();
            let last_seq = connection.finish_catch_up(group, missed, request.after_seq);
            tracing::debug!(
                group,
                after_seq = request.after_seq,
                last_seq,
                "hub group resumed"
            );
            Ok(json!({"group": group, "seq": last_seq}))
        }
        Ok(CatchUp::Resync) => {
            // A task or job client joins again for a fresh snapshot. A user or tenant
            // group stays joined, because every connection is a member of its own.
            let argument = json!({"group": group});
            let resync = connection.protocol().client_invocation("resync", &argument);
            abandon(shared, connection, group, Some(resync));
            tracing::debug!(
                group,
                after_seq = request.after_seq,
                "hub group needs resync"
            );
            Ok(json!({"group": group, "resync": true}))
        }
        Err(error) => {
            abandon(shared, connection, group, None);
            Err(match error {
                JoinError::Internal(error) => {
                    tracing::error!(group, %error, "hub catch-up failed");
                    INTERNAL_ERROR.to_owned()
                }
                JoinError::NotFound | JoinError::Forbidden => format!("group {group} not found"),
            })
        }
    }
}

/// Restores the membership that existed before the resume, after queueing `frame`.
fn abandon(shared: &HubShared, connection: &Connection, group: &str, frame: Option<Frame>) {
    if !connection.fail_join(group, frame) {
        shared.groups.remove(group, connection.key);
    }
}

fn join_error_text(group: &str, target: JoinTarget, error: JoinError) -> String {
    match error {
        JoinError::NotFound | JoinError::Forbidden => {
            tracing::debug!(group, "hub resume denied");
            format!("{} {} not found", target.kind(), target.id())
        }
        JoinError::Internal(error) => {
            tracing::error!(group, %error, "hub resume authorization failed");
            INTERNAL_ERROR.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal::new(Uuid::new_v4(), Uuid::new_v4())
    }

    #[test]
    fn parse_arguments_reads_groups() {
        let arguments = [json!([{"group": "task:x", "after_seq": 2}])];

        let requests = parse_arguments(&arguments).unwrap();

        assert_eq!(
            requests,
            [ResumeRequest {
                group: "task:x".to_owned(),
                after_seq: 2
            }]
        );
    }

    #[test]
    fn parse_arguments_rejects_bad_shapes() {
        let cases = [
            vec![],
            vec![json!({"group": "task:x", "after_seq": 2})],
            vec![json!([{"group": "task:x"}])],
            vec![json!([{"group": "task:x", "after_seq": "2"}])],
            vec![json!([]), json!([])],
        ];

        for arguments in cases {
            let error = parse_arguments(&arguments).unwrap_err();
            assert!(
                error.starts_with("Resume expects"),
                "{arguments:?}: {error}"
            );
        }
    }

    #[test]
    fn parse_arguments_limits_group_count() {
        let requests: Vec<Value> = (0..=MAX_RESUME_GROUPS)
            .map(|seq| json!({"group": "task:x", "after_seq": seq}))
            .collect();

        let error = parse_arguments(&[Value::Array(requests)]).unwrap_err();

        assert!(error.contains("at most 100 groups"), "{error}");
    }

    #[test]
    fn parse_group_accepts_entities_and_own_groups() {
        let principal = principal();
        let id = Uuid::new_v4();

        assert_eq!(
            parse_group(&format!("task:{id}"), &principal),
            Ok(ResumableGroup::Entity(JoinTarget::Task(id)))
        );
        assert_eq!(
            parse_group(&format!("job:{id}"), &principal),
            Ok(ResumableGroup::Entity(JoinTarget::Job(id)))
        );
        assert_eq!(
            parse_group(&principal.user_group(), &principal),
            Ok(ResumableGroup::Own)
        );
        assert_eq!(
            parse_group(&principal.tenant_group(), &principal),
            Ok(ResumableGroup::Own)
        );
    }

    #[test]
    fn parse_group_rejects_other_users_and_bad_names() {
        let principal = principal();
        let other = Uuid::new_v4();
        let cases = [
            format!("user:{other}"),
            format!("tenant:{other}"),
            format!("project:{other}"),
            "task:not-a-uuid".to_owned(),
            "task".to_owned(),
        ];

        for group in cases {
            let error = parse_group(&group, &principal).unwrap_err();
            assert_eq!(error, format!("group {group} not found"));
        }
    }
}
