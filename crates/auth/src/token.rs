//! Short-lived access tokens: EdDSA-signed JWTs carrying the user, their one active tenant
//! and the user's revocation version at the time of issue.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{decode, decode_header, encode, Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::KeySet;
use crate::verified_cache::{VerifiedTokenCache, DEFAULT_CAPACITY};

/// Clock skew tolerated on `exp` and `nbf`, in seconds, between the processes that issue
/// and verify tokens.
const LEEWAY_SECONDS: u64 = 5;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The active tenant.
    pub tid: Uuid,
    /// The user's revocation version when the token was issued. A token whose version is
    /// below the user's current one is revoked.
    pub ver: i64,
    /// Unique token id.
    pub jti: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is invalid or expired")]
    Invalid,
    #[error("could not sign the access token")]
    Signing,
}

/// Issues and verifies access tokens with a [`KeySet`].
#[derive(Clone)]
pub struct TokenIssuer {
    keys: Arc<KeySet>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    verified: Arc<VerifiedTokenCache>,
}

impl TokenIssuer {
    pub fn new(keys: KeySet, issuer: &str, audience: &str, ttl: Duration) -> Self {
        // Only EdDSA is accepted, so neither `alg: none` nor an HMAC token keyed with a
        // public key can pass. The claims below must be present and well-typed.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Self {
            keys: Arc::new(keys),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            verified: Arc::new(VerifiedTokenCache::new(DEFAULT_CAPACITY, LEEWAY_SECONDS)),
        }
    }

    /// Issues a token for `user_id` acting in `tenant_id`.
    pub fn issue(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        revocation_version: i64,
    ) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            tid: tenant_id,
            ver: revocation_version,
            jti: Uuid::new_v4(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.signing_kid().to_owned());
        encode(&header, &claims, self.keys.encoding_key()).map_err(|_| TokenError::Signing)
    }

    /// Verifies the key id, signature, algorithm, issuer, audience and validity window.
    ///
    /// A token verified before is taken from an in-process cache, with only its expiry
    /// checked again. Revocation is not decided here: callers compare
    /// [`AccessClaims::ver`] with the user's current revocation version.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self.verified.get(token, now) {
            return Ok(claims);
        }
        let claims = self.verify_uncached(token)?;
        self.verified.insert(token, claims.clone(), now);
        Ok(claims)
    }

    /// Verifies like [`TokenIssuer::verify`] but always checks the signature and claims,
    /// without reading or filling the cache.
    pub fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self.keys.decoding_key(&kid).ok_or(TokenError::Invalid)?;
        decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;
    use crate::keys::{generate_private_key_pem, parse_private_key_pem};

    fn signing_key() -> ed25519_dalek::SigningKey {
        parse_private_key_pem(&generate_private_key_pem()).unwrap()
    }

    fn issuer_with(key: &ed25519_dalek::SigningKey) -> TokenIssuer {
        TokenIssuer::new(
            KeySet::new(key, &[]),
            "tasklane",
            "tasklane-api",
            Duration::from_secs(60),
        )
    }

    /// Signs arbitrary claims with the issuer's current key, for tampered-claim cases.
    fn sign_raw(issuer: &TokenIssuer, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(issuer.keys().signing_kid().to_owned());
        encode(&header, &claims, issuer.keys().encoding_key()).unwrap()
    }

    fn valid_claims() -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "sub": Uuid::now_v7(), "tid": Uuid::now_v7(), "ver": 0, "jti": Uuid::new_v4(),
            "iss": "tasklane", "aud": "tasklane-api", "iat": now, "nbf": now, "exp": now + 60,
        })
    }

    #[test]
    fn issued_token_verifies() {
        let issuer = issuer_with(&signing_key());
        let (user, tenant) = (Uuid::now_v7(), Uuid::now_v7());
        let token = issuer.issue(user, tenant, 3).unwrap();
        let claims = issuer.verify(&token).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.tid, tenant);
        assert_eq!(claims.ver, 3);
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(issuer.keys().signing_kid()));
    }

    #[test]
    fn second_verification_is_served_from_the_cache() {
        let issuer = issuer_with(&signing_key());
        let token = issuer.issue(Uuid::now_v7(), Uuid::now_v7(), 1).unwrap();
        let first = issuer.verify(&token).unwrap();
        assert_eq!(issuer.verified.get(&token, first.iat), Some(first.clone()));
        assert_eq!(issuer.verify(&token).unwrap(), first);
    }

    #[test]
    fn cache_is_not_shared_between_key_sets() {
        let issuer = issuer_with(&signing_key());
        let token = issuer.issue(Uuid::now_v7(), Uuid::now_v7(), 0).unwrap();
        assert!(issuer.verify(&token).is_ok());
        assert!(issuer_with(&signing_key()).verify(&token).is_err());
    }

    #[test]
    fn raw_valid_claims_verify() {
        let issuer = issuer_with(&signing_key());
        assert!(issuer.verify(&sign_raw(&issuer, valid_claims())).is_ok());
    }

    #[test]
    fn token_from_other_key_is_rejected() {
        let token = issuer_with(&signing_key())
            .issue(Uuid::now_v7(), Uuid::now_v7(), 0)
            .unwrap();
        assert!(issuer_with(&signing_key()).verify(&token).is_err());
    }

    #[test]
    fn previous_key_still_verifies_after_rotation() {
        let old = signing_key();
        let token = issuer_with(&old)
            .issue(Uuid::now_v7(), Uuid::now_v7(), 0)
            .unwrap();
        let rotated = TokenIssuer::new(
            KeySet::new(&signing_key(), &[old.verifying_key()]),
            "tasklane",
            "tasklane-api",
            Duration::from_secs(60),
        );
        assert!(rotated.verify(&token).is_ok());
    }

    #[test]
    fn unsigned_token_is_rejected() {
        let issuer = issuer_with(&signing_key());
        let kid = issuer.keys().signing_kid();
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        let payload = URL_SAFE_NO_PAD.encode(valid_claims().to_string());
        assert!(issuer.verify(&format!("{header}.{payload}.")).is_err());
    }

    #[test]
    fn hmac_token_keyed_with_public_key_is_rejected() {
        let key = signing_key();
        let issuer = issuer_with(&key);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.keys().signing_kid().to_owned());
        let secret = EncodingKey::from_secret(key.verifying_key().as_bytes());
        let token = encode(&header, &valid_claims(), &secret).unwrap();
        assert!(issuer.verify(&token).is_err());
    }

    #[test]
    fn token_without_kid_is_rejected() {
        let key = signing_key();
        let issuer = issuer_with(&key);
        let token = encode(
            &Header::new(Algorithm::EdDSA),
            &valid_claims(),
            issuer.keys().encoding_key(),
        )
        .unwrap();
        assert!(issuer.verify(&token).is_err());
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let issuer = issuer_with(&signing_key());
        let now = chrono::Utc::now().timestamp();
        let cases = [
            ("string exp", json!({ "exp": (now + 60).to_string() })),
            ("expired", json!({ "exp": now - 60 })),
            ("not yet valid", json!({ "nbf": now + 60 })),
            ("other audience", json!({ "aud": "someone-else" })),
            ("other issuer", json!({ "iss": "someone-else" })),
            ("missing exp", json!({ "exp": null })),
            ("missing nbf", json!({ "nbf": null })),
        ];
        for (case, changes) in cases {
            let mut claims = valid_claims();
            for (name, value) in changes.as_object().unwrap() {
                if value.is_null() {
                    claims.as_object_mut().unwrap().remove(name);
                } else {
                    claims[name] = value.clone();
                }
            }
            assert!(
                issuer.verify(&sign_raw(&issuer, claims)).is_err(),
                "{case} was accepted"
            );
        }
    }
}
