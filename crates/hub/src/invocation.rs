//! Hub methods that clients invoke: `JoinTask(taskId)`, `JoinJob(jobId)`,
//! `LeaveTask(taskId)`, `LeaveJob(jobId)`, `Resume([{group, after_seq}])` and
//! `OnlineUsers()`.
//!
//! A join must give the client every message of the group after the snapshot's sequence
//! number and nothing at or before it. The connection therefore starts holding back the
//! group's messages before the backend reads the sequence number and snapshot, and after
//! the completion is queued it releases only the held-back messages after that number.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend::{JoinError, JoinTarget};
use crate::connection::Connection;
use crate::hub::HubShared;
use crate::presence;
use crate::protocol::Invocation;
use crate::resume;

/// Runs one invocation. Invocations without an id get no completion, as the protocol
/// requires for non-blocking invocations.
pub(crate) async fn handle(
    shared: &HubShared,
    connection: &Arc<Connection>,
    invocation: Invocation,
) {
    let id = invocation.invocation_id.as_deref();

    if !invocation.stream_ids.is_empty() {
        let error = format!(
            "hub method '{}' does not accept stream arguments",
            invocation.target
        );
        complete_with_error(connection, id, &error);
        return;
    }

    let arguments = &invocation.arguments;
    let result = match invocation.target.as_str() {
        "JoinTask" => parse_target(arguments, "JoinTask", JoinTarget::Task).map(Method::Join),
        "JoinJob" => parse_target(arguments, "JoinJob", JoinTarget::Job).map(Method::Join),
        "LeaveTask" => parse_target(arguments, "LeaveTask", JoinTarget::Task).map(Method::Leave),
        "LeaveJob" => parse_target(arguments, "LeaveJob", JoinTarget::Job).map(Method::Leave),
        "Resume" => resume::parse_arguments(arguments).map(Method::Resume),
        "OnlineUsers" if arguments.is_empty() => Ok(Method::OnlineUsers),
        "OnlineUsers" => Err("OnlineUsers expects no arguments".to_owned()),
        other => Err(format!("unknown hub method '{other}'")),
    };

    match result {
        Ok(Method::Join(target)) => join(shared, connection, id, target).await,
        Ok(Method::Leave(target)) => leave(shared, connection, id, target),
        Ok(Method::Resume(requests)) => resume::resume(shared, connection, id, requests).await,
        Ok(Method::OnlineUsers) => online_users(shared, connection, id).await,
        Err(error) => {
            tracing::debug!(method = %invocation.target, %error, "hub invocation rejected");
            complete_with_error(connection, id, &error);
        }
    }
}

/// A hub method call with valid arguments.
enum Method {
    Join(JoinTarget),
    Leave(JoinTarget),
    Resume(Vec<resume::ResumeRequest>),
    OnlineUsers,
}

fn parse_target(
    arguments: &[Value],
    method: &str,
    target: fn(Uuid) -> JoinTarget,
) -> Result<JoinTarget, String> {
    let what = match target(Uuid::nil()) {
        JoinTarget::Task(_) => "a task id",
        JoinTarget::Job(_) => "a job id",
    };
    parse_id_argument(arguments, method, what).map(target)
}

/// Ends the connection's membership in the target's group. The completion's result is
/// whether the connection was a member.
fn leave(
    shared: &HubShared,
    connection: &Connection,
    invocation_id: Option<&str>,
    target: JoinTarget,
) {
    let group = target.group();
    let was_member = connection.leave(&group);
    shared.groups.remove(&group, connection.key);
    tracing::debug!(%group, was_member, "hub connection left group");
    if let (true, Some(updates)) = (was_member, shared.presence.get()) {
        updates.enqueue_member(&[group], &presence::member_of(connection), false);
    }
    if let Some(id) = invocation_id {
        connection.send(
            connection
                .protocol()
                .completion_result(id, &json!(was_member)),
        );
    }
}

fn parse_id_argument(arguments: &[Value], method: &str, what: &str) -> Result<Uuid, String> {
    let expected = || format!("{method} expects one argument: {what} as a UUID string");
    match arguments {
        [Value::String(text)] => Uuid::parse_str(text).map_err(|_| expected()),
        _ => Err(expected()),
    }
}

async fn join(
    shared: &HubShared,
    connection: &Arc<Connection>,
    invocation_id: Option<&str>,
    target: JoinTarget,
) {
    let group = target.group();
    let was_member = connection.begin_join(&group);
    if !was_member {
        shared.groups.add(&group, connection);
    }

    let result = shared.backend.join(&connection.principal, target).await;

    let grant = match result {
        Ok(grant) if grant.group == group => grant,
        Ok(grant) => {
            tracing::error!(
                expected = %group,
                returned = %grant.group,
                "hub backend returned a join grant for a different group"
            );
            fail_join(shared, connection, invocation_id, &group, INTERNAL_ERROR);
            return;
        }
        Err(JoinError::NotFound | JoinError::Forbidden) => {
            tracing::debug!(%group, "hub join denied");
            let error = format!("{} {} not found", target.kind(), target.id());
            fail_join(shared, connection, invocation_id, &group, &error);
            return;
        }
        Err(JoinError::Internal(error)) => {
            tracing::error!(%group, %error, "hub join failed");
            fail_join(shared, connection, invocation_id, &group, INTERNAL_ERROR);
            return;
        }
    };

    let completion = invocation_id.map(|id| {
        let result = json!({
            "group": grant.group,
            "seq": grant.seq,
            "snapshot": grant.snapshot,
        });
        connection.protocol().completion_result(id, &result)
    });
    connection.finish_join(&group, completion, grant.seq);
    tracing::debug!(%group, seq = grant.seq, "hub join completed");
    if let Some(updates) = shared.presence.get() {
        updates.enqueue_member(&[group], &presence::member_of(connection), true);
    }
}

/// Completes with `{"group", "users": [{"user_id", "name", "handle"}]}`, the users
/// online in the connection's tenant, or with an error when no presence store is set or it failed.
async fn online_users(shared: &HubShared, connection: &Connection, invocation_id: Option<&str>) {
    let Some(id) = invocation_id else {
        return;
    };
    let group = connection.principal.tenant_group();
    let Some(presence) = shared.presence.get() else {
        complete_with_error(
            connection,
            Some(id),
            "presence is not enabled on this server",
        );
        return;
    };
    match presence.store.users(&group).await {
        Ok(users) => {
            let result = presence::users_argument(&group, &users);
            connection.send(connection.protocol().completion_result(id, &result));
        }
        Err(error) => {
            tracing::error!(%error, %group, "reading online users failed");
            complete_with_error(connection, Some(id), "reading online users failed");
        }
    }
}

const INTERNAL_ERROR: &str = "join failed because of an internal server error";

pub(crate) fn fail_join(
    shared: &HubShared,
    connection: &Connection,
    invocation_id: Option<&str>,
    group: &str,
    error: &str,
) {
    let completion = invocation_id.map(|id| connection.protocol().completion_error(id, error));
    if !connection.fail_join(group, completion) {
        shared.groups.remove(group, connection.key);
    }
}

fn complete_with_error(connection: &Connection, invocation_id: Option<&str>, error: &str) {
    if let Some(id) = invocation_id {
        connection.send(connection.protocol().completion_error(id, error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_id_argument_accepts_uuid_string() {
        let id = Uuid::new_v4();

        let parsed = parse_id_argument(&[json!(id.to_string())], "JoinTask", "a task id");

        assert_eq!(parsed, Ok(id));
    }

    #[test]
    fn parse_id_argument_rejects_bad_arguments() {
        let cases = [
            vec![],
            vec![json!("not-a-uuid")],
            vec![json!(42)],
            vec![json!(Uuid::nil().to_string()), json!("extra")],
        ];

        for arguments in cases {
            let error = parse_id_argument(&arguments, "JoinTask", "a task id").unwrap_err();
            assert_eq!(
                error, "JoinTask expects one argument: a task id as a UUID string",
                "arguments: {arguments:?}"
            );
        }
    }
}
