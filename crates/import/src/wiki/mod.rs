//! Conversion of Jira wiki markup into GitHub-flavoured Markdown.
//!
//! Supported markup:
//! - headings `h1.` to `h6.`, quotes `bq.` and `{quote}`, rules `----`
//! - `*bold*`, `_italic_`, `-strike-`, `+underline+` (text kept), `{{monospace}}`
//! - `{code}` and `{noformat}` blocks, copied verbatim into fenced code blocks
//! - links `[text|url]` and `[url]`, mentions `[~user]`
//! - lists `*`, `#` and `-`, nested by repeating the marker
//! - tables `||header||` and `|cell|`, line breaks `\\`
//! - `{color}`, `{panel}` and `{anchor}` tags, dropped with their text kept
//!
//! Other markup, such as images (`!image.png!`) and other macros, is kept as written.
//!
//! The conversion runs in time linear in the input and accepts any text.

mod blocks;
mod inline;
mod lines;

pub(crate) use blocks::{Block, Blocks};

use inline::longest_backtick_run;
use lines::LineConverter;

/// Converts Jira wiki markup to Markdown.
///
/// The text inside `{code}` and `{noformat}` is copied unchanged into fenced code blocks.
/// Jira table rows must each fit on one line; a cell that continues on the next line
/// ends the row there. Raw HTML in the input is not escaped.
pub fn jira_wiki_to_markdown(input: &str) -> String {
    let text = input.replace("\r\n", "\n").replace('\r', "\n");
    let mut converter = LineConverter::new(text.len());
    let mut after_block = false;
    for block in Blocks::new(&text) {
        match block {
            Block::Text(chunk) => convert_chunk(&mut converter, chunk, after_block),
            Block::QuoteToggle => converter.toggle_quote(),
            Block::Code { language, content } => write_fence(&mut converter, language, content),
        }
        after_block = !matches!(block, Block::Text(_));
    }
    converter.finish()
}

/// Converts the lines of a text chunk. A chunk that follows a block macro starts on that
/// macro's line, so the line break ending that line is not a line of its own.
fn convert_chunk(converter: &mut LineConverter, chunk: &str, after_block: bool) {
    let mut chunk = chunk;
    if after_block {
        chunk = chunk.strip_prefix('\n').unwrap_or(chunk);
    }
    if chunk.is_empty() {
        return;
    }
    let chunk = chunk.strip_suffix('\n').unwrap_or(chunk);
    for line in chunk.split('\n') {
        converter.convert_line(line);
    }
}

/// Writes the contents of a `{code}` or `{noformat}` block as a fenced code block, with a
/// fence longer than any run of backticks inside so the contents cannot close it.
fn write_fence(converter: &mut LineConverter, language: Option<&str>, content: &str) {
    let content = content.strip_prefix('\n').unwrap_or(content);
    let content = content.strip_suffix('\n').unwrap_or(content);
    let fence = "`".repeat(longest_backtick_run(content).max(2) + 1);
    converter.end_table();
    converter.write_line(&format!("{fence}{}", language.unwrap_or_default()));
    if !content.is_empty() {
        converter.write_line(content);
    }
    converter.write_line(&fence);
}

#[cfg(test)]
mod tests;
