//! An in-process cache of access tokens whose signature and claims were already verified,
//! so that a client sending the same token on every request pays for one signature check.
//!
//! Caching is safe because nothing that can change during a token's lifetime is decided
//! here: the expiry is checked again on every hit, and revocation is decided by the
//! caller, which compares the token's revocation version with the user's current one.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::token::AccessClaims;

/// Verified tokens kept by default. Each entry costs roughly the token (about 400 bytes)
/// plus its claims, so the cache stays under a few megabytes.
pub const DEFAULT_CAPACITY: usize = 8192;

pub(crate) struct VerifiedTokenCache {
    entries: RwLock<HashMap<Box<str>, AccessClaims>>,
    capacity: usize,
    leeway_seconds: i64,
}

impl VerifiedTokenCache {
    pub(crate) fn new(capacity: usize, leeway_seconds: u64) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
            leeway_seconds: leeway_seconds as i64,
        }
    }

    /// Returns the claims of `token` if it was verified before and has not expired, with
    /// the same leeway as the full verification.
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let entries = self.entries.read();
        let claims = entries.get(token)?;
        if claims.exp < now - self.leeway_seconds {
            return None;
        }
        Some(claims.clone())
    }

    /// Remembers a token that passed full verification.
    ///
    /// A full cache first drops its expired entries. If every entry is still valid it is
    /// emptied, which costs one signature check per active client and keeps memory bounded
    /// without tracking recency.
    pub(crate) fn insert(&self, token: &str, claims: AccessClaims, now: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= self.capacity {
            let oldest_valid_exp = now - self.leeway_seconds;
            entries.retain(|_, cached| cached.exp >= oldest_valid_exp);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.into(), claims);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().len()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn claims_expiring_at(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: Uuid::now_v7(),
            tid: Uuid::now_v7(),
            ver: 0,
            jti: Uuid::new_v4(),
            iss: "tasklane".into(),
            aud: "tasklane-api".into(),
            iat: exp - 60,
            nbf: exp - 60,
            exp,
        }
    }

    #[test]
    fn hit_returns_the_cached_claims() {
        let cache = VerifiedTokenCache::new(4, 5);
        let claims = claims_expiring_at(1_000);
        cache.insert("token", claims.clone(), 900);
        assert_eq!(cache.get("token", 950), Some(claims));
        assert_eq!(cache.get("other", 950), None);
    }

    #[test]
    fn expired_entry_is_a_miss() {
        let cache = VerifiedTokenCache::new(4, 5);
        cache.insert("token", claims_expiring_at(1_000), 900);
        assert!(cache.get("token", 1_005).is_some(), "within the leeway");
        assert_eq!(cache.get("token", 1_006), None);
    }

    #[test]
    fn full_cache_drops_expired_entries_first() {
        let cache = VerifiedTokenCache::new(2, 0);
        cache.insert("expired", claims_expiring_at(100), 50);
        cache.insert("valid", claims_expiring_at(1_000), 50);
        cache.insert("new", claims_expiring_at(1_000), 500);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("valid", 500).is_some());
        assert!(cache.get("new", 500).is_some());
    }

    #[test]
    fn full_cache_of_valid_entries_is_emptied() {
        let cache = VerifiedTokenCache::new(2, 0);
        cache.insert("a", claims_expiring_at(1_000), 50);
        cache.insert("b", claims_expiring_at(1_000), 50);
        cache.insert("c", claims_expiring_at(1_000), 50);
        assert_eq!(cache.len(), 1);
        assert!(cache.get("c", 60).is_some());
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let cache = VerifiedTokenCache::new(0, 0);
        cache.insert("a", claims_expiring_at(1_000), 50);
        assert_eq!(cache.get("a", 60), None);
    }
}
