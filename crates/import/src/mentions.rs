//! Extraction of user mentions (`[~username]`) from Jira wiki text.

use crate::record::DistinctStrings;
use crate::wiki::{Block, Blocks};

/// Prefix of a Jira Cloud mention, `[~accountid:5b10a2844c20165700ede21g]`.
const ACCOUNT_ID_PREFIX: &str = "accountid:";

/// Returns the distinct user names mentioned in `body` as `[~username]` or
/// `[~accountid:id]`, in order of first appearance. For the account-id form the id is the
/// user name. Mentions inside `{code}` and `{noformat}` blocks are not counted, because Jira
/// shows them as plain text.
pub fn count_mentions(body: &str) -> Vec<String> {
    let mut names = DistinctStrings::default();
    for block in Blocks::new(body) {
        if let Block::Text(text) = block {
            collect_mentions(text, &mut names);
        }
    }
    names.into_vec()
}

fn collect_mentions(text: &str, names: &mut DistinctStrings) {
    let mut from = 0;
    while let Some(offset) = text[from..].find("[~") {
        let content_start = from + offset + 1;
        // The mention ends at the next `]`. A `[` or a line break before it means it is not one.
        let Some(stop) = text[content_start..].find(['[', ']', '\n']) else {
            return;
        };
        let stop = content_start + stop;
        if text.as_bytes()[stop] == b']' {
            if let Some(name) = parse_mention(&text[content_start..stop]) {
                names.insert(name);
            }
            from = stop + 1;
        } else {
            from = stop;
        }
    }
}

/// Returns the user name of a mention, given the text between its brackets (`~jsmith`).
pub(crate) fn parse_mention(content: &str) -> Option<&str> {
    let name = content.strip_prefix('~')?;
    let name = match name.get(..ACCOUNT_ID_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(ACCOUNT_ID_PREFIX) => {
            &name[ACCOUNT_ID_PREFIX.len()..]
        }
        _ => name,
    };
    let valid = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '|');
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_distinct_in_order() {
        let body = "Hi [~ann], [~bob] and [~ann] again";

        assert_eq!(count_mentions(body), ["ann", "bob"]);
    }

    #[test]
    fn account_id_mention_keeps_the_id() {
        let body = "cc [~accountid:5b10a2844c20165700ede21g]";

        assert_eq!(count_mentions(body), ["5b10a2844c20165700ede21g"]);
    }

    #[test]
    fn mention_like_text_is_ignored() {
        let cases = [
            "[~]", "[~ ann]", "[~ann", "[~a\nb]", "[~a [~b", "~ann", "[~a|b]",
        ];
        for body in cases {
            assert!(count_mentions(body).is_empty(), "body {body:?}");
        }
    }

    #[test]
    fn mention_after_broken_one_is_found() {
        assert_eq!(count_mentions("[~a [~bob]"), ["bob"]);
    }

    #[test]
    fn mentions_in_code_blocks_are_ignored() {
        let body = "{code}[~ann]{code} [~bob] {noformat}[~carl]{noformat}";

        assert_eq!(count_mentions(body), ["bob"]);
    }

    #[test]
    fn mentions_handle_multibyte_text() {
        assert_eq!(count_mentions("héllo [~jürgen] ✓"), ["jürgen"]);
    }
}
