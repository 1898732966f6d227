//! Mapping of source priority and status names onto Tasklane's fixed scales.

use std::fmt;

/// Tasklane's task priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    Urgent,
    High,
    Medium,
    Low,
    None,
}

impl Priority {
    /// Returns the lowercase name stored by Tasklane, such as `"urgent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
            Priority::None => "none",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Group of workflow states that Tasklane's boards sort tasks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCategory {
    Todo,
    InProgress,
    Done,
}

impl StatusCategory {
    /// Returns the lowercase name stored by Tasklane, such as `"in_progress"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCategory::Todo => "todo",
            StatusCategory::InProgress => "in_progress",
            StatusCategory::Done => "done",
        }
    }
}

impl fmt::Display for StatusCategory {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Maps a Jira priority name onto [`Priority`], ignoring case and surrounding whitespace.
///
/// - urgent: Blocker, Highest, Critical
/// - high: High, Major
/// - medium: Medium, Normal
/// - low: Low, Minor, Lowest, Trivial
/// - none: any other name, including an empty one
pub fn priority_from_source(source: &str) -> Priority {
    match source.trim().to_lowercase().as_str() {
        "blocker" | "highest" | "critical" => Priority::Urgent,
        "high" | "major" => Priority::High,
        "medium" | "normal" => Priority::Medium,
        "low" | "minor" | "lowest" | "trivial" => Priority::Low,
        _ => Priority::None,
    }
}

/// Maps a workflow status name onto a [`StatusCategory`], ignoring case, surrounding
/// whitespace and the kind of apostrophe.
///
/// Open, To Do, Todo, Backlog, New, Reopened and an empty name are to do. Closed, Done,
/// Resolved, Cancelled, Canceled, Won't Do and Won't Fix are done. Every other name, such
/// as In Progress, On Hold or Code Review, counts as in progress, because a custom Jira
/// workflow state usually sits between the two ends.
pub fn status_category_from_source(status: &str) -> StatusCategory {
    let name = status.trim().to_lowercase().replace('\u{2019}', "'");
    match name.as_str() {
        "" | "open" | "to do" | "todo" | "backlog" | "new" | "reopened" => StatusCategory::Todo,
        "closed" | "done" | "resolved" | "cancelled" | "canceled" | "won't do" | "won't fix" => {
            StatusCategory::Done
        }
        _ => StatusCategory::InProgress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_maps_jira_names() {
        let cases = [
            ("Blocker", Priority::Urgent),
            ("Highest", Priority::Urgent),
            ("Critical", Priority::Urgent),
            ("High", Priority::High),
            ("Major", Priority::High),
            ("Medium", Priority::Medium),
            ("Normal", Priority::Medium),
            ("Low", Priority::Low),
            ("Minor", Priority::Low),
            ("Lowest", Priority::Low),
            ("Trivial", Priority::Low),
            (" major ", Priority::High),
            ("", Priority::None),
            ("P1", Priority::None),
        ];
        for (source, expected) in cases {
            assert_eq!(
                priority_from_source(source),
                expected,
                "priority {source:?}"
            );
        }
    }

    #[test]
    fn priority_names_are_lowercase() {
        assert_eq!(Priority::Urgent.as_str(), "urgent");
        assert_eq!(Priority::High.as_str(), "high");
        assert_eq!(Priority::Medium.as_str(), "medium");
        assert_eq!(Priority::Low.as_str(), "low");
        assert_eq!(Priority::None.to_string(), "none");
    }

    #[test]
    fn status_maps_to_categories() {
        let cases = [
            ("Open", StatusCategory::Todo),
            ("To Do", StatusCategory::Todo),
            ("Backlog", StatusCategory::Todo),
            ("New", StatusCategory::Todo),
            ("Reopened", StatusCategory::Todo),
            ("", StatusCategory::Todo),
            ("Closed", StatusCategory::Done),
            ("Done", StatusCategory::Done),
            ("Resolved", StatusCategory::Done),
            ("Cancelled", StatusCategory::Done),
            ("Canceled", StatusCategory::Done),
            ("Won't Do", StatusCategory::Done),
            ("Won\u{2019}t Do", StatusCategory::Done),
            (" CLOSED ", StatusCategory::Done),
            ("In Progress", StatusCategory::InProgress),
            ("On Hold", StatusCategory::InProgress),
            ("Dev Testing", StatusCategory::InProgress),
        ];
        for (status, expected) in cases {
            assert_eq!(
                status_category_from_source(status),
                expected,
                "status {status:?}"
            );
        }
    }

    #[test]
    fn status_category_names_are_snake_case() {
        assert_eq!(StatusCategory::Todo.as_str(), "todo");
        assert_eq!(StatusCategory::InProgress.as_str(), "in_progress");
        assert_eq!(StatusCategory::Done.to_string(), "done");
    }
}
