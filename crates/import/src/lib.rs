//! Streaming import of task lists from Jira Server CSV exports and a generic task CSV.
//!
//! [`ImportReader`] reads one CSV record at a time from any tokio `AsyncRead` and turns it
//! into an [`ImportRow`]: either an [`ImportedTask`] or a [`RowError`] that names the row,
//! the column and the reason. A bad row never stops the rows after it. The crate does no
//! I/O besides reading the reader it is given.
//!
//! Jira descriptions and comments are converted from Jira wiki markup to Markdown by
//! [`jira_wiki_to_markdown`]. The converted Markdown is not sanitized: raw HTML in the
//! source passes through, so the renderer must sanitize it.

mod dates;
mod error;
mod fields;
mod generic;
mod jira;
mod mapping;
mod mentions;
mod reader;
mod record;
mod wiki;

pub use error::{ImportError, RowError};
pub use mapping::{priority_from_source, status_category_from_source, Priority, StatusCategory};
pub use mentions::count_mentions;
pub use reader::ImportReader;
pub use record::{ImportRow, ImportedComment, ImportedPerson, ImportedTask};
pub use wiki::jira_wiki_to_markdown;

use std::fmt;
use std::str::FromStr;

/// Layout of the CSV file being imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportFormat {
    /// A Jira Server "Export Excel CSV (all fields)" file, with repeated `Comment`,
    /// `Labels` and other columns.
    Jira,
    /// A generic CSV with the header `key,title,description,status,priority,assignee,
    /// due_date,labels`, of which only `title` is required.
    Csv,
}

impl ImportFormat {
    /// Returns the name accepted by [`FromStr`]: `"jira"` or `"csv"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportFormat::Jira => "jira",
            ImportFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for ImportFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for ImportFormat {
    type Err = ImportError;

    /// Parses `"jira"` or `"csv"`, ignoring ASCII case and surrounding whitespace.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let name = value.trim();
        if name.eq_ignore_ascii_case("jira") {
            Ok(ImportFormat::Jira)
        } else if name.eq_ignore_ascii_case("csv") {
            Ok(ImportFormat::Csv)
        } else {
            Err(ImportError::UnknownFormat {
                value: value.to_owned(),
            })
        }
    }
}

/// Settings that apply to a whole import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Time zone in which the export's zone-less timestamps (such as `10/Oct/25 10:08 PM`)
    /// were written. Jira writes them in the exporting user's zone.
    pub source_zone: chrono_tz::Tz,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            source_zone: chrono_tz::UTC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses_known_names() {
        assert_eq!("jira".parse::<ImportFormat>().unwrap(), ImportFormat::Jira);
        assert_eq!(" CSV ".parse::<ImportFormat>().unwrap(), ImportFormat::Csv);
    }

    #[test]
    fn format_rejects_unknown_name() {
        let error = "xlsx".parse::<ImportFormat>().unwrap_err();

        let message = error.to_string();
        assert!(message.contains("\"xlsx\""), "{message}");
        assert!(message.contains("\"jira\" or \"csv\""), "{message}");
    }

    #[test]
    fn options_default_to_utc() {
        assert_eq!(ImportOptions::default().source_zone, chrono_tz::UTC);
    }
}
