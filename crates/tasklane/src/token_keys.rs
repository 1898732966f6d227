//! Loads the access-token key set: from the configuration when it has a signing key,
//! otherwise from the `signing_keys` table, creating a key there at first start.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tasklane_auth::keys::{self, KeySet};
use tasklane_config::AuthSettings;
use tasklane_store::signing_keys::{self, StoredSigningKey};
use tasklane_store::PgPool;

pub async fn load(settings: &AuthSettings, pool: &PgPool) -> anyhow::Result<KeySet> {
    let configured_previous = keys::parse_public_key_pems(&settings.verification_key_pems)
        .context("reading auth.verification_key_pems")?;
    if let Some(pem) = &settings.signing_key_pem {
        let signing = keys::parse_private_key_pem(pem).context("reading auth.signing_key_pem")?;
        return Ok(KeySet::new(&signing, &configured_previous));
    }

    let mut stored = signing_keys::list(pool)
        .await
        .context("reading the stored signing keys")?;
    if stored.is_empty() {
        let pem = keys::generate_private_key_pem();
        let signing = keys::parse_private_key_pem(&pem)?;
        let key = StoredSigningKey {
            kid: keys::key_id(&signing.verifying_key()),
            private_key_pem: pem.expose_secret().to_owned(),
        };
        stored = signing_keys::insert_if_none(pool, &key)
            .await
            .context("storing a new signing key")?;
    }
    tracing::warn!(
        kid = stored[0].kid,
        "no auth.signing_key_pem configured, signing access tokens with the key stored in \
         PostgreSQL, which is meant for development only"
    );

    let mut parsed = Vec::with_capacity(stored.len());
    for key in &stored {
        let pem = SecretString::from(key.private_key_pem.clone());
        let signing = keys::parse_private_key_pem(&pem)
            .with_context(|| format!("reading stored signing key {}", key.kid))?;
        parsed.push(signing);
    }
    let mut previous: Vec<_> = parsed[1..].iter().map(|key| key.verifying_key()).collect();
    previous.extend(configured_previous);
    Ok(KeySet::new(&parsed[0], &previous))
}
