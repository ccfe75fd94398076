//! Team API keys: issue (the secret is returned once, only its hash is stored), list, revoke, and
//! the change feed [`KeySync`](crate::KeySync) polls.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::keys::{NewSecret, SecretKind};
use tollgate_core::time::now_ms;
use tollgate_core::{KeyHash, KeyRecord, ModelAllowList, TeamInfo};

use crate::error::{Result, StoreError, conflict_on_unique};
use crate::store::{Store, bump_revision};
use crate::teams::{clean_name, flag, models_list};

/// A key as the admin API shows it. Never carries the hash or the secret.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub team_id: String,
    pub team_name: String,
    pub name: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// Models this key may call, within its team's; `None`: all.
    pub allowed_models: Option<Vec<String>>,
}

/// A freshly issued key. `secret` is the full `tg-…` token: show it once, it cannot be recovered.
#[derive(Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: String,
}

/// Leaves the secret out, so a stray `{:?}` cannot log it.
impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Keys changed since a revision, ready for the cache, and the revision to ask from next time.
#[derive(Debug, Clone)]
pub struct KeyChanges {
    pub records: Vec<KeyRecord>,
    pub rev: i64,
}

const API_KEY_SELECT: &str = "SELECT k.id, k.team_id, t.name AS team_name, k.name, k.created_at_ms, \
     k.expires_at_ms, k.revoked_at_ms, k.allowed_models FROM api_keys k JOIN teams t ON t.id = k.team_id";

impl Store {
    /// Issues a key for a team (`NotFound` if there is no team with that id).
    pub async fn create_key(
        &self,
        team_id: &str,
        name: &str,
        expires_at_ms: Option<i64>,
    ) -> Result<IssuedKey> {
        self.create_key_with(team_id, name, expires_at_ms, None)
            .await
    }

    /// Issues a key limited to `allowed_models` (stored form, see `ModelAllowList`). The list
    /// is written in the same row as the key, so no replica ever sees the key without it.
    pub async fn create_key_with(
        &self,
        team_id: &str,
        name: &str,
        expires_at_ms: Option<i64>,
        allowed_models: Option<&str>,
    ) -> Result<IssuedKey> {
        let name = clean_name("key name", name)?;
        let secret = NewSecret::generate(SecretKind::TeamKey);
        let mut tx = self.pool.begin().await?;
        let rev = bump_revision(&mut tx).await?;
        let team_name: Option<String> = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(&mut *tx)
            .await?;
        let team_name = team_name
            .ok_or_else(|| StoreError::NotFound(format!("no team with id {team_id:?}")))?;
        let key = ApiKey {
            id: secret.id.clone(),
            team_id: team_id.to_owned(),
            team_name,
            name,
            created_at_ms: now_ms(),
            expires_at_ms,
            revoked_at_ms: None,
            allowed_models: models_list(allowed_models),
        };
        sqlx::query(
            "INSERT INTO api_keys (id, team_id, name, key_hash, created_at_ms, expires_at_ms, \
             revoked_at_ms, rev, allowed_models) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.team_id)
        .bind(&key.name)
        .bind(secret.hash.to_hex())
        .bind(key.created_at_ms)
        .bind(key.expires_at_ms)
        .bind(rev)
        .bind(allowed_models)
        .execute(&mut *tx)
        .await
        // 12 random characters colliding is not expected; if it happens, the caller may retry.
        .map_err(|e| conflict_on_unique(e, || format!("key id {:?} is already taken", key.id)))?;
        tx.commit().await?;
        Ok(IssuedKey {
            key,
            secret: secret.token,
        })
    }

    /// Keys, optionally of one team, oldest first.
    pub async fn list_keys(&self, team_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "{API_KEY_SELECT} WHERE $1 IS NULL OR k.team_id = $1 ORDER BY k.created_at_ms, k.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// A key by its public id.
    pub async fn key(&self, id: &str) -> Result<Option<ApiKey>> {
        let mut conn = self.pool.acquire().await?;
        fetch_key(&mut conn, id).await
    }

    /// Rotates a key: issues a new key with the same team, name and allow-list, and lets the old
    /// one work only for `grace_ms` more (its expiry moves earlier, never later). `None` if no
    /// such key; a revoked key cannot be rotated.
    pub async fn rotate_key(&self, id: &str, grace_ms: i64) -> Result<Option<(ApiKey, IssuedKey)>> {
        let Some(old) = self.key(id).await? else {
            return Ok(None);
        };
        if old.revoked_at_ms.is_some() {
            return Err(StoreError::Conflict(format!(
                "key {id} is revoked; issue a new key instead"
            )));
        }
        let rotated_to: Option<String> =
            sqlx::query_scalar("SELECT rotated_to FROM api_keys WHERE id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        if let Some(replacement) = rotated_to {
            return Err(already_rotated(id, &replacement));
        }
        let allowed = old.allowed_models.as_ref().map(|m| m.join(","));
        let issued = self
            .create_key_with(
                &old.team_id,
                &old.name,
                old.expires_at_ms,
                allowed.as_deref(),
            )
            .await?;
        let until = now_ms() + grace_ms.max(0);
        let mut tx = self.pool.begin().await?;
        let rev = bump_revision(&mut tx).await?;
        // Only a key not rotated yet: of two rotations at once, one wins and the other's new
        // key (never shown to anyone) is revoked.
        let updated = sqlx::query(
            "UPDATE api_keys SET expires_at_ms = CASE WHEN expires_at_ms IS NULL OR expires_at_ms > $1 THEN $1 ELSE expires_at_ms END, rotated_to = $4, rev = $2 WHERE id = $3 AND rotated_to IS NULL",
        )
        .bind(until)
        .bind(rev)
        .bind(id)
        .bind(&issued.key.id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            drop(tx);
            self.revoke_key(&issued.key.id).await?;
            return Err(already_rotated(id, "another key"));
        }
        let old = fetch_key(&mut tx, id).await?;
        tx.commit().await?;
        Ok(old.map(|old| (old, issued)))
    }

    /// Revokes a key now. Revoking again keeps the first revocation time. `None` if no such key.
    pub async fn revoke_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let mut tx = self.pool.begin().await?;
        let rev = bump_revision(&mut tx).await?;
        let updated = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1), rev = $2 \
             WHERE id = $3",
        )
        .bind(now_ms())
        .bind(rev)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None); // dropping `tx` rolls the revision bump back
        }
        let key = fetch_key(&mut tx, id).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Every key whose own row or whose team's row changed after `rev`, as cache records. The
    /// returned `rev` is the highest revision seen, or `rev` itself when nothing changed.
    pub async fn key_records_since(&self, rev: i64) -> Result<KeyChanges> {
        let sql = format!("{KEY_RECORD_SELECT} WHERE k.rev > $1 OR t.rev > $1 ORDER BY k.id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rev)
            .fetch_all(&self.pool)
            .await?;
        let (records, high_water) = key_records(&rows, rev)?;
        Ok(KeyChanges {
            records,
            rev: high_water,
        })
    }

    /// One key as a cache record (with its team), e.g. to cache a key the moment it is issued.
    pub async fn key_record(&self, id: &str) -> Result<Option<KeyRecord>> {
        let sql = format!("{KEY_RECORD_SELECT} WHERE k.id = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        Ok(key_records(&rows, 0)?.0.into_iter().next())
    }
}

const KEY_RECORD_SELECT: &str = "SELECT k.id, k.name, k.key_hash, k.expires_at_ms, k.revoked_at_ms, k.rev AS key_rev, \
     k.allowed_models AS key_models, t.id AS team_id, t.name AS team_name, t.cost_centre, t.disabled, \
     t.allowed_models AS team_models, t.rev AS team_rev FROM api_keys k JOIN teams t ON t.id = k.team_id";

/// Cache records from rows of `KEY_RECORD_SELECT`, sharing one `TeamInfo` per team, and the
/// highest revision among them (at least `rev`).
fn key_records(rows: &[AnyRow], rev: i64) -> Result<(Vec<KeyRecord>, i64)> {
    let mut high_water = rev;
    let mut teams: HashMap<String, Arc<TeamInfo>> = HashMap::new();
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        let key_rev: i64 = row.try_get("key_rev")?;
        let team_rev: i64 = row.try_get("team_rev")?;
        high_water = high_water.max(key_rev).max(team_rev);
        let team_id: String = row.try_get("team_id")?;
        let team = match teams.get(&team_id) {
            Some(team) => Arc::clone(team),
            None => {
                let team_models: Option<String> = row.try_get("team_models")?;
                let team = Arc::new(TeamInfo {
                    id: team_id.clone(),
                    name: row.try_get("team_name")?,
                    cost_centre: row.try_get("cost_centre")?,
                    disabled: flag(row.try_get("disabled")?),
                    allowed_models: ModelAllowList::parse(team_models.as_deref()),
                });
                teams.insert(team_id, Arc::clone(&team));
                team
            }
        };
        let id: String = row.try_get("id")?;
        let hash_hex: String = row.try_get("key_hash")?;
        let hash = KeyHash::from_hex(&hash_hex).ok_or_else(|| {
            StoreError::Invalid(format!("key {id:?} has a malformed stored hash"))
        })?;
        let key_models: Option<String> = row.try_get("key_models")?;
        records.push(KeyRecord {
            id,
            name: row.try_get("name")?,
            hash,
            team,
            expires_at_ms: row.try_get("expires_at_ms")?,
            revoked_at_ms: row.try_get("revoked_at_ms")?,
            allowed_models: ModelAllowList::parse(key_models.as_deref()),
        });
    }
    Ok((records, high_water))
}

async fn fetch_key(conn: &mut AnyConnection, id: &str) -> Result<Option<ApiKey>> {
    let sql = format!("{API_KEY_SELECT} WHERE k.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(api_key_from_row).transpose()
}

fn api_key_from_row(row: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        team_name: row.try_get("team_name")?,
        name: row.try_get("name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        allowed_models: models_list(
            row.try_get::<Option<String>, _>("allowed_models")?
                .as_deref(),
        ),
    })
}

fn already_rotated(id: &str, replacement: &str) -> StoreError {
    StoreError::Conflict(format!(
        "key {id} was already rotated (replaced by {replacement}); rotate the replacement if \
         its secret was lost"
    ))
}
