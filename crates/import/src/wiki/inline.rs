//! Conversion of the inline markup within one line of Jira wiki text.
//!
//! The scan is a single pass over the line. Every search for a closing delimiter either
//! consumes the text it passes over or moves a cursor that only goes forward, so a line of
//! n bytes costs O(n) however its markup is (un)balanced.

use crate::mentions::parse_mention;

/// Where the converted line goes, which decides how a `\\` line break is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// A paragraph, list item or quote line: a Markdown hard break (`\` and a newline).
    Paragraph,
    /// A heading, which has to stay on one line: a space.
    Heading,
    /// A table cell, which has to stay on one line: an HTML `<br>`.
    TableCell,
}

/// Jira phrase markers and the Markdown written for them. Jira's `+underline+` has no
/// Markdown form, so its markers are dropped and the text kept.
const MARKERS: [(u8, &str); 4] = [(b'*', "**"), (b'_', "_"), (b'-', "~~"), (b'+', "")];

/// Macros that only style their text, so their tags are dropped.
const STYLE_MACROS: [&str; 3] = ["color", "panel", "anchor"];

/// Sorted byte offsets of one delimiter, read through a cursor that only moves forward.
#[derive(Debug, Default)]
struct Offsets {
    offsets: Vec<usize>,
    cursor: usize,
}

impl Offsets {
    /// Returns the first offset greater than `position`. Callers pass non-decreasing
    /// positions, which keeps the total cost linear.
    fn first_after(&mut self, position: usize) -> Option<usize> {
        while self
            .offsets
            .get(self.cursor)
            .is_some_and(|&offset| offset <= position)
        {
            self.cursor += 1;
        }
        self.offsets.get(self.cursor).copied()
    }
}

/// Phrase (bold, italic, ...) opened and not yet closed.
#[derive(Debug, Clone, Copy)]
struct OpenPhrase {
    marker: usize,
    close_at: usize,
}

/// Converts the inline markup of `line`, which contains no line break, and appends it to `out`.
pub(crate) fn convert_inline(line: &str, context: Context, out: &mut String) {
    let mut converter = InlineConverter::new(line, context, out);
    converter.run();
}

struct InlineConverter<'a> {
    line: &'a str,
    context: Context,
    out: &'a mut String,
    open: Vec<OpenPhrase>,
    /// Valid closing positions for each entry of [`MARKERS`].
    closers: [Offsets; 4],
    open_brackets: Offsets,
    close_brackets: Offsets,
    /// Set once a search for `}}` failed, because every later search would fail too.
    monospace_unclosed: bool,
}

impl<'a> InlineConverter<'a> {
    fn new(line: &'a str, context: Context, out: &'a mut String) -> Self {
        let mut closers: [Offsets; 4] = Default::default();
        let mut open_brackets = Offsets::default();
        let mut close_brackets = Offsets::default();
        for (position, byte) in line.bytes().enumerate() {
            match byte {
                b'[' => open_brackets.offsets.push(position),
                b']' => close_brackets.offsets.push(position),
                _ => {}
            }
            if let Some(marker) = MARKERS.iter().position(|&(m, _)| m == byte) {
                if is_closer(line, position) {
                    closers[marker].offsets.push(position);
                }
            }
        }
        InlineConverter {
            line,
            context,
            out,
            open: Vec::new(),
            closers,
            open_brackets,
            close_brackets,
            monospace_unclosed: false,
        }
    }

    fn run(&mut self) {
        let mut position = 0;
        while position < self.line.len() {
            if self.close_phrases_at(position) {
                position += 1;
                continue;
            }
            position = self.convert_at(position);
        }
        while let Some(phrase) = self.open.pop() {
            self.out.push_str(MARKERS[phrase.marker].1);
        }
    }

    /// Closes phrases whose closer is at `position`, or was skipped inside a link or
    /// monospace span. Returns whether the byte at `position` was a closer.
    fn close_phrases_at(&mut self, position: usize) -> bool {
        while let Some(phrase) = self.open.last().copied() {
            if phrase.close_at > position {
                return false;
            }
            self.open.pop();
            self.out.push_str(MARKERS[phrase.marker].1);
            if phrase.close_at == position {
                return true;
            }
        }
        false
    }

    /// Converts the markup starting at `position` and returns the position after it.
    fn convert_at(&mut self, position: usize) -> usize {
        let rest = &self.line[position..];
        let converted = match rest.as_bytes()[0] {
            b'\\' => Some(self.convert_backslash(position)),
            b'{' => self.convert_brace(position),
            b'[' => self.convert_link(position),
            b'h' => self.copy_bare_url(position),
            byte => MARKERS
                .iter()
                .position(|&(marker, _)| marker == byte)
                .and_then(|marker| self.open_phrase(position, marker)),
        };
        if let Some(next) = converted {
            return next;
        }
        let character = rest.chars().next().unwrap_or_default();
        self.out.push(character);
        position + character.len_utf8().max(1)
    }

    fn convert_backslash(&mut self, position: usize) -> usize {
        let after = &self.line[position + 1..];
        if after.starts_with('\\') {
            self.out.push_str(match self.context {
                Context::Paragraph => "\\\n",
                Context::Heading => " ",
                Context::TableCell => "<br>",
            });
            return position + 2;
        }
        // Jira's escape of a markup character is written the same way in Markdown.
        match after.chars().next() {
            Some(escaped) if escaped.is_ascii_punctuation() => {
                self.out.push('\\');
                self.out.push(escaped);
                position + 2
            }
            _ => {
                self.out.push('\\');
                position + 1
            }
        }
    }

    /// Converts `{{monospace}}` and drops the tags of styling macros such as `{color:red}`.
    fn convert_brace(&mut self, position: usize) -> Option<usize> {
        let rest = &self.line[position..];
        if rest.starts_with("{{") && !self.monospace_unclosed {
            let content_start = position + 2;
            match self.line[content_start..].find("}}") {
                Some(0) => return None,
                Some(length) => {
                    push_code_span(self.out, &self.line[content_start..content_start + length]);
                    return Some(content_start + length + 2);
                }
                None => {
                    self.monospace_unclosed = true;
                    return None;
                }
            }
        }
        // A tag ends at the first `}`; stopping at `{` keeps each byte scanned at most twice.
        let end = rest[1..].find(['{', '}'])? + 1;
        if rest.as_bytes()[end] != b'}' {
            return None;
        }
        let tag = &rest[1..end];
        let name = tag.split(':').next().unwrap_or_default();
        STYLE_MACROS.contains(&name).then_some(position + end + 1)
    }

    /// Converts `[text|url]`, `[url]` and `[~user]`. Other bracketed text stays as it is.
    fn convert_link(&mut self, position: usize) -> Option<usize> {
        let close = self.close_brackets.first_after(position)?;
        let next_open = self.open_brackets.first_after(position);
        if next_open.is_some_and(|open| open < close) {
            return None;
        }
        let markdown = link_to_markdown(&self.line[position + 1..close])?;
        self.out.push_str(&markdown);
        Some(close + 1)
    }

    /// Copies a bare `http(s)://` URL unchanged, so that `_` or `-` inside it are not read
    /// as markup.
    fn copy_bare_url(&mut self, position: usize) -> Option<usize> {
        let rest = &self.line[position..];
        if !(rest.starts_with("http://") || rest.starts_with("https://")) {
            return None;
        }
        if previous_char(self.line, position).is_some_and(char::is_alphanumeric) {
            return None;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.out.push_str(&rest[..end]);
        Some(position + end)
    }

    /// Opens a phrase if `position` can open one of `marker` and a matching closer follows
    /// within the innermost open phrase.
    fn open_phrase(&mut self, position: usize, marker: usize) -> Option<usize> {
        if self.open.iter().any(|phrase| phrase.marker == marker) || !is_opener(self.line, position)
        {
            return None;
        }
        let close_at = self.closers[marker].first_after(position + 1)?;
        if self
            .open
            .last()
            .is_some_and(|outer| close_at >= outer.close_at)
        {
            return None;
        }
        self.open.push(OpenPhrase { marker, close_at });
        self.out.push_str(MARKERS[marker].1);
        Some(position + 1)
    }
}

fn previous_char(line: &str, position: usize) -> Option<char> {
    line[..position].chars().next_back()
}

fn next_char(line: &str, position: usize) -> Option<char> {
    line[position + 1..].chars().next()
}

/// Checks whether the ASCII marker at `position` may open a phrase. It must start the
/// line or follow a non-alphanumeric character. The next character must be neither a space
/// nor the same marker, so `--` and `**` stay literal.
fn is_opener(line: &str, position: usize) -> bool {
    let marker = char::from(line.as_bytes()[position]);
    let starts_word = previous_char(line, position).is_none_or(|c| !c.is_alphanumeric());
    let followed = next_char(line, position).is_some_and(|c| !c.is_whitespace() && c != marker);
    starts_word && followed
}

/// Checks whether the ASCII marker at `position` may close a phrase: it follows a non-space
/// character and ends the line or precedes a non-alphanumeric character.
fn is_closer(line: &str, position: usize) -> bool {
    let after_text = previous_char(line, position).is_some_and(|c| !c.is_whitespace());
    let ends_word = next_char(line, position).is_none_or(|c| !c.is_alphanumeric());
    after_text && ends_word
}

/// Appends `content` as a Markdown code span, with a backtick fence longer than any run of
/// backticks inside it.
fn push_code_span(out: &mut String, content: &str) {
    let fence = "`".repeat(longest_backtick_run(content) + 1);
    let padding = if content.starts_with('`') || content.ends_with('`') {
        " "
    } else {
        ""
    };
    out.push_str(&fence);
    out.push_str(padding);
    out.push_str(content);
    out.push_str(padding);
    out.push_str(&fence);
}

pub(crate) fn longest_backtick_run(text: &str) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for byte in text.bytes() {
        if byte == b'`' {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest
}

/// Converts the text between a link's brackets, or returns `None` when it is no link.
fn link_to_markdown(content: &str) -> Option<String> {
    if let Some(username) = parse_mention(content) {
        return Some(format!("@{username}"));
    }
    if let Some((text, target)) = content.split_once('|') {
        // Jira allows a third part, a tooltip, which Markdown links cannot show.
        let url = target.split('|').next().unwrap_or_default().trim();
        if url.is_empty() {
            return None;
        }
        let text = text.trim();
        let text = if text.is_empty() { url } else { text };
        return Some(format!("[{text}]({})", encode_url(url)));
    }
    let url = content.trim();
    if has_url_scheme(url) {
        Some(format!("<{}>", encode_url(url)))
    } else if starts_with_ignore_case(url, "www.") {
        Some(format!("[{url}](http://{})", encode_url(url)))
    } else {
        None
    }
}

fn has_url_scheme(text: &str) -> bool {
    ["http://", "https://", "ftp://", "mailto:", "file:"]
        .iter()
        .any(|scheme| starts_with_ignore_case(text, scheme))
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Percent-encodes the characters that would end a Markdown link destination early.
fn encode_url(url: &str) -> String {
    let mut encoded = String::with_capacity(url.len());
    for character in url.chars() {
        match character {
            ' ' => encoded.push_str("%20"),
            '(' => encoded.push_str("%28"),
            ')' => encoded.push_str("%29"),
            '<' => encoded.push_str("%3C"),
            '>' => encoded.push_str("%3E"),
            other => encoded.push(other),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(line: &str) -> String {
        let mut out = String::new();
        convert_inline(line, Context::Paragraph, &mut out);
        out
    }

    #[test]
    fn phrases_convert() {
        assert_eq!(inline("a *bold* b"), "a **bold** b");
        assert_eq!(inline("an _italic_ word"), "an _italic_ word");
        assert_eq!(inline("-gone- now"), "~~gone~~ now");
        assert_eq!(inline("+under+"), "under");
        assert_eq!(inline("*_both_*"), "**_both_**");
    }

    #[test]
    fn markers_inside_words_stay_literal() {
        assert_eq!(inline("snake_case_name"), "snake_case_name");
        assert_eq!(inline("well-known-thing"), "well-known-thing");
        assert_eq!(inline("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(inline("C++ and --"), "C++ and --");
        assert_eq!(inline("*unclosed"), "*unclosed");
    }

    #[test]
    fn crossing_phrases_stay_balanced() {
        assert_eq!(inline("*a _b* c_"), "**a _b** c_");
    }

    #[test]
    fn monospace_becomes_code_span() {
        assert_eq!(inline("run {{cargo *test*}} now"), "run `cargo *test*` now");
        assert_eq!(inline("{{a`b}}"), "``a`b``");
        assert_eq!(inline("{{`x}}"), "`` `x ``");
        assert_eq!(inline("{{}} {{open"), "{{}} {{open");
    }

    #[test]
    fn links_convert() {
        assert_eq!(
            inline("[Docs|https://x.io/a b]"),
            "[Docs](https://x.io/a%20b)"
        );
        assert_eq!(inline("[https://x.io]"), "<https://x.io>");
        assert_eq!(inline("[www.x.io]"), "[www.x.io](http://www.x.io)");
        assert_eq!(inline("[T|https://x.io|tip]"), "[T](https://x.io)");
        assert_eq!(inline("[not a link]"), "[not a link]");
        assert_eq!(inline("[a [b|http://x]"), "[a [b](http://x)");
    }

    #[test]
    fn user_links_become_mentions() {
        assert_eq!(
            inline("ping [~ann] and [~accountid:99ab]"),
            "ping @ann and @99ab"
        );
    }

    #[test]
    fn bare_urls_are_copied() {
        assert_eq!(
            inline("see https://x.io/a_b_c-d- ok"),
            "see https://x.io/a_b_c-d- ok"
        );
    }

    #[test]
    fn style_macros_are_dropped() {
        assert_eq!(inline("{color:#ff0000}red{color} text"), "red text");
        assert_eq!(inline("{unknown:x}y"), "{unknown:x}y");
        assert_eq!(inline("{color"), "{color");
    }

    #[test]
    fn line_breaks_follow_context() {
        let mut heading = String::new();
        convert_inline("a\\\\b", Context::Heading, &mut heading);
        let mut cell = String::new();
        convert_inline("a\\\\b", Context::TableCell, &mut cell);

        assert_eq!(inline("a\\\\b"), "a\\\nb");
        assert_eq!(heading, "a b");
        assert_eq!(cell, "a<br>b");
    }

    #[test]
    fn escapes_are_kept() {
        assert_eq!(inline("\\*not bold\\*"), "\\*not bold\\*");
        assert_eq!(inline("C:\\dir"), "C:\\dir");
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(inline("*größe* – ✓ _日本_"), "**größe** – ✓ _日本_");
    }
}
