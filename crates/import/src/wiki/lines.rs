//! Conversion of Jira wiki text line by line: headings, lists, quotes, tables and rules.

use super::inline::{convert_inline, Context};

/// Line-oriented Markdown writer that remembers the open quote and table.
pub(crate) struct LineConverter {
    out: String,
    in_quote: bool,
    in_table: bool,
    last_line_blank: bool,
}

impl LineConverter {
    pub(crate) fn new(capacity: usize) -> Self {
        LineConverter {
            out: String::with_capacity(capacity + capacity / 8),
            in_quote: false,
            in_table: false,
            last_line_blank: true,
        }
    }

    /// Returns the Markdown without trailing line breaks.
    pub(crate) fn finish(mut self) -> String {
        let trimmed_length = self.out.trim_end_matches('\n').len();
        self.out.truncate(trimmed_length);
        self.out
    }

    /// Writes `text` as one or more output lines, each prefixed with `> ` inside a quote.
    pub(crate) fn write_line(&mut self, text: &str) {
        for line in text.split('\n') {
            if self.in_quote {
                self.out.push('>');
                if !line.is_empty() {
                    self.out.push(' ');
                }
            }
            self.out.push_str(line);
            self.out.push('\n');
        }
        self.last_line_blank = text.is_empty();
    }

    fn write_blank_line(&mut self) {
        if !self.last_line_blank {
            self.write_line("");
        }
    }

    /// Ends an open table with a blank line, because Markdown would read the next line of
    /// text as another table row.
    pub(crate) fn end_table(&mut self) {
        if self.in_table {
            self.in_table = false;
            self.write_blank_line();
        }
    }

    pub(crate) fn toggle_quote(&mut self) {
        self.end_table();
        if self.in_quote {
            self.in_quote = false;
            // Without a blank line the next paragraph would continue the quote.
            self.write_blank_line();
        } else {
            self.in_quote = true;
        }
    }

    /// Converts one line of wiki text that contains no line break.
    pub(crate) fn convert_line(&mut self, line: &str) {
        // Jira ignores spaces around a line, but Markdown reads four leading spaces as a
        // code block and two trailing spaces as a line break.
        let line = line.trim();
        if let Some((is_header, cells)) = split_table_row(line) {
            self.write_table_row(is_header, &cells);
            return;
        }
        self.end_table();
        if line.is_empty() {
            self.write_line("");
            return;
        }
        let mut converted = String::with_capacity(line.len() + 8);
        if let Some((level, text)) = heading(line) {
            converted.push_str(&"#".repeat(level));
            converted.push(' ');
            convert_inline(text, Context::Heading, &mut converted);
        } else if let Some(text) = block_quote(line) {
            converted.push_str("> ");
            convert_inline(text, Context::Paragraph, &mut converted);
        } else if let Some((markers, text)) = list_item(line) {
            push_list_marker(&mut converted, markers);
            convert_inline(text, Context::Paragraph, &mut converted);
        } else if is_rule(line) {
            // A blank line first, or Markdown would read `---` as a heading underline.
            self.write_blank_line();
            converted.push_str("---");
        } else {
            if is_setext_underline(line) {
                converted.push('\\');
            }
            convert_inline(line, Context::Paragraph, &mut converted);
        }
        self.write_line(&converted);
    }

    fn write_table_row(&mut self, is_header: bool, cells: &[&str]) {
        let row = markdown_table_row(cells);
        if self.in_table {
            self.write_line(&row);
            return;
        }
        self.write_blank_line();
        let column_count = cells.len().max(1);
        if is_header {
            self.write_line(&row);
        } else {
            // Markdown tables need a header row; Jira tables may start without one.
            self.write_line(&format!("|{}", "   |".repeat(column_count)));
        }
        self.write_line(&format!("|{}", " --- |".repeat(column_count)));
        if !is_header {
            self.write_line(&row);
        }
        self.in_table = true;
    }
}

/// Recognizes `h1.` to `h6.` followed by a space or the end of the line.
fn heading(line: &str) -> Option<(usize, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || bytes[0] != b'h' || bytes[2] != b'.' {
        return None;
    }
    let level = match bytes[1] {
        digit @ b'1'..=b'6' => usize::from(digit - b'0'),
        _ => return None,
    };
    let text = &line[3..];
    (text.is_empty() || text.starts_with(char::is_whitespace)).then(|| (level, text.trim()))
}

/// Recognizes `bq.` followed by a space or the end of the line.
fn block_quote(line: &str) -> Option<&str> {
    let text = line.strip_prefix("bq.")?;
    (text.is_empty() || text.starts_with(char::is_whitespace)).then(|| text.trim_start())
}

/// Recognizes a list item: a run of `*` and `#` markers, or a single `-`, then whitespace.
fn list_item(line: &str) -> Option<(&str, &str)> {
    let marker_end = line
        .find(|c: char| !matches!(c, '*' | '#' | '-'))
        .unwrap_or(line.len());
    let markers = &line[..marker_end];
    let rest = &line[marker_end..];
    let valid_markers = markers == "-" || (!markers.is_empty() && !markers.contains('-'));
    (valid_markers && rest.starts_with(char::is_whitespace)).then(|| (markers, rest.trim_start()))
}

/// Writes the Markdown marker for a list item nested as deep as `markers` is long. Each
/// outer level indents by the width of its own marker, `- ` or `1. `.
fn push_list_marker(out: &mut String, markers: &str) {
    let (outer, last) = markers.split_at(markers.len() - 1);
    for marker in outer.chars() {
        out.push_str(if marker == '#' { "   " } else { "  " });
    }
    out.push_str(if last == "#" { "1. " } else { "- " });
}

/// Checks whether the line is a Jira horizontal rule, four or more dashes.
fn is_rule(line: &str) -> bool {
    let line = line.trim_end();
    line.len() >= 4 && line.bytes().all(|byte| byte == b'-')
}

/// Checks whether Markdown would read the line as a heading underline (`===` or `--`).
fn is_setext_underline(line: &str) -> bool {
    let line = line.trim_end();
    !line.is_empty() && (line.bytes().all(|b| b == b'=') || line.bytes().all(|b| b == b'-'))
}

/// Splits a Jira table row (`||h1||h2||` or `|c1|c2|`) into its cells. A `|` inside a
/// link or `{{monospace}}` does not separate cells.
fn split_table_row(line: &str) -> Option<(bool, Vec<&str>)> {
    if !line.starts_with('|') {
        return None;
    }
    let is_header = line.starts_with("||");

    let bytes = line.as_bytes();
    let mut cells = Vec::new();
    let mut bracket_depth = 0usize;
    let mut in_monospace = false;
    let mut cell_start = 0;
    let mut position = 0;

    while position < bytes.len() {
        let byte = bytes[position];
        let next = bytes.get(position + 1).copied();
        match byte {
            b'{' if next == Some(b'{') && !in_monospace => in_monospace = true,
            b'}' if next == Some(b'}') && in_monospace => in_monospace = false,
            b'[' if !in_monospace => bracket_depth += 1,
            b']' if !in_monospace => bracket_depth = bracket_depth.saturating_sub(1),
            b'|' if !in_monospace && bracket_depth == 0 => {
                cells.push(&line[cell_start..position]);
                let separator_len = if next == Some(b'|') { 2 } else { 1 };
                position += separator_len;
                cell_start = position;
                continue;
            }
            _ => {}
        }
        position += if matches!(byte, b'{' | b'}') && next == Some(byte) {
            2
        } else {
            1
        };
    }
    cells.push(&line[cell_start..]);

    // The text before the first separator is empty, and so is the text after the last one
    // unless the row has trailing text.
    cells.remove(0);
    if cells.last().is_some_and(|cell| cell.trim().is_empty()) {
        cells.pop();
    }
    Some((is_header, cells))
}

/// Formats cells as a Markdown table row, escaping `|` so it cannot split a cell.
fn markdown_table_row(cells: &[&str]) -> String {
    let mut row = String::from("|");
    for cell in cells {
        let mut converted = String::new();
        convert_inline(cell.trim(), Context::TableCell, &mut converted);
        row.push(' ');
        row.push_str(&converted.replace('|', "\\|"));
        row.push_str(" |");
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_row_splits_outside_links() {
        let (is_header, cells) = split_table_row("|[a|http://x]|{{b|c}}|d|").unwrap();

        assert!(!is_header);
        assert_eq!(cells, ["[a|http://x]", "{{b|c}}", "d"]);
    }

    #[test]
    fn header_row_splits_on_double_bars() {
        let (is_header, cells) = split_table_row("||A||B||").unwrap();

        assert!(is_header);
        assert_eq!(cells, ["A", "B"]);
    }

    #[test]
    fn table_row_keeps_trailing_text() {
        let (_, cells) = split_table_row("|a|b").unwrap();

        assert_eq!(cells, ["a", "b"]);
    }

    #[test]
    fn list_item_needs_space_after_markers() {
        assert_eq!(list_item("** deep"), Some(("**", "deep")));
        assert_eq!(list_item("- dash"), Some(("-", "dash")));
        assert_eq!(list_item("*bold*"), None);
        assert_eq!(list_item("-- dashes"), None);
        assert_eq!(list_item("#* mixed"), Some(("#*", "mixed")));
    }

    #[test]
    fn heading_needs_level_and_space() {
        assert_eq!(heading("h2. Title"), Some((2, "Title")));
        assert_eq!(heading("h7. Title"), None);
        assert_eq!(heading("h2.Title"), None);
        assert_eq!(heading("h1."), Some((1, "")));
    }
}
