//! `/admin/v1/keys` and `/admin/v1/teams/{team}/keys`: issue (the secret is shown once), list,
//! read, revoke and rotate team keys. Every change is put into this process's key cache at
//! once, so the caller's very next request sees it; other processes follow within
//! `store.key_refresh_ms`.

use serde::Deserialize;

use tollgate_core::{ApiError, KeyRecord};
use tollgate_store::{ApiKey, IssuedKey};

use super::page::{Listed, Query, numbered};
use super::reply::{
    Answer, created, json, not_found, ok, read_json, read_json_or_default, store_error,
};
use super::routes::check_team;
use super::{Call, Control};
use crate::validate::{FieldErrors, check_models, valid_key_name};

/// Longest grace period a rotation may give the old key: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 86_400;
const DEFAULT_GRACE_SECONDS: u64 = 3_600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: Option<String>,
    /// Unix seconds after which the key stops working.
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    expires_at: Option<i64>,
    /// Models this key may call, within the team's; absent: all.
    allowed_models: Option<Vec<String>>,
}

/// `POST /admin/v1/keys/{id}/rotate`; an empty body takes the default grace.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old key keeps working, in seconds (default 3600, at most 30 days).
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    grace_seconds: Option<u64>,
}

impl Control {
    /// A key by id that the caller may act on: 404, then 403.
    async fn own_key(&self, call: &Call<'_>, id: &str) -> Result<ApiKey, ApiError> {
        let key = self
            .store
            .key(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("key", id))?;
        check_team(call.principal, &key.team_id)?;
        Ok(key)
    }

    pub(super) async fn list_team_keys(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["limit", "after"])?;
        let team = self.own_team(call, call.param(0)).await?;
        let keys = self
            .store
            .list_keys(Some(&team.id))
            .await
            .map_err(store_error)?;
        key_page(keys, &query)
    }

    pub(super) async fn list_keys(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["team", "limit", "after"])?;
        let team = self.team_filter(call, &query).await?;
        let keys = self
            .store
            .list_keys(team.as_deref())
            .await
            .map_err(store_error)?;
        key_page(keys, &query)
    }

    pub(super) async fn get_key(&self, call: &Call<'_>) -> Answer {
        ok(json(self.own_key(call, call.param(0)).await?))
    }

    pub(super) async fn issue_key(&self, call: &Call<'_>) -> Answer {
        let team = self.own_team(call, call.param(0)).await?;
        let body: CreateKey = read_json(call.body)?;
        let mut errors = FieldErrors::default();
        let name = body.name.unwrap_or_else(|| "default".into());
        errors.check("name", Some(name.as_str()), valid_key_name);
        let now = tollgate_core::time::now_ms();
        let expires_at_ms = body.expires_at.map(|s| s.saturating_mul(1000));
        if expires_at_ms.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future (unix seconds)");
        }
        let allowed = check_models(&mut errors, body.allowed_models.as_deref());
        errors.into_result()?;
        let issued = self
            .store
            .create_key_with(&team.id, &name, expires_at_ms, allowed.as_deref())
            .await
            .map_err(store_error)?;
        self.recache_key(&issued.key.id).await?;
        self.audit(call, &issued.key.id, None, Some(&json(&issued.key)))
            .await;
        created(with_secret(issued))
    }

    pub(super) async fn revoke_key(&self, call: &Call<'_>) -> Answer {
        let before = self.own_key(call, call.param(0)).await?;
        let key = self
            .store
            .revoke_key(&before.id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("key", &before.id))?;
        if let Some(live) = &self.live
            && let Some(cached) = live.keys.get(&key.id)
        {
            live.keys.upsert(KeyRecord {
                revoked_at_ms: key.revoked_at_ms,
                ..(*cached).clone()
            });
        }
        let after = json(&key);
        self.audit(call, &key.id, Some(&json(&before)), Some(&after))
            .await;
        ok(after)
    }

    /// Issues a new key like the old one (team, name, allow-list, expiry) and lets the old one
    /// work for the grace period only: clients switch over without an outage.
    pub(super) async fn rotate_key(&self, call: &Call<'_>) -> Answer {
        let before = self.own_key(call, call.param(0)).await?;
        let body: Rotate = read_json_or_default(call.body)?;
        let grace = body.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
        if grace > MAX_GRACE_SECONDS {
            let mut errors = FieldErrors::default();
            errors.push(
                "grace_seconds",
                format!("must be from 0 to {MAX_GRACE_SECONDS} (30 days)"),
            );
            errors.into_result()?;
        }
        let grace_ms = i64::try_from(grace.saturating_mul(1000)).unwrap_or(i64::MAX);
        let (old, issued) = self
            .store
            .rotate_key(&before.id, grace_ms)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("key", &before.id))?;
        self.recache_key(&issued.key.id).await?;
        self.recache_key(&old.id).await?;
        let mut after = json(&old);
        after["replaced_by"] = issued.key.id.clone().into();
        self.audit(call, &old.id, Some(&json(&before)), Some(&after))
            .await;
        let mut reply = with_secret(issued);
        reply["replaces"] = json(&old);
        created(reply)
    }

    /// Puts a key's current record into this process's cache, when it serves traffic.
    async fn recache_key(&self, id: &str) -> Result<(), ApiError> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        if let Some(record) = self.store.key_record(id).await.map_err(store_error)? {
            live.keys.upsert(record);
        }
        Ok(())
    }

    /// Re-caches every key of a team (after the team was disabled or enabled).
    pub(super) async fn recache_team_keys(&self, team_id: &str) -> Result<(), ApiError> {
        if self.live.is_none() {
            return Ok(());
        }
        for key in self
            .store
            .list_keys(Some(team_id))
            .await
            .map_err(store_error)?
        {
            self.recache_key(&key.id).await?;
        }
        Ok(())
    }
}

/// A page of keys, oldest first.
fn key_page(keys: Vec<ApiKey>, query: &Query) -> Answer {
    let mut errors = FieldErrors::default();
    let page = query.page(&mut errors);
    errors.into_result()?;
    ok(Listed::slice(keys, &page, |k| numbered(k.created_at_ms, &k.id)).to_json())
}

/// A freshly issued key as the API shows it: the key, and its secret this once.
fn with_secret(issued: IssuedKey) -> serde_json::Value {
    let mut value = json(&issued.key);
    value["secret"] = serde_json::Value::String(issued.secret);
    value
}
