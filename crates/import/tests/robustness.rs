//! Feeds cut-short files, random bytes and random wiki markup to the importer and checks
//! that it reports errors instead of panicking.

use std::path::PathBuf;

use tasklane_import::{
    count_mentions, jira_wiki_to_markdown, ImportError, ImportFormat, ImportOptions, ImportReader,
    ImportRow,
};

/// Deterministic xorshift generator, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[derive(Debug, Default)]
struct Outcome {
    tasks: usize,
    errors: Vec<u64>,
}

async fn import(input: &[u8], format: ImportFormat) -> Result<Outcome, ImportError> {
    let mut reader = ImportReader::new(input, format, ImportOptions::default()).await?;
    let mut outcome = Outcome::default();
    while let Some(row) = reader.next_row().await {
        match row {
            ImportRow::Task(_) => outcome.tasks += 1,
            ImportRow::Error(error) => outcome.errors.push(error.row_number),
        }
    }
    Ok(outcome)
}

/// Reads `input` with the `csv` crate and returns the field count of its header and of
/// each record.
fn field_counts(input: &[u8]) -> (usize, Vec<usize>) {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header_len = reader.byte_headers().map(|h| h.len()).unwrap_or(0);
    let counts = reader
        .byte_records()
        .map(|r| r.map(|r| r.len()).unwrap_or(0))
        .collect();
    (header_len, counts)
}

#[tokio::test]
async fn cut_short_export_reports_last_row() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/samples/jira-346-cols.csv");
    let data = std::fs::read(path).unwrap();
    let mut random = Random(0x5eed_1234);
    let mut cuts: Vec<usize> = (0..40).map(|_| random.below(data.len())).collect();
    cuts.extend([0, 1, 7, 100, 3_000, data.len() - 1]);

    for cut in cuts {
        let prefix = &data[..cut];

        let result = import(prefix, ImportFormat::Jira).await;

        let (header_len, counts) = field_counts(prefix);
        let Ok(outcome) = result else {
            // Only a cut inside the header row may fail the whole import.
            assert!(
                counts.is_empty(),
                "cut {cut}: import failed with {} data rows",
                counts.len()
            );
            continue;
        };
        assert_eq!(
            outcome.tasks + outcome.errors.len(),
            counts.len(),
            "cut {cut}: row count"
        );
        let last_row = counts.len() as u64;
        assert!(
            outcome.errors.iter().all(|&row| row == last_row),
            "cut {cut}: {:?}",
            outcome.errors
        );
        if counts.last().is_some_and(|&count| count != header_len) {
            assert_eq!(
                outcome.errors,
                [last_row],
                "cut {cut}: short last row is an error"
            );
        }
    }
}

#[tokio::test]
async fn random_bytes_fail_cleanly() {
    let mut random = Random(0xdead_beef);
    for round in 0..200 {
        let length = random.below(400);
        let input: Vec<u8> = (0..length).map(|_| random.next() as u8).collect();

        let result = import(&input, ImportFormat::Jira).await;

        assert!(
            result.is_err(),
            "round {round}: random bytes passed as a Jira header"
        );
    }
}

#[tokio::test]
async fn garbage_rows_become_row_errors() {
    let mut random = Random(0x0bad_cafe);
    let alphabet = b"ab,\"\n\r;|\xc3\xa9\xff ";
    let mut total_errors = 0;
    for round in 0..200 {
        let mut input = b"Summary,Issue key,Created,Comment\n".to_vec();
        let length = 1 + random.below(300);
        input.extend((0..length).map(|_| alphabet[random.below(alphabet.len())]));

        let outcome = import(&input, ImportFormat::Jira).await.unwrap();

        let (header_len, counts) = field_counts(&input);
        let wrong_size = counts.iter().filter(|&&count| count != header_len).count();
        assert_eq!(
            outcome.tasks + outcome.errors.len(),
            counts.len(),
            "round {round}: row count"
        );
        assert!(
            outcome.errors.len() >= wrong_size,
            "round {round}: a wrong-size row passed"
        );
        total_errors += outcome.errors.len();
    }
    assert!(total_errors > 0, "garbage gave no row error at all");
}

#[test]
fn random_markup_converts_without_panic() {
    let pieces = [
        "*",
        "_",
        "-",
        "+",
        "[",
        "]",
        "|",
        "||",
        "{{",
        "}}",
        "{code}",
        "{code:java}",
        "{noformat}",
        "{quote}",
        "{color:red}",
        "{color}",
        "[~",
        "\\\\",
        "\\",
        "h1. ",
        "bq. ",
        "# ",
        "** ",
        "\n",
        "\r\n",
        " ",
        "http://x.io/a_b",
        "é",
        "日本",
        "✓",
        "`",
        "a",
        "word",
        "----",
    ];
    let mut random = Random(0x1234_5678);
    for _ in 0..2_000 {
        let count = random.below(60);
        let input: String = (0..count)
            .map(|_| pieces[random.below(pieces.len())])
            .collect();

        jira_wiki_to_markdown(&input);
        count_mentions(&input);
    }
}
