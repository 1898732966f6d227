//! Short-lived access tokens: JWTs carrying the user and their one active tenant.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// The user's id.
    pub sub: Uuid,
    /// The active tenant.
    pub tid: Uuid,
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

/// Issues and verifies access tokens with one HMAC key.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &SecretString, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// Issues a token for `user_id` acting in `tenant_id`.
    pub fn issue(&self, user_id: Uuid, tenant_id: Uuid) -> Result<String, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user_id,
            tid: tenant_id,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|_| TokenError::Signing)
    }

    /// Verifies signature, algorithm, issuer, audience and validity window.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> TokenIssuer {
        TokenIssuer::new(&SecretString::from(secret.to_owned()), "tasklane", "tasklane-api", Duration::from_secs(60))
    }

    #[test]
    fn issued_token_verifies() {
        let issuer = issuer("secret-one");
        let (user, tenant) = (Uuid::now_v7(), Uuid::now_v7());
        let claims = issuer.verify(&issuer.issue(user, tenant).unwrap()).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.tid, tenant);
    }

    #[test]
    fn token_from_other_key_is_rejected() {
        let token = issuer("secret-one").issue(Uuid::now_v7(), Uuid::now_v7()).unwrap();
        assert!(issuer("secret-two").verify(&token).is_err());
    }

    #[test]
    fn unsigned_token_is_rejected() {
        // {"alg":"none"} header with valid-looking claims and no signature.
        let token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIwMTkwMDAwMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDAifQ.";
        assert!(issuer("secret-one").verify(token).is_err());
    }
}
