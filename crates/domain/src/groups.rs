//! Hub group names. Only the server names groups; clients ask to join a task or a job.

use uuid::Uuid;

pub fn task_group(task_id: Uuid) -> String {
    format!("task:{task_id}")
}

pub fn user_group(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

pub fn tenant_group(tenant_id: Uuid) -> String {
    format!("tenant:{tenant_id}")
}

pub fn job_group(job_id: Uuid) -> String {
    format!("job:{job_id}")
}
