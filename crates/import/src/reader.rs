//! [`ImportReader`]: the streaming reader that yields one [`ImportRow`] per CSV record.

use csv_async::{AsyncReader, AsyncReaderBuilder, ByteRecord};
use tokio::io::AsyncRead;

use crate::fields::RowFields;
use crate::generic::{self, CsvColumns};
use crate::jira::{self, JiraColumns};
use crate::{ImportError, ImportFormat, ImportOptions, ImportRow, RowError};

/// Byte order mark that some tools write at the start of a UTF-8 file.
const BYTE_ORDER_MARK: char = '\u{feff}';

#[derive(Debug)]
enum Layout {
    Jira(JiraColumns),
    Csv(CsvColumns),
}

/// Streaming reader over any tokio `AsyncRead`.
///
/// It reads one CSV record into memory at a time, so a file of any length can be read in
/// small chunks.
///
/// NOTE: the CSV parser puts no limit on the size of one record, so a single oversized
/// cell is held in memory whole. Callers that accept untrusted uploads should bound the
/// upload size.
pub struct ImportReader<R> {
    csv: AsyncReader<R>,
    header: Vec<String>,
    layout: Layout,
    options: ImportOptions,
    record: ByteRecord,
    rows_read: u64,
    finished: bool,
}

impl<R: AsyncRead + Unpin + Send> ImportReader<R> {
    /// Reads and checks the header row.
    ///
    /// Fails when the input is empty, cannot be read, or lacks a required column:
    /// `Summary` and `Issue key` for [`ImportFormat::Jira`], `title` for
    /// [`ImportFormat::Csv`].
    pub async fn new(
        reader: R,
        format: ImportFormat,
        options: ImportOptions,
    ) -> Result<Self, ImportError> {
        // A flexible reader returns records of any length, so that a short or long row
        // becomes a row error instead of ending the import.
        let mut csv = AsyncReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .create_reader(reader);
        let header_record = csv.byte_headers().await.map_err(ImportError::Header)?;
        let mut header: Vec<String> = header_record
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        if let Some(first) = header.first_mut() {
            if let Some(stripped) = first.strip_prefix(BYTE_ORDER_MARK) {
                *first = stripped.to_owned();
            }
        }
        if header.iter().all(|name| name.trim().is_empty()) {
            return Err(ImportError::EmptyInput);
        }
        let layout = match format {
            ImportFormat::Jira => Layout::Jira(JiraColumns::from_header(&header)?),
            ImportFormat::Csv => Layout::Csv(CsvColumns::from_header(&header)?),
        };
        Ok(ImportReader {
            csv,
            header,
            layout,
            options,
            record: ByteRecord::new(),
            rows_read: 0,
            finished: false,
        })
    }

    /// Reads the next row. Returns `None` at the end of the input.
    ///
    /// A row that cannot be converted yields [`ImportRow::Error`] and the next call goes on
    /// with the following row. A read failure of the underlying reader also yields an
    /// error row, after which the reader returns `None`.
    pub async fn next_row(&mut self) -> Option<ImportRow> {
        if self.finished {
            return None;
        }
        match self.csv.read_byte_record(&mut self.record).await {
            Ok(true) => {
                self.rows_read += 1;
                Some(self.convert_record())
            }
            Ok(false) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.rows_read += 1;
                self.finished = true;
                let reason = format!("failed to read the CSV input: {error}");
                Some(ImportRow::Error(RowError::new(
                    self.rows_read,
                    None,
                    reason,
                )))
            }
        }
    }

    /// Returns the header row as read, with any byte order mark removed.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    fn convert_record(&self) -> ImportRow {
        let fields = RowFields {
            record: &self.record,
            header: &self.header,
            row_number: self.rows_read,
        };
        let task = match &self.layout {
            Layout::Jira(columns) => jira::read_task(columns, &fields, self.options.source_zone),
            Layout::Csv(columns) => generic::read_task(columns, &fields),
        };
        match task {
            Ok(task) => ImportRow::Task(task),
            Err(error) => ImportRow::Error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], format: ImportFormat) -> Result<Vec<ImportRow>, ImportError> {
        let mut reader = ImportReader::new(input, format, ImportOptions::default()).await?;
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row().await {
            rows.push(row);
        }
        Ok(rows)
    }

    #[tokio::test]
    async fn bad_row_does_not_stop_later_rows() {
        let input = b"Summary,Issue key,Created\nA,K-1,10/Oct/25 1:00 PM\n,K-2,\nC,K-3,\n";

        let rows = read_all(input, ImportFormat::Jira).await.unwrap();

        assert_eq!(rows.len(), 3);
        assert!(matches!(&rows[0], ImportRow::Task(task) if task.row_number == 1));
        assert!(matches!(&rows[1], ImportRow::Error(error) if error.row_number == 2));
        assert!(matches!(&rows[2], ImportRow::Task(task) if task.source_key == "K-3"));
    }

    #[tokio::test]
    async fn multiline_cell_counts_as_one_row() {
        let input = b"title,description\n\"A\",\"line 1\nline 2\"\nB,\n";

        let rows = read_all(input, ImportFormat::Csv).await.unwrap();

        assert_eq!(rows.len(), 2);
        let ImportRow::Task(second) = &rows[1] else {
            panic!("expected a task, got {:?}", rows[1]);
        };
        assert_eq!(second.row_number, 2);
        assert_eq!(second.source_key, "2");
    }

    #[tokio::test]
    async fn byte_order_mark_is_ignored() {
        let input = "\u{feff}title\nA\n".as_bytes();

        let rows = read_all(input, ImportFormat::Csv).await.unwrap();

        assert_eq!(rows.len(), 1);
    }

    #[tokio::test]
    async fn empty_input_is_rejected() {
        let error = read_all(b"", ImportFormat::Jira).await.unwrap_err();

        assert!(matches!(error, ImportError::EmptyInput), "{error}");
    }

    #[tokio::test]
    async fn missing_summary_is_rejected() {
        let error = read_all(b"Issue key,Status\nK-1,Open\n", ImportFormat::Jira)
            .await
            .unwrap_err();

        let message = error.to_string();
        assert!(
            message.contains("missing required jira column(s) \"Summary\""),
            "{message}"
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_a_row_error() {
        let input = b"title,status\nA,\xff\nB,Open\n";

        let rows = read_all(input, ImportFormat::Csv).await.unwrap();

        assert!(
            matches!(&rows[0], ImportRow::Error(error) if error.column.as_deref() == Some("status"))
        );
        assert!(matches!(&rows[1], ImportRow::Task(_)));
    }

    #[tokio::test]
    async fn read_failure_is_a_row_error() {
        let failing = tokio_test_reader();

        let rows = read_all_from(failing).await;

        assert_eq!(rows.len(), 2);
        assert!(matches!(&rows[0], ImportRow::Task(_)));
        assert!(matches!(&rows[1], ImportRow::Error(error) if error.reason.contains("disk gone")));
    }

    /// A reader that returns one header and one row, then fails.
    fn tokio_test_reader() -> impl AsyncRead + Unpin + Send {
        let data = std::io::Cursor::new(b"title\nA\n".to_vec());
        let failure = FailingReader;
        tokio::io::AsyncReadExt::chain(data, failure)
    }

    struct FailingReader;

    impl AsyncRead for FailingReader {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
            _buffer: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("disk gone")))
        }
    }

    async fn read_all_from(input: impl AsyncRead + Unpin + Send) -> Vec<ImportRow> {
        let mut reader = ImportReader::new(input, ImportFormat::Csv, ImportOptions::default())
            .await
            .unwrap();
        let mut rows = Vec::new();
        while let Some(row) = reader.next_row().await {
            rows.push(row);
        }
        rows
    }
}
