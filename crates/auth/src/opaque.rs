//! Opaque tokens (refresh tokens and invitations): 256 random bits, shown once and stored
//! only as their SHA-256 hash, which is safe without a salt because the input is uniformly
//! random.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefixes that make a leaked token recognisable to secret scanners.
const PREFIX: &str = "tlr_";
const INVITATION_PREFIX: &str = "tli_";
const VERIFICATION_PREFIX: &str = "tlv_";
const PASSWORD_RESET_PREFIX: &str = "tlw_";
const SESSION_PREFIX: &str = "tls_";
const OIDC_LINK_PREFIX: &str = "tll_";
/// Prefix of personal API tokens, which the `Caller` extractor uses to tell them from JWTs.
pub const API_TOKEN_PREFIX: &str = "tlp_";

/// A new opaque token and the hash to store.
pub struct NewOpaqueToken {
    pub token: String,
    pub hash: Vec<u8>,
}

/// Generates a refresh token from the operating system's CSPRNG.
pub fn generate_refresh_token() -> NewOpaqueToken {
    generate_with_prefix(PREFIX)
}

/// Generates an invitation token, hashed like a refresh token.
pub fn generate_invitation_token() -> NewOpaqueToken {
    generate_with_prefix(INVITATION_PREFIX)
}

/// Generates a browser session id, the value of the session cookie.
pub fn generate_session_token() -> NewOpaqueToken {
    generate_with_prefix(SESSION_PREFIX)
}

/// Generates an e-mail address verification token, hashed like a refresh token.
pub fn generate_verification_token() -> NewOpaqueToken {
    generate_with_prefix(VERIFICATION_PREFIX)
}

/// Generates a password reset token, hashed like a refresh token.
pub fn generate_password_reset_token() -> NewOpaqueToken {
    generate_with_prefix(PASSWORD_RESET_PREFIX)
}

/// Generates the token that confirms linking an OpenID provider identity to an account.
pub fn generate_oidc_link_token() -> NewOpaqueToken {
    generate_with_prefix(OIDC_LINK_PREFIX)
}

/// Generates a personal API token.
pub fn generate_api_token() -> NewOpaqueToken {
    generate_with_prefix(API_TOKEN_PREFIX)
}

fn generate_with_prefix(prefix: &str) -> NewOpaqueToken {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_opaque_token(&token);
    NewOpaqueToken { token, hash }
}

/// Hashes a presented opaque token for lookup.
pub fn hash_opaque_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_differ() {
        let first = generate_refresh_token();
        let second = generate_refresh_token();
        assert_ne!(first.token, second.token);
        assert_ne!(first.hash, second.hash);
    }

    #[test]
    fn token_carries_256_bits() {
        let token = generate_refresh_token().token;
        let encoded = token.strip_prefix(PREFIX).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len(), 32);
    }

    #[test]
    fn stored_hash_matches_presented_token() {
        let new = generate_refresh_token();
        assert_eq!(hash_opaque_token(&new.token), new.hash);
        assert_eq!(new.hash.len(), 32);
    }
}
