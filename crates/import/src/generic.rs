//! Reading of the generic task CSV: `key,title,description,status,priority,assignee,
//! due_date,labels` in any order, of which only `title` is required.

use crate::dates::parse_iso_date;
use crate::error::ImportError;
use crate::fields::{find_column, RowFields};
use crate::record::DistinctStrings;
use crate::{ImportFormat, ImportedTask, RowError};

/// Positions of the generic CSV's columns.
#[derive(Debug)]
pub(crate) struct CsvColumns {
    key: Option<usize>,
    title: usize,
    description: Option<usize>,
    status: Option<usize>,
    priority: Option<usize>,
    assignee: Option<usize>,
    due_date: Option<usize>,
    labels: Option<usize>,
}

impl CsvColumns {
    pub(crate) fn from_header(header: &[String]) -> Result<Self, ImportError> {
        let Some(title) = find_column(header, "title") else {
            return Err(ImportError::missing_columns(
                ImportFormat::Csv,
                &["title"],
                header,
            ));
        };
        Ok(CsvColumns {
            key: find_column(header, "key"),
            title,
            description: find_column(header, "description"),
            status: find_column(header, "status"),
            priority: find_column(header, "priority"),
            assignee: find_column(header, "assignee"),
            due_date: find_column(header, "due_date"),
            labels: find_column(header, "labels"),
        })
    }
}

/// Converts one generic CSV record into a task. Missing trailing fields count as empty,
/// because hand-written files often leave them out, but extra fields are an error.
/// The description is taken to be Markdown already.
pub(crate) fn read_task(
    columns: &CsvColumns,
    fields: &RowFields<'_>,
) -> Result<ImportedTask, RowError> {
    if fields.record.len() > fields.header.len() {
        return Err(fields.field_count_error());
    }
    let Some(title) = fields.optional(Some(columns.title))? else {
        return Err(fields.error(columns.title, "title is empty; every task needs one"));
    };
    let source_key = match fields.optional(columns.key)? {
        Some(key) => key.to_owned(),
        None => fields.row_number.to_string(),
    };
    let assignee = fields.optional(columns.assignee)?;
    let mut people = DistinctStrings::default();
    people.insert(assignee.unwrap_or_default());

    Ok(ImportedTask {
        row_number: fields.row_number,
        source_key,
        issue_id: None,
        issue_type: None,
        project_key: None,
        project_name: None,
        title: title.to_owned(),
        description_markdown: fields.optional(columns.description)?.map(str::to_owned),
        status: fields.optional(columns.status)?.map(str::to_owned),
        priority: fields.optional(columns.priority)?.map(str::to_owned),
        assignee: assignee.map(str::to_owned),
        reporter: None,
        creator: None,
        created_at: None,
        updated_at: None,
        due_date: read_due_date(columns, fields)?,
        labels: read_labels(columns, fields)?,
        comments: Vec::new(),
        people: people.into_people(),
    })
}

fn read_due_date(
    columns: &CsvColumns,
    fields: &RowFields<'_>,
) -> Result<Option<chrono::NaiveDate>, RowError> {
    let (Some(index), Some(value)) = (columns.due_date, fields.optional(columns.due_date)?) else {
        return Ok(None);
    };
    match parse_iso_date(value) {
        Some(date) => Ok(Some(date)),
        None => Err(fields.invalid_date(index, value, "a date like 2025-10-14")),
    }
}

/// Splits the `labels` cell at `;` or `,`.
fn read_labels(columns: &CsvColumns, fields: &RowFields<'_>) -> Result<Vec<String>, RowError> {
    let mut labels = DistinctStrings::default();
    if let Some(cell) = fields.optional(columns.labels)? {
        for label in cell.split([';', ',']) {
            labels.insert(label.trim());
        }
    }
    Ok(labels.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(header: &[&str], values: &[&str]) -> Result<ImportedTask, RowError> {
        let header: Vec<String> = header.iter().map(|name| name.to_string()).collect();
        let columns = CsvColumns::from_header(&header).unwrap();
        let record = csv_async::ByteRecord::from(values.to_vec());
        let fields = RowFields {
            record: &record,
            header: &header,
            row_number: 2,
        };
        read_task(&columns, &fields)
    }

    #[test]
    fn full_row_converts() {
        let header = [
            "key",
            "title",
            "description",
            "status",
            "priority",
            "assignee",
            "due_date",
            "labels",
        ];
        let values = [
            "T-1",
            "Ship",
            "**now**",
            "Open",
            "High",
            "ann",
            "2025-10-14",
            "a; b,a",
        ];

        let task = read(&header, &values).unwrap();

        assert_eq!(task.source_key, "T-1");
        assert_eq!(task.title, "Ship");
        assert_eq!(task.description_markdown.as_deref(), Some("**now**"));
        assert_eq!(task.status.as_deref(), Some("Open"));
        assert_eq!(task.priority.as_deref(), Some("High"));
        assert_eq!(task.due_date, chrono::NaiveDate::from_ymd_opt(2025, 10, 14));
        assert_eq!(task.labels, ["a", "b"]);
        assert_eq!(task.people.len(), 1);
        assert_eq!(task.people[0].username, "ann");
    }

    #[test]
    fn missing_key_uses_row_number() {
        let task = read(&["Title", "key"], &["Ship"]).unwrap();

        assert_eq!(task.source_key, "2");
        assert!(task.people.is_empty());
    }

    #[test]
    fn bad_due_date_names_column() {
        let error = read(&["title", "due_date"], &["Ship", "14/10/2025"]).unwrap_err();

        assert_eq!(error.column.as_deref(), Some("due_date"));
        assert!(error.reason.contains("\"14/10/2025\""), "{}", error.reason);
    }

    #[test]
    fn empty_title_is_rejected() {
        let error = read(&["title"], &[""]).unwrap_err();

        assert_eq!(error.column.as_deref(), Some("title"));
    }

    #[test]
    fn long_row_is_rejected() {
        let error = read(&["title"], &["a", "b"]).unwrap_err();

        assert_eq!(error.column, None);
    }

    #[test]
    fn header_without_title_is_rejected() {
        let header = ["key", "name"].map(String::from).to_vec();

        assert!(CsvColumns::from_header(&header).is_err());
    }
}
