//! Names of every topic, exchange and queue, under the configured prefix.

use std::time::Duration;

use tasklane_config::NamespaceSettings;

/// RabbitMQ queues and the routing keys each is bound to on `task.events`.
pub const QUEUE_BINDINGS: &[(&str, &[&str])] = &[
    ("task.notifications", &["comment.created", "task.reminder"]),
    ("task.analytics", &["task.*", "comment.*", "job.*"]),
    ("task.audit", &["#"]),
    ("task.email", &["task.reminder", "user.*", "mail.queued"]),
];

#[derive(Clone, Debug)]
pub struct Topology {
    namespace: NamespaceSettings,
    queue_type: String,
    queue_expires: Option<Duration>,
}

impl Topology {
    /// Names under `namespace`, with durable quorum queues that never expire.
    pub fn new(namespace: NamespaceSettings) -> Self {
        Self {
            namespace,
            queue_type: "quorum".into(),
            queue_expires: None,
        }
    }

    /// Sets the RabbitMQ queue type (`quorum` or `classic`) and an optional idle expiry.
    pub fn with_rabbit_queues(mut self, queue_type: &str, expires: Option<Duration>) -> Self {
        self.queue_type = queue_type.to_owned();
        self.queue_expires = expires;
        self
    }

    pub fn queue_type(&self) -> &str {
        &self.queue_type
    }

    pub fn queue_expires(&self) -> Option<Duration> {
        self.queue_expires
    }

    pub fn name(&self, base: &str) -> String {
        self.namespace.broker_name(base)
    }

    pub fn bulk_operations(&self) -> String {
        self.name("bulk-operations")
    }

    pub fn task_changes(&self) -> String {
        self.name("task-changes")
    }

    pub fn user_activity(&self) -> String {
        self.name("user-activity-stream")
    }

    pub fn bulk_group(&self) -> String {
        self.name("bulk-workers")
    }

    pub fn events_exchange(&self) -> String {
        self.name("task.events")
    }

    pub fn notifications_queue(&self) -> String {
        self.name("task.notifications")
    }

    pub fn email_queue(&self) -> String {
        self.name("task.email")
    }
}
