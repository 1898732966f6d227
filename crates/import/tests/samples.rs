//! Imports the sample Jira exports in `data/samples` and checks the results against an
//! independent read of the same files with the synchronous `csv` crate.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tasklane_import::{
    jira_wiki_to_markdown, ImportFormat, ImportOptions, ImportReader, ImportRow, ImportedTask,
    RowError,
};
use tokio::io::{AsyncRead, ReadBuf};

fn sample_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/samples")
        .join(name)
}

/// Reader that hands out at most `chunk_size` bytes per read, so that chunk boundaries
/// fall inside quoted cells and multibyte characters.
struct ChunkedReader {
    data: Vec<u8>,
    position: usize,
    chunk_size: usize,
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let end = (self.position + self.chunk_size)
            .min(self.data.len())
            .min(self.position + buffer.remaining());
        buffer.put_slice(&self.data[self.position..end]);
        self.position = end;
        Poll::Ready(Ok(()))
    }
}

/// Facts about a sample computed with the `csv` crate, without the importer.
struct Expected {
    distinct_keys: usize,
    records: usize,
    non_empty_comments: usize,
    mention_pairs: usize,
    /// Length in characters of the maximum-length cell, with its row (1-based) and column name.
    longest_cell: (usize, u64, String),
}

fn read_expected(name: &str) -> (Expected, Vec<csv::StringRecord>) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(sample_path(name))
        .unwrap();
    let header = reader.headers().unwrap().clone();
    let key_column = header.iter().position(|n| n == "Issue key").unwrap();
    let comment_columns: Vec<usize> = (0..header.len())
        .filter(|&i| &header[i] == "Comment")
        .collect();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();

    let keys: HashSet<&str> = records.iter().map(|r| &r[key_column]).collect();
    let mut non_empty_comments = 0;
    let mut mention_pairs = 0;
    for record in &records {
        for &column in &comment_columns {
            let cell = &record[column];
            if !cell.trim().is_empty() {
                non_empty_comments += 1;
                mention_pairs += distinct_mentions(cell);
            }
        }
    }
    let mut longest_cell = (0, 0, String::new());
    for (row, record) in records.iter().enumerate() {
        for (column, cell) in record.iter().enumerate() {
            let length = cell.chars().count();
            if length > longest_cell.0 {
                longest_cell = (length, row as u64 + 1, header[column].to_owned());
            }
        }
    }
    let expected = Expected {
        distinct_keys: keys.len(),
        records: records.len(),
        non_empty_comments,
        mention_pairs,
        longest_cell,
    };
    (expected, records)
}

/// Counts distinct `[~name]` mentions with a plain scan, independent of the importer.
fn distinct_mentions(text: &str) -> usize {
    let mut names = HashSet::new();
    for piece in text.split("[~").skip(1) {
        if let Some(end) = piece.find(']') {
            let name = &piece[..end];
            if !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('[') {
                names.insert(name);
            }
        }
    }
    names.len()
}

async fn import(name: &str, chunk_size: usize) -> (Vec<ImportedTask>, Vec<RowError>) {
    let reader = ChunkedReader {
        data: std::fs::read(sample_path(name)).unwrap(),
        position: 0,
        chunk_size,
    };
    let mut import = ImportReader::new(reader, ImportFormat::Jira, ImportOptions::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    while let Some(row) = import.next_row().await {
        match row {
            ImportRow::Task(task) => tasks.push(task),
            ImportRow::Error(error) => errors.push(error),
        }
    }
    (tasks, errors)
}

async fn check_sample(
    name: &str,
    chunk_size: usize,
) -> (Vec<ImportedTask>, Vec<csv::StringRecord>) {
    let (expected, records) = read_expected(name);

    let (tasks, errors) = import(name, chunk_size).await;

    let comments: usize = tasks.iter().map(|t| t.comments.len()).sum();
    let mention_pairs: usize = tasks
        .iter()
        .flat_map(|t| &t.comments)
        .map(|c| c.mentions.len())
        .sum();
    eprintln!(
        "{name}: {} tasks, {comments} comments, {mention_pairs} mention pairs, {} row errors",
        tasks.len(),
        errors.len()
    );
    assert_eq!(errors, Vec::<RowError>::new(), "{name}: row errors");
    assert_eq!(
        tasks.len(),
        expected.distinct_keys,
        "{name}: tasks vs distinct Issue keys"
    );
    assert_eq!(tasks.len(), expected.records, "{name}: tasks vs records");
    assert_eq!(
        comments, expected.non_empty_comments,
        "{name}: non-empty comments"
    );
    assert_eq!(
        mention_pairs, expected.mention_pairs,
        "{name}: mention pairs"
    );
    let row_numbers: Vec<u64> = tasks.iter().map(|t| t.row_number).collect();
    assert_eq!(
        row_numbers,
        (1..=tasks.len() as u64).collect::<Vec<_>>(),
        "{name}: row numbers"
    );
    (tasks, records)
}

#[tokio::test]
async fn server_export_imports_every_issue() {
    let (tasks, _) = check_sample("jira-server-export.csv", 64 * 1024).await;

    let first = &tasks[0];
    assert_eq!(first.project_key.as_deref(), Some("DPSA"));
    assert_eq!(
        first.project_name.as_deref(),
        Some("Export Digital Product")
    );
    assert!(
        tasks.iter().all(|t| t.created_at.is_some()),
        "every issue has Created"
    );
    assert!(
        tasks.iter().all(|t| t.updated_at.is_some()),
        "every issue has Updated"
    );
    assert_eq!(tasks.iter().filter(|t| t.due_date.is_some()).count(), 532);
    let labelled = tasks.iter().filter(|t| !t.labels.is_empty()).count();
    assert!(labelled > 0, "some issues have labels");
    let comment_authors_in_people = tasks.iter().all(|task| {
        task.comments.iter().all(|comment| {
            let author = comment.author.as_deref().unwrap_or_default();
            task.people.iter().any(|person| person.username == author)
        })
    });
    assert!(
        comment_authors_in_people,
        "comment authors are listed as people"
    );
}

#[tokio::test]
async fn export_with_346_columns_imports() {
    let (tasks, _) = check_sample("jira-346-cols.csv", 4096).await;

    assert_eq!(tasks[0].project_key.as_deref(), Some("AOMA2"));
    assert!(
        tasks.iter().all(|t| t.due_date.is_none()),
        "the file has no due dates"
    );
}

#[tokio::test]
async fn huge_cell_comes_through_intact() {
    let name = "jira-huge-cell.csv";
    let (expected, _) = read_expected(name);
    let (longest_length, longest_row, longest_column) = expected.longest_cell.clone();
    assert!(
        longest_length > 140_000,
        "the sample's longest cell has {longest_length} characters"
    );
    assert_eq!(longest_column, "Comment");

    // Chunks of 13 bytes split the cell over thousands of reads.
    let (tasks, records) = check_sample(name, 13).await;

    let raw_cell = records[longest_row as usize - 1]
        .iter()
        .find(|cell| cell.chars().count() == longest_length)
        .unwrap();
    let raw_body = raw_cell.splitn(3, ';').nth(2).unwrap();
    let task = &tasks[longest_row as usize - 1];
    let comment = task
        .comments
        .iter()
        .max_by_key(|c| c.body_markdown.len())
        .unwrap();
    assert_eq!(
        comment.body_markdown,
        jira_wiki_to_markdown(raw_body.trim_end_matches(';'))
    );
    // The cell is a one-column wiki table; every value must come out in order.
    let raw_values: Vec<&str> = raw_body
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| line.trim_matches(|c| c == '|' || c == ' '))
        .collect();
    let markdown_values: Vec<&str> = comment
        .body_markdown
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| line.trim_matches(|c| c == '|' || c == ' '))
        .filter(|value| !value.is_empty() && *value != "---")
        .collect();
    assert!(
        raw_values.len() > 7_000,
        "the cell has {} table rows",
        raw_values.len()
    );
    assert_eq!(markdown_values, raw_values);
}

#[tokio::test]
async fn small_and_large_chunks_give_same_result() {
    let name = "jira-346-cols.csv";

    let (small, _) = import(name, 7).await;
    let (large, _) = import(name, 1 << 20).await;

    assert_eq!(small, large);
}
