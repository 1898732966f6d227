//! Access to the fields of one CSV record by column, with errors that name the column.

use csv_async::ByteRecord;

use crate::error::{quote_value, RowError};

/// Returns the positions of every header column named `name`, ignoring ASCII case and
/// surrounding whitespace.
pub(crate) fn find_columns(header: &[String], name: &str) -> Vec<usize> {
    header
        .iter()
        .enumerate()
        .filter(|(_, column)| column.trim().eq_ignore_ascii_case(name))
        .map(|(index, _)| index)
        .collect()
}

/// Returns the position of the first header column named `name`.
pub(crate) fn find_column(header: &[String], name: &str) -> Option<usize> {
    find_columns(header, name).first().copied()
}

/// One data record together with the header that names its fields.
pub(crate) struct RowFields<'a> {
    pub(crate) record: &'a ByteRecord,
    pub(crate) header: &'a [String],
    pub(crate) row_number: u64,
}

impl<'a> RowFields<'a> {
    /// Returns the field at `index` as text, or `""` when the record is shorter.
    pub(crate) fn text(&self, index: usize) -> Result<&'a str, RowError> {
        let Some(bytes) = self.record.get(index) else {
            return Ok("");
        };
        std::str::from_utf8(bytes).map_err(|error| {
            let reason = format!(
                "invalid UTF-8 at byte {} of the value; re-export the file as UTF-8",
                error.valid_up_to()
            );
            self.error(index, reason)
        })
    }

    /// Returns the trimmed field at `index`, or `None` when it is empty or the column is
    /// absent.
    pub(crate) fn optional(&self, index: Option<usize>) -> Result<Option<&'a str>, RowError> {
        let Some(index) = index else {
            return Ok(None);
        };
        let value = self.text(index)?.trim();
        Ok((!value.is_empty()).then_some(value))
    }

    /// Builds an error about the column at `index`.
    pub(crate) fn error(&self, index: usize, reason: impl Into<String>) -> RowError {
        let column = self.header.get(index).map(|name| name.trim());
        RowError::new(self.row_number, column, reason)
    }

    /// Builds an error about a date in the column at `index` that could not be parsed.
    pub(crate) fn invalid_date(&self, index: usize, value: &str, expected: &str) -> RowError {
        let reason = format!(
            "invalid date \"{}\": expected {expected}",
            quote_value(value)
        );
        self.error(index, reason)
    }

    /// Builds an error for a record whose field count differs from the header's.
    pub(crate) fn field_count_error(&self) -> RowError {
        let reason = format!(
            "the row has {} fields but the header has {}; the row may be cut short or \
             contain an unescaped quote",
            self.record.len(),
            self.header.len()
        );
        RowError::new(self.row_number, None, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<String> {
        ["Summary", " Comment ", "comment"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn columns_match_ignoring_case_and_spaces() {
        assert_eq!(find_columns(&header(), "Comment"), [1, 2]);
        assert_eq!(find_column(&header(), "summary"), Some(0));
        assert_eq!(find_column(&header(), "Status"), None);
    }

    #[test]
    fn invalid_utf8_names_the_column() {
        let header = header();
        let record = ByteRecord::from(vec![&b"ok"[..], &b"bad \xff"[..]]);
        let fields = RowFields {
            record: &record,
            header: &header,
            row_number: 3,
        };

        let error = fields.text(1).unwrap_err();

        assert_eq!(error.row_number, 3);
        assert_eq!(error.column.as_deref(), Some("Comment"));
        assert!(
            error.reason.contains("invalid UTF-8 at byte 4"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn optional_trims_and_skips_empty() {
        let header = header();
        let record = ByteRecord::from(vec!["  title ", "   "]);
        let fields = RowFields {
            record: &record,
            header: &header,
            row_number: 1,
        };

        assert_eq!(fields.optional(Some(0)).unwrap(), Some("title"));
        assert_eq!(fields.optional(Some(1)).unwrap(), None);
        assert_eq!(fields.optional(Some(2)).unwrap(), None);
        assert_eq!(fields.optional(None).unwrap(), None);
    }
}
