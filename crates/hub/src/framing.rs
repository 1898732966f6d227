//! Text framing of the SignalR JSON protocol: every message, including the handshake, ends
//! with the ASCII record separator 0x1E. One WebSocket message may carry several records,
//! and a record may be split across WebSocket messages.

/// The ASCII record separator that terminates every JSON hub message.
pub const RECORD_SEPARATOR: char = '\u{1e}';

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("hub message exceeds the maximum message size of {max} bytes")]
    MessageTooLarge { max: usize },
    #[error("invalid hub message length prefix: more than 5 bytes or above 2^31 - 1")]
    InvalidLengthPrefix,
}

/// Splits incoming text into complete records and keeps the unterminated rest until more
/// text arrives.
#[derive(Debug)]
pub struct RecordReader {
    partial: String,
    max_record_len: usize,
}

impl RecordReader {
    /// Creates a reader that rejects records longer than `max_record_len` bytes, counted
    /// without the separator.
    pub fn new(max_record_len: usize) -> Self {
        Self {
            partial: String::new(),
            max_record_len,
        }
    }

    /// Appends `text` and returns the records it completes, in order, without separators.
    ///
    /// After an error the reader's state is unspecified, so the caller closes the connection.
    pub fn push(&mut self, text: &str) -> Result<Vec<String>, FramingError> {
        let mut records = Vec::new();
        let mut rest = text;

        while let Some(end) = rest.find(RECORD_SEPARATOR) {
            let (head, tail) = rest.split_at(end);
            self.check_len(self.partial.len() + head.len())?;

            let mut record = std::mem::take(&mut self.partial);
            record.push_str(head);
            records.push(record);

            rest = &tail[RECORD_SEPARATOR.len_utf8()..];
        }

        self.check_len(self.partial.len() + rest.len())?;
        self.partial.push_str(rest);
        Ok(records)
    }

    /// Returns whether an unterminated record is waiting for more text.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    fn check_len(&self, len: usize) -> Result<(), FramingError> {
        if len > self.max_record_len {
            return Err(FramingError::MessageTooLarge {
                max: self.max_record_len,
            });
        }
        Ok(())
    }
}

/// Appends the record separator to a serialized JSON message.
pub fn terminate(mut json: String) -> String {
    json.push(RECORD_SEPARATOR);
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_splits_multiple_records() {
        let mut reader = RecordReader::new(1024);

        let records = reader.push("{\"type\":6}\u{1e}{\"type\":7}\u{1e}").unwrap();

        assert_eq!(records, vec!["{\"type\":6}", "{\"type\":7}"]);
        assert!(!reader.has_partial());
    }

    #[test]
    fn push_keeps_partial_record() {
        let mut reader = RecordReader::new(1024);

        let first = reader.push("{\"type\":6}\u{1e}{\"ty").unwrap();
        let second = reader.push("pe\":").unwrap();
        let third = reader.push("7}\u{1e}").unwrap();

        assert_eq!(first, vec!["{\"type\":6}"]);
        assert!(second.is_empty());
        assert_eq!(third, vec!["{\"type\":7}"]);
        assert!(!reader.has_partial());
    }

    #[test]
    fn push_without_separator_returns_nothing() {
        let mut reader = RecordReader::new(1024);

        let records = reader.push("{\"protocol\":\"json\"").unwrap();

        assert!(records.is_empty());
        assert!(reader.has_partial());
    }

    #[test]
    fn push_returns_empty_record_between_separators() {
        let mut reader = RecordReader::new(1024);

        let records = reader.push("\u{1e}\u{1e}").unwrap();

        assert_eq!(records, vec!["", ""]);
    }

    #[test]
    fn push_keeps_multibyte_text_intact() {
        let mut reader = RecordReader::new(1024);

        let first = reader.push("{\"a\":\"é").unwrap();
        let second = reader.push("ü\"}\u{1e}").unwrap();

        assert!(first.is_empty());
        assert_eq!(second, vec!["{\"a\":\"éü\"}"]);
    }

    #[test]
    fn push_rejects_oversized_complete_record() {
        let mut reader = RecordReader::new(4);

        let result = reader.push("12345\u{1e}");

        assert_eq!(result, Err(FramingError::MessageTooLarge { max: 4 }));
    }

    #[test]
    fn push_rejects_oversized_partial_record() {
        let mut reader = RecordReader::new(4);

        reader.push("123").unwrap();
        let result = reader.push("45");

        assert_eq!(result, Err(FramingError::MessageTooLarge { max: 4 }));
    }

    #[test]
    fn push_accepts_record_at_limit() {
        let mut reader = RecordReader::new(4);

        let records = reader.push("12").unwrap();
        let more = reader.push("34\u{1e}").unwrap();

        assert!(records.is_empty());
        assert_eq!(more, vec!["1234"]);
    }

    #[test]
    fn terminate_appends_separator() {
        assert_eq!(terminate("{}".to_owned()), "{}\u{1e}");
    }
}
