//! Names of every topic, exchange and queue, under the configured prefix.

use tasklane_config::NamespaceSettings;

/// RabbitMQ queues and the routing keys each is bound to on `task.events`.
pub const QUEUE_BINDINGS: &[(&str, &[&str])] = &[
    ("task.notifications", &["comment.created", "task.reminder"]),
    ("task.analytics", &["task.*", "comment.*", "job.*"]),
    ("task.audit", &["#"]),
    ("task.email", &["task.reminder", "user.*"]),
];

#[derive(Clone, Debug)]
pub struct Topology {
    namespace: NamespaceSettings,
}

impl Topology {
    pub fn new(namespace: NamespaceSettings) -> Self {
        Self { namespace }
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
}
