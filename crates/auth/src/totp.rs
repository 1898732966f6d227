//! Time-based one-time passwords (RFC 6238) as an optional second factor.
//!
//! Codes use SHA-1, 6 digits and 30-second steps, the defaults of RFC 6238 that
//! authenticator apps expect, and one step of clock skew is accepted either way. Each
//! accepted code's time step is returned so that the caller can store it and reject the same
//! or an older step later, because RFC 6238 section 5.2 requires a code to be accepted once.

use rand::RngCore as _;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Secret length in bytes: 160 bits, the HMAC-SHA-1 key size RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
const DIGITS: u8 = 6;
const STEP_SECONDS: u64 = 30;
const SKEW_STEPS: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TotpSetupError {
    #[error("the stored TOTP secret is invalid")]
    InvalidSecret,
    #[error("the account name cannot be used in an otpauth URI: {0}")]
    InvalidAccountName(String),
}

/// Generates a new random secret.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// Encodes a secret in base32, the form that users type into an authenticator app.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// Decodes a base32 secret as shown to the user, or returns `None` when it is not base32.
pub fn parse_secret_base32(text: &str) -> Option<Vec<u8>> {
    Secret::try_from_base32(text)
        .ok()
        .map(|secret| secret.as_bytes().to_vec())
}

/// Builds the `otpauth://totp/...` URI that authenticator apps read from a QR code.
pub fn provisioning_uri(
    secret: &[u8],
    issuer: &str,
    account_name: &str,
) -> Result<String, TotpSetupError> {
    // The otpauth label separates the issuer from the account with ':', so neither may
    // contain one.
    let account_name = account_name.replace(':', " ");
    let totp = builder(secret)
        .with_account_name(account_name)
        .with_issuer(Some(issuer.replace(':', " ")))
        .build()
        .map_err(|_| TotpSetupError::InvalidSecret)?;
    totp.to_url()
        .map_err(|error| TotpSetupError::InvalidAccountName(error.to_string()))
}

fn builder(secret: &[u8]) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECONDS)
        .with_skew(SKEW_STEPS)
        .with_secret(secret.to_vec())
}

fn totp(secret: &[u8]) -> Result<Totp, TotpSetupError> {
    builder(secret)
        .build()
        .map_err(|_| TotpSetupError::InvalidSecret)
}

/// Returns the time step that `code` belongs to when it is valid at `unix_seconds` and its
/// step is newer than `last_used_step`. Anything but six ASCII digits is invalid.
pub fn accept_code(
    secret: &[u8],
    code: &str,
    unix_seconds: u64,
    last_used_step: Option<i64>,
) -> Option<i64> {
    let code = code.trim();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let step = totp(secret).ok()?.check(code, unix_seconds)?;
    let step = i64::try_from(step).ok()?;
    match last_used_step {
        Some(last) if step <= last => None,
        _ => Some(step),
    }
}

/// Generates the code for `unix_seconds`, as an authenticator app would.
pub fn generate_code(secret: &[u8], unix_seconds: u64) -> Result<String, TotpSetupError> {
    Ok(totp(secret)?.generate(unix_seconds).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-1 secret of the RFC 6238 appendix B test vectors.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_rfc_6238_vectors() {
        // Appendix B lists 8-digit codes; a 6-digit code is their last six digits.
        assert_eq!(generate_code(RFC_SECRET, 59).unwrap(), "287082");
        assert_eq!(generate_code(RFC_SECRET, 1_111_111_109).unwrap(), "081804");
        assert_eq!(generate_code(RFC_SECRET, 2_000_000_000).unwrap(), "279037");
    }

    #[test]
    fn valid_code_returns_its_step() {
        let code = generate_code(RFC_SECRET, 1_111_111_109).unwrap();
        let step = accept_code(RFC_SECRET, &code, 1_111_111_109, None);
        assert_eq!(step, Some(1_111_111_109 / 30));
    }

    #[test]
    fn neighbouring_step_is_accepted() {
        let code = generate_code(RFC_SECRET, 1_000_000_000).unwrap();
        assert!(accept_code(RFC_SECRET, &code, 1_000_000_030, None).is_some());
        assert!(accept_code(RFC_SECRET, &code, 1_000_000_090, None).is_none());
    }

    #[test]
    fn used_step_is_rejected() {
        let now = 1_500_000_000;
        let code = generate_code(RFC_SECRET, now).unwrap();
        let step = accept_code(RFC_SECRET, &code, now, None).unwrap();
        assert_eq!(accept_code(RFC_SECRET, &code, now, Some(step)), None);
        assert_eq!(accept_code(RFC_SECRET, &code, now, Some(step + 1)), None);
        assert_eq!(
            accept_code(RFC_SECRET, &code, now, Some(step - 1)),
            Some(step)
        );
    }

    #[test]
    fn malformed_codes_are_rejected() {
        for code in ["", "12345", "1234567", "12a456", "１２３４５６", "-12345"] {
            assert_eq!(accept_code(RFC_SECRET, code, 59, None), None, "{code:?}");
        }
    }

    #[test]
    fn provisioning_uri_carries_secret_and_issuer() {
        let secret = generate_secret();
        assert_eq!(secret.len(), SECRET_BYTES);
        let uri = provisioning_uri(&secret, "Tasklane", "ada@example.com").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Tasklane:ada%40example.com?"),
            "{uri}"
        );
        assert!(
            uri.contains(&format!("secret={}", secret_base32(&secret))),
            "{uri}"
        );
        assert!(uri.contains("issuer=Tasklane"), "{uri}");
        assert_eq!(parse_secret_base32(&secret_base32(&secret)), Some(secret));
    }
}
