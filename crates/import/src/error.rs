//! Errors of a whole import ([`ImportError`]) and of a single row ([`RowError`]).

use std::fmt;

use crate::ImportFormat;

/// Maximum number of characters of a source value quoted in an error message.
const MAX_QUOTED_CHARS: usize = 80;

/// Failure that stops an import before any row is read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("unknown import format \"{value}\": expected \"jira\" or \"csv\"")]
    UnknownFormat { value: String },

    #[error("the file is empty: expected a CSV header row")]
    EmptyInput,

    #[error(
        "missing required {format} column(s) {missing} in the header; found {found}. \
         Check that the file is a comma-separated export in the {format} format"
    )]
    MissingColumns {
        format: ImportFormat,
        /// Names of the missing columns, quoted and comma-separated.
        missing: String,
        /// Start of the header that was found, for comparison.
        found: String,
    },

    #[error("failed to read the CSV header: {0}")]
    Header(#[source] csv_async::Error),
}

impl ImportError {
    pub(crate) fn missing_columns(
        format: ImportFormat,
        missing: &[&str],
        header: &[String],
    ) -> Self {
        let missing = missing
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ");
        ImportError::MissingColumns {
            format,
            missing,
            found: describe_header(header),
        }
    }
}

/// Summarizes a header as its column count and first few names.
fn describe_header(header: &[String]) -> String {
    const SHOWN: usize = 5;
    let names: Vec<String> = header
        .iter()
        .take(SHOWN)
        .map(|name| format!("\"{}\"", quote_value(name)))
        .collect();
    let more = if header.len() > SHOWN { ", ..." } else { "" };
    format!("{} column(s): {}{more}", header.len(), names.join(", "))
}

/// Problem with one row. The import goes on with the next row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Position of the row among the data rows, starting at 1 for the first record after
    /// the header, as in [`crate::ImportedTask::row_number`].
    pub row_number: u64,
    /// Header name of the column at fault, when one column is at fault.
    pub column: Option<String>,
    /// Description of the problem, quoting the offending value (cut to 80 characters).
    pub reason: String,
}

impl RowError {
    pub(crate) fn new(row_number: u64, column: Option<&str>, reason: impl Into<String>) -> Self {
        RowError {
            row_number,
            column: column.map(str::to_owned),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(
                formatter,
                "row {}, column {column}: {}",
                self.row_number, self.reason
            ),
            None => write!(formatter, "row {}: {}", self.row_number, self.reason),
        }
    }
}

impl std::error::Error for RowError {}

/// Cuts `value` to at most 80 characters for quoting in a message, marking a cut with `...`.
pub(crate) fn quote_value(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_value_keeps_short_values() {
        assert_eq!(quote_value("10/Oct/25"), "10/Oct/25");
    }

    #[test]
    fn quote_value_cuts_on_char_boundary() {
        let value = "é".repeat(200);

        let quoted = quote_value(&value);

        assert_eq!(quoted.chars().count(), MAX_QUOTED_CHARS + 3);
        assert!(quoted.ends_with("..."));
    }

    #[test]
    fn row_error_display_names_row_and_column() {
        let error = RowError::new(7, Some("Summary"), "Summary is empty");

        assert_eq!(error.to_string(), "row 7, column Summary: Summary is empty");
    }

    #[test]
    fn missing_columns_message_lists_names_and_header() {
        let header = vec!["Issue key".to_owned(), "Status".to_owned()];

        let error = ImportError::missing_columns(ImportFormat::Jira, &["Summary"], &header);

        let message = error.to_string();
        assert!(message.contains("\"Summary\""), "{message}");
        assert!(
            message.contains("2 column(s): \"Issue key\", \"Status\""),
            "{message}"
        );
    }
}
