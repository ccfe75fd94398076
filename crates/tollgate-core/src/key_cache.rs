//! The in-memory key cache the hot path authenticates against: no database round trip per
//! request. The store fills it at start and keeps it fresh by polling a revision counter.

use std::sync::Arc;

use dashmap::DashMap;

use crate::keys::{BearerError, KeyHash, ParsedKey, SecretKind, bearer_token};
use crate::models::ModelAllowList;

/// The team a key belongs to, as the proxy needs it for attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamInfo {
    pub id: String,
    pub name: String,
    pub cost_centre: Option<String>,
    pub disabled: bool,
    /// Models the team's keys may call; `None` allows all.
    pub allowed_models: Option<ModelAllowList>,
}

/// One team key as cached: enough to authenticate and attribute a request.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub hash: KeyHash,
    pub team: Arc<TeamInfo>,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// Models this key may call (on top of the team's list); `None` allows all.
    pub allowed_models: Option<ModelAllowList>,
}

impl KeyRecord {
    /// Whether this key and its team may call `model`. The refusal names which list said no.
    pub fn model_allowed(&self, model: &str) -> Result<(), &'static str> {
        if self
            .allowed_models
            .as_ref()
            .is_some_and(|list| !list.allows(model))
        {
            return Err("key");
        }
        if self
            .team
            .allowed_models
            .as_ref()
            .is_some_and(|list| !list.allows(model))
        {
            return Err("team");
        }
        Ok(())
    }
}

/// Why a key was refused. All map to the same client-facing 401, but logs and metrics tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key was provided")]
    Missing,
    #[error("the Authorization header must be 'Bearer <team key>'")]
    NotBearer,
    #[error("the API key is not a tollgate team key")]
    Malformed,
    #[error("the API key is not known")]
    Unknown,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key's team is disabled")]
    TeamDisabled,
}

/// Keys by public id. Cloning the `Arc<KeyRecord>` out is the only cost of a lookup.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: DashMap<String, Arc<KeyRecord>>,
}

impl KeyCache {
    pub fn new() -> KeyCache {
        KeyCache::default()
    }

    /// Inserts or replaces a key (a revoked key stays cached so it is refused as revoked).
    pub fn upsert(&self, record: KeyRecord) {
        self.keys.insert(record.id.clone(), Arc::new(record));
    }

    pub fn get(&self, id: &str) -> Option<Arc<KeyRecord>> {
        self.keys.get(id).map(|r| Arc::clone(r.value()))
    }

    pub fn remove(&self, id: &str) {
        self.keys.remove(id);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Authenticates the value of an `Authorization` header (with or without `Bearer `).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now_ms: i64,
    ) -> Result<Arc<KeyRecord>, AuthError> {
        let token = bearer_token(authorization).map_err(|e| match e {
            BearerError::Missing => AuthError::Missing,
            BearerError::NotBearer => AuthError::NotBearer,
        })?;
        let parsed = ParsedKey::parse(token).ok_or(AuthError::Malformed)?;
        if parsed.kind != SecretKind::TeamKey {
            return Err(AuthError::Malformed);
        }
        let record = self
            .keys
            .get(parsed.id)
            .map(|r| Arc::clone(r.value()))
            .ok_or(AuthError::Unknown)?;
        if !KeyHash::of(parsed.token).matches(&record.hash) {
            return Err(AuthError::Unknown);
        }
        // Any recorded revocation counts, whatever this replica's clock says: a replica whose
        // clock lags the one that revoked must not keep accepting the key.
        if record.revoked_at_ms.is_some() {
            return Err(AuthError::Revoked);
        }
        if record.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(AuthError::Expired);
        }
        if record.team.disabled {
            return Err(AuthError::TeamDisabled);
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::NewSecret;

    fn record(secret: &NewSecret) -> KeyRecord {
        KeyRecord {
            id: secret.id.clone(),
            name: "ci".into(),
            hash: secret.hash,
            team: Arc::new(TeamInfo {
                id: "t1".into(),
                name: "platform".into(),
                cost_centre: None,
                disabled: false,
                allowed_models: None,
            }),
            expires_at_ms: None,
            revoked_at_ms: None,
            allowed_models: None,
        }
    }

    #[test]
    fn authenticates_only_the_exact_live_key() {
        let cache = KeyCache::new();
        let key = NewSecret::generate(SecretKind::TeamKey);
        cache.upsert(record(&key));
        let bearer = format!("Bearer {}", key.token);
        assert_eq!(
            cache.authenticate(Some(&bearer), 0).map(|r| r.id.clone()),
            Ok(key.id.clone())
        );
        assert_eq!(cache.authenticate(None, 0).err(), Some(AuthError::Missing));
        // The scheme is required (one parser with /admin): a bare key is refused.
        assert_eq!(
            cache.authenticate(Some(&key.token), 0).err(),
            Some(AuthError::NotBearer)
        );
        let lower = format!("bearer {}", key.token);
        assert!(cache.authenticate(Some(&lower), 0).is_ok());
        assert_eq!(
            cache.authenticate(Some("Bearer sk-proj-123"), 0).err(),
            Some(AuthError::Malformed)
        );
        let mut wrong = key.token.clone();
        wrong.pop();
        wrong.push(if key.token.ends_with('a') { 'b' } else { 'a' });
        assert_eq!(
            cache
                .authenticate(Some(&format!("Bearer {wrong}")), 0)
                .err(),
            Some(AuthError::Unknown)
        );
        let admin = NewSecret::generate(SecretKind::AdminToken);
        assert_eq!(
            cache
                .authenticate(Some(&format!("Bearer {}", admin.token)), 0)
                .err(),
            Some(AuthError::Malformed)
        );
    }

    #[test]
    fn revoked_and_expired_keys_are_refused() {
        let cache = KeyCache::new();
        let key = NewSecret::generate(SecretKind::TeamKey);
        cache.upsert(KeyRecord {
            revoked_at_ms: Some(10),
            ..record(&key)
        });
        // Revoked "in the future" by a replica with a faster clock: still revoked here.
        assert_eq!(
            cache
                .authenticate(Some(&format!("Bearer {}", key.token)), 9)
                .err(),
            Some(AuthError::Revoked)
        );
        assert_eq!(
            cache
                .authenticate(Some(&format!("Bearer {}", key.token)), 10)
                .err(),
            Some(AuthError::Revoked)
        );
        cache.upsert(KeyRecord {
            expires_at_ms: Some(5),
            ..record(&key)
        });
        assert_eq!(
            cache
                .authenticate(Some(&format!("Bearer {}", key.token)), 6)
                .err(),
            Some(AuthError::Expired)
        );
    }
}
