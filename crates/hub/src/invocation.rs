//! Hub methods that clients invoke: `JoinTask(taskId)` and `JoinJob(jobId)`.
//!
//! A join must give the client every message of the group after the snapshot's sequence
//! number and nothing at or before it. The connection therefore starts holding back the
//! group's messages before the backend reads the sequence number and snapshot, and after
//! the completion is queued it releases only the held-back messages after that number.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::backend::{JoinError, JoinTarget};
use crate::connection::{Connection, Frame};
use crate::hub::HubShared;
use crate::protocol::{encode_completion_error, encode_completion_result, Invocation};

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

    let target = match invocation.target.as_str() {
        "JoinTask" => {
            parse_id_argument(&invocation.arguments, "JoinTask", "a task id").map(JoinTarget::Task)
        }
        "JoinJob" => {
            parse_id_argument(&invocation.arguments, "JoinJob", "a job id").map(JoinTarget::Job)
        }
        other => Err(format!("unknown hub method '{other}'")),
    };

    match target {
        Ok(target) => join(shared, connection, id, target).await,
        Err(error) => {
            tracing::debug!(method = %invocation.target, %error, "hub invocation rejected");
            complete_with_error(connection, id, &error);
        }
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
        Frame::from(encode_completion_result(id, &result))
    });
    connection.finish_join(&group, completion, grant.seq);
    tracing::debug!(%group, seq = grant.seq, "hub join completed");
}

const INTERNAL_ERROR: &str = "join failed because of an internal server error";

fn fail_join(
    shared: &HubShared,
    connection: &Connection,
    invocation_id: Option<&str>,
    group: &str,
    error: &str,
) {
    let completion = invocation_id.map(|id| Frame::from(encode_completion_error(id, error)));
    if !connection.fail_join(group, completion) {
        shared.groups.remove(group, connection.key);
    }
}

fn complete_with_error(connection: &Connection, invocation_id: Option<&str>, error: &str) {
    if let Some(id) = invocation_id {
        connection.send(encode_completion_error(id, error));
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
