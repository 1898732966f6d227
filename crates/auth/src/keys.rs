//! Ed25519 keys for access tokens: the current key signs, and the keys it replaced still
//! verify the tokens they signed until those expire.
//!
//! A key's id (`kid`) is its JWK thumbprint (RFC 7638: SHA-256 over the canonical JSON of
//! `crv`, `kty` and `x`, base64url without padding), so every process derives the same id
//! from the same key without storing it.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not an Ed25519 private key in PKCS#8 PEM")]
    InvalidPrivateKey,
    #[error("verification key {index} is not an Ed25519 public key in SPKI PEM")]
    InvalidPublicKey { index: usize },
}

/// Generates a new Ed25519 private key, returned as PKCS#8 PEM.
pub fn generate_private_key_pem() -> SecretString {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes as PKCS#8");
    SecretString::from(pem.as_str().to_owned())
}

/// Parses an Ed25519 private key from PKCS#8 PEM.
pub fn parse_private_key_pem(pem: &SecretString) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.expose_secret()).map_err(|_| KeyError::InvalidPrivateKey)
}

/// Parses Ed25519 public keys from SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
pub fn parse_public_key_pems(pems: &[String]) -> Result<Vec<VerifyingKey>, KeyError> {
    pems.iter()
        .enumerate()
        .map(|(index, pem)| {
            VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::InvalidPublicKey { index })
        })
        .collect()
}

/// Computes the RFC 7638 JWK thumbprint of an Ed25519 public key, used as its `kid`.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    // The members in lexicographic order with no whitespace, as RFC 7638 requires.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The signing key and every key that still verifies.
#[derive(Clone)]
pub struct KeySet {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: JwkSet,
}

impl KeySet {
    /// Builds a key set that signs with `signing` and also verifies with `previous`.
    pub fn new(signing: &SigningKey, previous: &[VerifyingKey]) -> Self {
        let der = signing
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let current = signing.verifying_key();
        let mut decoding = HashMap::new();
        let mut jwks = JwkSet { keys: Vec::new() };
        for key in std::iter::once(&current).chain(previous) {
            let kid = key_id(key);
            if decoding.contains_key(&kid) {
                continue;
            }
            decoding.insert(kid.clone(), DecodingKey::from_ed_der(key.as_bytes()));
            jwks.keys.push(public_jwk(key, kid));
        }
        Self {
            signing_kid: key_id(&current),
            encoding,
            decoding,
            jwks,
        }
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub(crate) fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.decoding.get(kid)
    }

    /// Returns the public keys as a JWK Set, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

fn public_jwk(key: &VerifyingKey, kid: String) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: Some(kid),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePublicKey;

    use super::*;

    #[test]
    fn generated_pem_parses() {
        let pem = generate_private_key_pem();
        assert!(pem
            .expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(parse_private_key_pem(&pem).is_ok());
    }

    #[test]
    fn public_pem_parses() {
        let key = parse_private_key_pem(&generate_private_key_pem()).unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let parsed = parse_public_key_pems(&[pem]).unwrap();
        assert_eq!(parsed[0], key.verifying_key());
    }

    #[test]
    fn invalid_pems_are_rejected() {
        let garbage = SecretString::from("not a key".to_owned());
        assert!(matches!(
            parse_private_key_pem(&garbage),
            Err(KeyError::InvalidPrivateKey)
        ));
        let result = parse_public_key_pems(&["not a key".to_owned()]);
        assert!(matches!(
            result,
            Err(KeyError::InvalidPublicKey { index: 0 })
        ));
    }

    #[test]
    fn key_id_matches_rfc_8037_example() {
        // The Ed25519 public key and its thumbprint from RFC 8037, appendix A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(key_id(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn jwks_lists_current_and_previous_keys() {
        let current = parse_private_key_pem(&generate_private_key_pem()).unwrap();
        let previous = parse_private_key_pem(&generate_private_key_pem()).unwrap();
        let keys = KeySet::new(
            &current,
            &[previous.verifying_key(), current.verifying_key()],
        );
        let kids: Vec<_> = keys
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(
            kids,
            vec![
                key_id(&current.verifying_key()),
                key_id(&previous.verifying_key())
            ]
        );
        assert_eq!(keys.signing_kid(), key_id(&current.verifying_key()));
    }
}
