//! Records produced by the import: one task per CSV row, with its comments and people.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::RowError;

/// A person referenced by an imported row, identified by their name in the source system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPerson {
    /// User name exactly as the export spells it, such as `jsmith` or a Jira account id.
    pub username: String,
    /// Full name, when the export carries one. Jira Server exports carry only user names.
    pub display_name: Option<String>,
}

/// One comment of an imported task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedComment {
    /// Position among the row's non-empty comment cells, starting at 0.
    pub index: usize,
    /// Time the comment was written, converted to UTC from the source zone.
    pub created_at: Option<DateTime<Utc>>,
    /// User name of the comment's author.
    pub author: Option<String>,
    /// Comment text converted to Markdown.
    pub body_markdown: String,
    /// Distinct user names mentioned in the comment, in order of first appearance.
    pub mentions: Vec<String>,
}

/// One task read from a CSV row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTask {
    /// Position of the row among the data rows, starting at 1 for the first record after
    /// the header. A record that spans several lines counts once. [`RowError::row_number`]
    /// uses the same numbering.
    pub row_number: u64,
    /// Key of the task in the source, such as `DPSA-31463` (Jira's `Issue key`). For the
    /// generic CSV it is the `key` column, or the row number when that is empty or absent.
    pub source_key: String,
    /// Jira's numeric `Issue id`.
    pub issue_id: Option<String>,
    /// Jira's `Issue Type`, as written in the source.
    pub issue_type: Option<String>,
    pub project_key: Option<String>,
    pub project_name: Option<String>,
    pub title: String,
    pub description_markdown: Option<String>,
    /// Status as written in the source. [`crate::status_category_from_source`] maps it to a
    /// category.
    pub status: Option<String>,
    /// Priority as written in the source. [`crate::priority_from_source`] maps it to a
    /// [`crate::Priority`].
    pub priority: Option<String>,
    /// User name of the assignee.
    pub assignee: Option<String>,
    /// User name of the reporter.
    pub reporter: Option<String>,
    /// User name of the person who created the issue, which Jira keeps apart from the
    /// reporter.
    pub creator: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Due date as a calendar date. A time of day in the source is dropped.
    pub due_date: Option<NaiveDate>,
    /// Distinct non-empty labels from every `Labels` column, in order of first appearance.
    pub labels: Vec<String>,
    /// Every non-empty comment cell, in column order.
    pub comments: Vec<ImportedComment>,
    /// Every distinct person the row references: assignee, reporter, creator, comment
    /// authors and the people mentioned in the description and comments.
    pub people: Vec<ImportedPerson>,
}

/// Result of reading one CSV row.
// Rows are produced and consumed one at a time, so the size of the task variant costs
// nothing, while a `Box` would make every caller's pattern match clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportRow {
    Task(ImportedTask),
    Error(RowError),
}

/// Set of strings that keeps the order of first insertion, used for labels, mentions and
/// people so that each value is listed once.
#[derive(Debug, Default)]
pub(crate) struct DistinctStrings {
    seen: HashSet<String>,
    values: Vec<String>,
}

impl DistinctStrings {
    /// Adds `value` unless it is empty or already present.
    pub(crate) fn insert(&mut self, value: &str) {
        if value.is_empty() || self.seen.contains(value) {
            return;
        }
        self.seen.insert(value.to_owned());
        self.values.push(value.to_owned());
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.values
    }

    /// Converts the user names into people without display names.
    pub(crate) fn into_people(self) -> Vec<ImportedPerson> {
        self.values
            .into_iter()
            .map(|username| ImportedPerson {
                username,
                display_name: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_strings_skip_repeats_and_empty() {
        let mut values = DistinctStrings::default();

        values.insert("ann");
        values.insert("");
        values.insert("bob");
        values.insert("ann");

        assert_eq!(values.into_vec(), ["ann", "bob"]);
    }

    #[test]
    fn distinct_strings_become_people() {
        let mut values = DistinctStrings::default();
        values.insert("ann");

        let people = values.into_people();

        assert_eq!(people.len(), 1);
        assert_eq!(people[0].username, "ann");
        assert_eq!(people[0].display_name, None);
    }
}
