//! Splitting of Jira wiki text at the block macros `{code}`, `{noformat}` and `{quote}`.

/// Piece of wiki text between or inside block macros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block<'a> {
    /// Ordinary wiki text.
    Text(&'a str),
    /// A `{quote}` tag, which opens a quote when none is open and closes it otherwise.
    QuoteToggle,
    /// Contents of `{code}` or `{noformat}`, which are shown verbatim. An unclosed block
    /// runs to the end of the input.
    Code {
        language: Option<&'a str>,
        content: &'a str,
    },
}

/// Iterator over the [`Block`]s of a text, in order. It scans each byte a bounded number
/// of times, so it runs in linear time.
pub(crate) struct Blocks<'a> {
    rest: &'a str,
    pending: Option<Block<'a>>,
}

impl<'a> Blocks<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Blocks {
            rest: text,
            pending: None,
        }
    }

    /// Consumes the macro that starts at `start` in `self.rest` and returns its block.
    fn take_macro(&mut self, start: usize, found: Macro<'a>) -> Block<'a> {
        let rest = self.rest;
        let body_start = start + found.tag_len;
        match found.kind {
            MacroKind::Quote => {
                self.rest = &rest[body_start..];
                Block::QuoteToggle
            }
            MacroKind::Code | MacroKind::NoFormat => {
                let closing = if found.kind == MacroKind::Code {
                    "{code}"
                } else {
                    "{noformat}"
                };
                let body = &rest[body_start..];
                let (content, after) = match body.find(closing) {
                    Some(end) => (&body[..end], &body[end + closing.len()..]),
                    None => (body, ""),
                };
                self.rest = after;
                Block::Code {
                    language: found.language,
                    content,
                }
            }
        }
    }
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Block<'a>;

    fn next(&mut self) -> Option<Block<'a>> {
        if let Some(block) = self.pending.take() {
            return Some(block);
        }
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let Some((start, found)) = find_macro(rest) else {
            self.rest = "";
            return Some(Block::Text(rest));
        };
        let block = self.take_macro(start, found);
        if start == 0 {
            return Some(block);
        }
        self.pending = Some(block);
        Some(Block::Text(&rest[..start]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacroKind {
    Code,
    NoFormat,
    Quote,
}

/// Opening tag of a block macro.
#[derive(Debug)]
struct Macro<'a> {
    kind: MacroKind,
    /// Length of the tag in bytes, braces included.
    tag_len: usize,
    language: Option<&'a str>,
}

/// Finds the first block macro tag in `text`, returning its byte offset.
fn find_macro(text: &str) -> Option<(usize, Macro<'_>)> {
    let mut from = 0;
    while let Some(offset) = text[from..].find('{') {
        let start = from + offset;
        if let Some(found) = match_macro(&text[start + 1..]) {
            return Some((start, found));
        }
        from = start + 1;
    }
    None
}

/// Recognizes a block macro tag in `after_brace`, the text following a `{`.
fn match_macro(after_brace: &str) -> Option<Macro<'_>> {
    let (kind, name) = if after_brace.starts_with("code") {
        (MacroKind::Code, "code")
    } else if after_brace.starts_with("noformat") {
        (MacroKind::NoFormat, "noformat")
    } else if after_brace.starts_with("quote}") {
        (MacroKind::Quote, "quote")
    } else {
        return None;
    };
    let after_name = &after_brace[name.len()..];
    if after_name.starts_with('}') {
        return Some(Macro {
            kind,
            tag_len: name.len() + 2,
            language: None,
        });
    }
    let parameters = after_name.strip_prefix(':')?;
    // Parameters end at the first `}`. A `{` or line break before it means this is no tag,
    // and stopping there keeps the scan linear.
    let end = parameters.find(['}', '{', '\n'])?;
    if parameters.as_bytes()[end] != b'}' {
        return None;
    }
    let language = (kind == MacroKind::Code)
        .then(|| code_language(&parameters[..end]))
        .flatten();
    Some(Macro {
        kind,
        tag_len: name.len() + 3 + end,
        language,
    })
}

/// Picks the language from `{code}` parameters such as `java` or `title=A|language=sql`.
fn code_language(parameters: &str) -> Option<&str> {
    let language = parameters
        .split('|')
        .find_map(|parameter| match parameter.split_once('=') {
            Some((key, value)) if matches!(key.trim(), "language" | "lang") => Some(value.trim()),
            Some(_) => None,
            None => Some(parameter.trim()),
        })?;
    // The language becomes a Markdown fence's info string, where only a plain word is safe.
    let is_word = !language.is_empty()
        && language
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '#' | '.' | '_'));
    is_word.then_some(language)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(text: &str) -> Vec<Block<'_>> {
        Blocks::new(text).collect()
    }

    #[test]
    fn blocks_split_text_and_code() {
        let found = blocks("a {code:java}x = 1;{code} b");

        let expected = vec![
            Block::Text("a "),
            Block::Code {
                language: Some("java"),
                content: "x = 1;",
            },
            Block::Text(" b"),
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn blocks_find_quote_and_noformat() {
        let found = blocks("{quote}q{quote}{noformat}*n*{noformat}");

        let expected = vec![
            Block::QuoteToggle,
            Block::Text("q"),
            Block::QuoteToggle,
            Block::Code {
                language: None,
                content: "*n*",
            },
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn unclosed_code_runs_to_end() {
        let found = blocks("{code}a{noformat}b");

        let expected = vec![Block::Code {
            language: None,
            content: "a{noformat}b",
        }];
        assert_eq!(found, expected);
    }

    #[test]
    fn lookalike_tags_are_text() {
        for text in [
            "{codex}",
            "{code:a{code",
            "{quote:x}",
            "{code:a\nb}",
            "{",
            "{code:",
        ] {
            assert_eq!(blocks(text), vec![Block::Text(text)], "text {text:?}");
        }
    }

    #[test]
    fn code_language_comes_from_parameters() {
        assert_eq!(code_language("java"), Some("java"));
        assert_eq!(code_language("title=A.java|language=java"), Some("java"));
        assert_eq!(code_language("title=A.java|borderStyle=solid"), None);
        assert_eq!(code_language("java script"), None);
        assert_eq!(code_language("c++"), Some("c++"));
    }
}
