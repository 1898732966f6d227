//! Names that users type and other rows refer to, validated once at the edge.

use std::fmt;

/// A name that failed validation, with the rule it broke.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// A project's short key, such as `DPSA`: an upper-case letter, then 1 to 9 letters or digits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectKey(String);

impl ProjectKey {
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
        let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if first_ok && rest_ok && (2..=10).contains(&value.len()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidName {
                kind: "project key",
                value: value.to_owned(),
                rule: "2 to 10 upper-case letters or digits, starting with a letter",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's @handle within a tenant: a letter or digit, then up to 63 of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle(String);

impl Handle {
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && value.len() <= 64 {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidName {
                kind: "handle",
                value: value.to_owned(),
                rule: "up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            })
        }
    }

    /// Derives a valid handle from free text such as an e-mail's local part or a Jira user name.
    pub fn derive_from(text: &str) -> Self {
        let mut handle: String = text
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .take(64)
            .collect();
        if handle.is_empty() {
            handle.push_str("user");
        }
        Self(handle)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Finds the distinct `@handle` mentions in a comment body, in order of first appearance.
///
/// A handle may end in `.`, `_` or `-`, which in prose is often punctuation instead, so
/// callers should try each mention as written and then [`trim_mention`] of it.
pub fn find_mentions(body: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for (at, _) in body.match_indices('@') {
        let preceded_by_word = body[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '.');
        if preceded_by_word {
            continue; // an e-mail address, not a mention
        }
        let rest = &body[at + 1..];
        let handle: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        // `@José` is not a mention: a handle is ASCII, so a letter right after it means the text
        // is a longer word, not a handle followed by punctuation.
        let continues_as_word = rest[handle.len()..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric);
        if continues_as_word || Handle::parse(&handle).is_err() {
            continue;
        }
        if !found.iter().any(|h| h.eq_ignore_ascii_case(&handle)) {
            found.push(handle);
        }
    }
    found
}

/// Strips trailing `.`, `_` and `-` from a mention, as in "thanks @alice."
pub fn trim_mention(mention: &str) -> &str {
    mention.trim_end_matches(['.', '-', '_'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_key_rules() {
        assert!(ProjectKey::parse("DPSA").is_ok());
        assert!(ProjectKey::parse("A1").is_ok());
        assert!(ProjectKey::parse("dpsa").is_err());
        assert!(ProjectKey::parse("1AB").is_err());
        assert!(ProjectKey::parse("A").is_err());
        assert!(ProjectKey::parse("ABCDEFGHIJK").is_err());
    }

    #[test]
    fn handle_derivation_is_valid() {
        for text in ["john.doe", "José Núñez", "__x", "", "a b c"] {
            let handle = Handle::derive_from(text);
            assert!(
                Handle::parse(handle.as_str()).is_ok(),
                "{text:?} gave {handle:?}"
            );
        }
    }

    #[test]
    fn mentions_found_once_and_emails_skipped() {
        let body = "hi @alice and @bob, ping @Alice again; mail me at carol@example.com. @dave.";
        assert_eq!(find_mentions(body), vec!["alice", "bob", "dave."]);
        assert_eq!(trim_mention("dave."), "dave");
    }

    #[test]
    fn mentions_skip_non_ascii_words() {
        assert!(find_mentions("hello @José and é@ok").is_empty());
        assert_eq!(
            find_mentions("@zed- @eve. @carol_"),
            vec!["zed-", "eve.", "carol_"]
        );
    }
}
