//! Reading of Jira Server CSV export rows ("Export Excel CSV (all fields)").
//!
//! Such exports repeat a column once per value: `Comment`, `Labels`, `Watchers` and others
//! appear many times under the same name. Timestamps such as `10/Oct/25 10:08 PM` carry
//! no zone, and comments are written as `date;author;body`.

use chrono_tz::Tz;

use crate::dates::{parse_date, parse_datetime, DATETIME_EXAMPLE};
use crate::error::{quote_value, ImportError};
use crate::fields::{find_column, find_columns, RowFields};
use crate::record::DistinctStrings;
use crate::{
    count_mentions, jira_wiki_to_markdown, ImportFormat, ImportedComment, ImportedTask, RowError,
};

/// Text that ends 3,946 of the 4,010 comment cells in the Jira exports under
/// `data/samples`, after the comment text. It is not part of the comment, so it is removed.
// NOTE: it is not known which Jira versions write it. A comment whose own text ends in
// `;;;` loses those characters.
const COMMENT_SUFFIX: &str = ";;;";

/// Positions of the columns the import reads.
#[derive(Debug)]
pub(crate) struct JiraColumns {
    summary: usize,
    issue_key: usize,
    issue_id: Option<usize>,
    issue_type: Option<usize>,
    status: Option<usize>,
    priority: Option<usize>,
    assignee: Option<usize>,
    reporter: Option<usize>,
    creator: Option<usize>,
    created: Option<usize>,
    updated: Option<usize>,
    due_date: Option<usize>,
    description: Option<usize>,
    project_key: Option<usize>,
    project_name: Option<usize>,
    labels: Vec<usize>,
    comments: Vec<usize>,
}

impl JiraColumns {
    /// Locates the columns by their Jira header names. `Summary` and `Issue key` are
    /// required; the others may be absent.
    pub(crate) fn from_header(header: &[String]) -> Result<Self, ImportError> {
        let summary = find_column(header, "Summary");
        let issue_key = find_column(header, "Issue key");
        let (Some(summary), Some(issue_key)) = (summary, issue_key) else {
            let missing: Vec<&str> = [("Summary", summary), ("Issue key", issue_key)]
                .into_iter()
                .filter(|(_, found)| found.is_none())
                .map(|(name, _)| name)
                .collect();
            return Err(ImportError::missing_columns(
                ImportFormat::Jira,
                &missing,
                header,
            ));
        };
        Ok(JiraColumns {
            summary,
            issue_key,
            issue_id: find_column(header, "Issue id"),
            issue_type: find_column(header, "Issue Type"),
            status: find_column(header, "Status"),
            priority: find_column(header, "Priority"),
            assignee: find_column(header, "Assignee"),
            reporter: find_column(header, "Reporter"),
            creator: find_column(header, "Creator"),
            created: find_column(header, "Created"),
            updated: find_column(header, "Updated"),
            due_date: find_column(header, "Due Date"),
            description: find_column(header, "Description"),
            project_key: find_column(header, "Project key"),
            project_name: find_column(header, "Project name"),
            labels: find_columns(header, "Labels"),
            comments: find_columns(header, "Comment"),
        })
    }
}

/// Converts one Jira record into a task, or reports the first problem found in it.
pub(crate) fn read_task(
    columns: &JiraColumns,
    fields: &RowFields<'_>,
    zone: Tz,
) -> Result<ImportedTask, RowError> {
    // A record with a different field count has its values under the wrong columns.
    if fields.record.len() != fields.header.len() {
        return Err(fields.field_count_error());
    }
    let title = required(fields, columns.summary)?;
    let source_key = required(fields, columns.issue_key)?;
    let description = fields.optional(columns.description)?;
    let assignee = fields.optional(columns.assignee)?;
    let reporter = fields.optional(columns.reporter)?;
    let creator = fields.optional(columns.creator)?;
    let comments = read_comments(columns, fields, zone)?;

    let mut people = DistinctStrings::default();
    for person in [assignee, reporter, creator].into_iter().flatten() {
        people.insert(person);
    }
    for mention in description.map(count_mentions).unwrap_or_default() {
        people.insert(&mention);
    }
    for comment in &comments {
        people.insert(comment.author.as_deref().unwrap_or_default());
        for mention in &comment.mentions {
            people.insert(mention);
        }
    }

    Ok(ImportedTask {
        row_number: fields.row_number,
        source_key: source_key.to_owned(),
        issue_id: owned(fields.optional(columns.issue_id)?),
        issue_type: owned(fields.optional(columns.issue_type)?),
        project_key: owned(fields.optional(columns.project_key)?),
        project_name: owned(fields.optional(columns.project_name)?),
        title: title.to_owned(),
        description_markdown: description.map(jira_wiki_to_markdown),
        status: owned(fields.optional(columns.status)?),
        priority: owned(fields.optional(columns.priority)?),
        assignee: owned(assignee),
        reporter: owned(reporter),
        creator: owned(creator),
        created_at: read_datetime(fields, columns.created, zone)?,
        updated_at: read_datetime(fields, columns.updated, zone)?,
        due_date: read_due_date(fields, columns.due_date)?,
        labels: read_labels(columns, fields)?,
        comments,
        people: people.into_people(),
    })
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_owned)
}

fn required<'a>(fields: &RowFields<'a>, index: usize) -> Result<&'a str, RowError> {
    match fields.optional(Some(index))? {
        Some(value) => Ok(value),
        None => {
            let name = fields.header[index].trim();
            Err(fields.error(index, format!("{name} is empty; every issue needs one")))
        }
    }
}

fn read_datetime(
    fields: &RowFields<'_>,
    index: Option<usize>,
    zone: Tz,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, RowError> {
    let (Some(index), Some(value)) = (index, fields.optional(index)?) else {
        return Ok(None);
    };
    match parse_datetime(value, zone) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(fields.invalid_date(index, value, &format!("a date like {DATETIME_EXAMPLE}"))),
    }
}

fn read_due_date(
    fields: &RowFields<'_>,
    index: Option<usize>,
) -> Result<Option<chrono::NaiveDate>, RowError> {
    let (Some(index), Some(value)) = (index, fields.optional(index)?) else {
        return Ok(None);
    };
    match parse_date(value) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(fields.invalid_date(index, value, "a date like 14/Oct/25 or 2025-10-14")),
    }
}

fn read_labels(columns: &JiraColumns, fields: &RowFields<'_>) -> Result<Vec<String>, RowError> {
    let mut labels = DistinctStrings::default();
    for &index in &columns.labels {
        labels.insert(fields.text(index)?.trim());
    }
    Ok(labels.into_vec())
}

fn read_comments(
    columns: &JiraColumns,
    fields: &RowFields<'_>,
    zone: Tz,
) -> Result<Vec<ImportedComment>, RowError> {
    let mut comments = Vec::new();
    for &index in &columns.comments {
        let cell = fields.text(index)?;
        if cell.trim().is_empty() {
            continue;
        }
        let comment = parse_comment(cell, comments.len(), zone)
            .map_err(|reason| fields.error(index, reason))?;
        comments.push(comment);
    }
    Ok(comments)
}

/// Parses a comment cell, `date;author;body`, where only the body may contain `;`.
/// Returns the reason on failure.
fn parse_comment(cell: &str, index: usize, zone: Tz) -> Result<ImportedComment, String> {
    let mut parts = cell.splitn(3, ';');
    let (Some(date), Some(author), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "invalid comment {} \"{}\": expected \"date;author;text\"",
            index + 1,
            quote_value(cell)
        ));
    };
    let Some(created_at) = parse_datetime(date, zone) else {
        return Err(format!(
            "invalid date \"{}\" in comment {}: expected a date like {DATETIME_EXAMPLE}",
            quote_value(date),
            index + 1
        ));
    };
    let body = body.strip_suffix(COMMENT_SUFFIX).unwrap_or(body);
    let author = author.trim();
    Ok(ImportedComment {
        index,
        created_at: Some(created_at),
        author: (!author.is_empty()).then(|| author.to_owned()),
        body_markdown: jira_wiki_to_markdown(body),
        mentions: count_mentions(body),
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn comment_splits_date_author_body() {
        let cell = "10/Oct/25 10:26 PM;user006;Hi [~user002]; see *this*;;;";

        let comment = parse_comment(cell, 2, chrono_tz::UTC).unwrap();

        assert_eq!(comment.index, 2);
        assert_eq!(
            comment.created_at,
            Some(Utc.with_ymd_and_hms(2025, 10, 10, 22, 26, 0).unwrap())
        );
        assert_eq!(comment.author.as_deref(), Some("user006"));
        assert_eq!(comment.body_markdown, "Hi @user002; see **this**");
        assert_eq!(comment.mentions, ["user002"]);
    }

    #[test]
    fn comment_keeps_body_without_suffix() {
        let comment = parse_comment("01/Aug/24 6:41 PM;u;a;b", 0, chrono_tz::UTC).unwrap();

        assert_eq!(comment.body_markdown, "a;b");
    }

    #[test]
    fn comment_without_author_part_is_rejected() {
        let reason = parse_comment("just text", 0, chrono_tz::UTC).unwrap_err();

        assert!(reason.contains("\"just text\""), "{reason}");
        assert!(reason.contains("date;author;text"), "{reason}");
    }

    #[test]
    fn comment_with_bad_date_is_rejected() {
        let reason = parse_comment("yesterday;ann;hi", 0, chrono_tz::UTC).unwrap_err();

        assert!(reason.contains("\"yesterday\""), "{reason}");
        assert!(reason.contains("comment 1"), "{reason}");
    }

    fn header() -> Vec<String> {
        [
            "Summary",
            "Issue key",
            "Assignee",
            "Labels",
            "Labels",
            "Created",
            "Comment",
            "Comment",
            "Comment",
        ]
        .map(String::from)
        .to_vec()
    }

    fn read(values: &[&str]) -> Result<ImportedTask, RowError> {
        let header = header();
        let columns = JiraColumns::from_header(&header).unwrap();
        let record = csv_async::ByteRecord::from(values.to_vec());
        let fields = RowFields {
            record: &record,
            header: &header,
            row_number: 4,
        };
        read_task(&columns, &fields, chrono_tz::UTC)
    }

    #[test]
    fn row_skips_empty_comments_and_labels() {
        let comment = "10/Oct/25 10:26 PM;bob;ping [~carl]";

        let task = read(&[
            "Fix",
            "AB-1",
            "ann",
            "x",
            "",
            "10/Oct/25 9:00 AM",
            "",
            comment,
            " ",
        ])
        .unwrap();

        assert_eq!(task.source_key, "AB-1");
        assert_eq!(task.labels, ["x"]);
        assert_eq!(task.comments.len(), 1);
        assert_eq!(task.comments[0].index, 0);
        let people: Vec<&str> = task.people.iter().map(|p| p.username.as_str()).collect();
        assert_eq!(people, ["ann", "bob", "carl"]);
    }

    #[test]
    fn row_with_empty_summary_is_rejected() {
        let error = read(&["  ", "AB-1", "", "", "", "", "", "", ""]).unwrap_err();

        assert_eq!(error.row_number, 4);
        assert_eq!(error.column.as_deref(), Some("Summary"));
        assert_eq!(error.reason, "Summary is empty; every issue needs one");
    }

    #[test]
    fn row_with_bad_date_names_column_and_value() {
        let error = read(&["Fix", "AB-1", "", "", "", "someday", "", "", ""]).unwrap_err();

        assert_eq!(error.column.as_deref(), Some("Created"));
        assert!(error.reason.contains("\"someday\""), "{}", error.reason);
    }

    #[test]
    fn row_with_bad_comment_names_column() {
        let error = read(&["Fix", "AB-1", "", "", "", "", "", "no date", ""]).unwrap_err();

        assert_eq!(error.column.as_deref(), Some("Comment"));
    }

    #[test]
    fn short_row_is_rejected() {
        let error = read(&["Fix", "AB-1"]).unwrap_err();

        assert_eq!(error.column, None);
        assert!(
            error.reason.contains("2 fields but the header has 9"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn header_without_summary_is_rejected() {
        let header = ["Issue key", "Status"].map(String::from).to_vec();

        let error = JiraColumns::from_header(&header).unwrap_err();

        assert!(error.to_string().contains("\"Summary\""), "{error}");
    }
}
