//! Password hashing with argon2id.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes; long enough for any passphrase, short enough that
/// hashing it cannot be used to exhaust the server.
pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password is too common or too easy to guess{hint}: zxcvbn scores it {score} of 4 and at least {MIN_STRENGTH_SCORE} is required; choose a longer passphrase of unrelated words")]
    TooWeak { score: u8, hint: String },
    #[error("password hashing failed")]
    Hashing,
}

/// Lowest zxcvbn score a new password needs. Score 2 means more than 10^6 estimated guesses,
/// so the passwords on zxcvbn's built-in list of common passwords, and simple variations of
/// them, score lower and are rejected.
pub const MIN_STRENGTH_SCORE: u8 = 2;

/// Words that an attacker who targets this service would try first, so a password built on
/// them counts as easy to guess.
pub const CONTEXT_WORDS: &[&str] = &["tasklane", "task", "lane"];

/// Checks a new password: its length, then its strength as zxcvbn estimates it, counting
/// `CONTEXT_WORDS` and `user_inputs` (the person's e-mail address and name) as words an
/// attacker would try.
///
/// zxcvbn 3.1 reads only the first 100 characters, so a longer password is judged by them.
pub fn check_new_password(password: &str, user_inputs: &[&str]) -> Result<(), PasswordError> {
    check_length(password)?;
    let mut inputs: Vec<&str> = CONTEXT_WORDS.to_vec();
    inputs.extend_from_slice(user_inputs);
    // The local part and the domain of an e-mail address are guessable on their own.
    for input in user_inputs {
        if let Some((local, domain)) = input.split_once('@') {
            inputs.push(local);
            inputs.push(domain);
        }
    }
    let entropy = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(entropy.score());
    if score >= MIN_STRENGTH_SCORE {
        return Ok(());
    }
    let hint = entropy
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| format!(" ({})", warning.to_string().trim_end_matches('.')))
        .unwrap_or_default();
    Err(PasswordError::TooWeak { score, hint })
}

fn check_length(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// argon2id with 19 MiB of memory, 2 iterations and 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("argon2 parameters are valid constants");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password's length, then hashes it with a random salt. The whole password is
/// hashed, never a truncated prefix.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_length(password)?;
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError::Hashing)
}

/// Returns whether a stored hash was made with other parameters than [`hash_password`]
/// uses now, so that a successful login should replace it. A hash that does not parse
/// returns false, because no password verifies against it.
pub fn needs_rehash(stored_hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored_hash) else {
        return false;
    };
    let current = hasher();
    let same_algorithm = parsed.algorithm == Algorithm::Argon2id.ident();
    let same_version = parsed.version == Some(Version::V0x13.into());
    let same_params = Params::try_from(&parsed).is_ok_and(|params| {
        let expected = current.params();
        params.m_cost() == expected.m_cost()
            && params.t_cost() == expected.t_cost()
            && params.p_cost() == expected.p_cost()
    });
    !(same_algorithm && same_version && same_params)
}

/// Verifies a password against a stored hash. With no stored hash (unknown account), it
/// verifies against a fixed dummy hash, so both cases cost the same work.
pub fn verify_password(password: &str, stored_hash: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let (hash, known) = match stored_hash {
        Some(hash) => (hash, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matches = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    matches && known
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("dummy password for unknown accounts").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weaker_hash_needs_rehash() {
        let weak_params = Params::new(8 * 1024, 1, 1, None).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, weak_params)
            .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify_password("correct horse battery", Some(&weak)));
        assert!(needs_rehash(&weak));
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"correct horse battery", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(needs_rehash(&argon2i));

        let current = hash_password("correct horse battery").unwrap();
        assert!(!needs_rehash(&current));
        assert!(!needs_rehash("not a hash"));
    }

    #[test]
    fn hash_then_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("wrong horse battery", Some(&hash)));
    }

    #[test]
    fn unknown_account_never_verifies() {
        assert!(!verify_password(
            "dummy password for unknown accounts",
            None
        ));
    }

    #[test]
    fn length_limits() {
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            hash_password(&"x".repeat(2000)),
            Err(PasswordError::TooLong)
        ));
    }

    #[test]
    fn common_passwords_rejected() {
        for common in [
            "password",
            "12345678",
            "qwertyuiop",
            "Password1",
            "iloveyou",
        ] {
            let result = check_new_password(common, &[]);
            assert!(
                matches!(result, Err(PasswordError::TooWeak { .. })),
                "{common:?} was accepted"
            );
        }
    }

    #[test]
    fn personal_details_count_as_guessable() {
        let email = "marguerite.oyelaran@example.com";
        assert!(check_new_password("marguerite.oyelaran", &[]).is_ok());
        assert!(matches!(
            check_new_password("marguerite.oyelaran", &[email, "Marguerite Oyelaran"]),
            Err(PasswordError::TooWeak { .. })
        ));
    }

    #[test]
    fn long_passphrases_accepted_whole() {
        assert!(check_new_password("correct horse battery", &[]).is_ok());
        let long = "plum-vortex-quill-".repeat(3) + &"x".repeat(1024 - 54);
        assert_eq!(long.len(), 1024);
        assert!(check_new_password(&long, &[]).is_ok());
        let hash = hash_password(&long).unwrap();
        assert!(verify_password(&long, Some(&hash)));
        // A password that differs only after the first 100 characters is a different one.
        let changed = long[..1023].to_owned() + "y";
        assert!(!verify_password(&changed, Some(&hash)));
        assert!(matches!(
            check_new_password(&(long + "z"), &[]),
            Err(PasswordError::TooLong)
        ));
    }
}
