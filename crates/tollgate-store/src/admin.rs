//! Admin tokens for `/admin/v1`: the bootstrap token a fresh install starts with, and resolving a
//! presented token to who it belongs to and what it may do.

use sqlx::Row;
use tollgate_core::KeyHash;
use tollgate_core::keys::{NewSecret, SecretKind};
use tollgate_core::time::now_ms;

use crate::audit::Actor;
use crate::error::{Result, StoreError, conflict_on_unique};
use crate::store::Store;

/// The fixed id and name of the bootstrap admin token's row, so re-bootstrapping replaces it.
const BOOTSTRAP: &str = "bootstrap";

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Keys, budgets and limits of one team.
    TeamAdmin,
    /// Read-only spend reports.
    Finance,
}

impl Role {
    /// The stored (and serialised) form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TeamAdmin => "team_admin",
            Role::Finance => "finance",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "team_admin" => Some(Role::TeamAdmin),
            "finance" => Some(Role::Finance),
            _ => None,
        }
    }
}

/// Who presented an admin token: its row, role and (for `team_admin`) team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPrincipal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub team_id: Option<String>,
}

/// What [`Store::ensure_admin_token`] did at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// No live admin token existed: this one was generated and stored. Shown once.
    Generated(String),
    /// The environment's token is the live `bootstrap` admin token (stored now or earlier).
    EnvToken,
    /// The environment's token was revoked (at this time, epoch ms) and stays revoked: it opens
    /// nothing. Revocation outlives restarts; a new token in the environment replaces it.
    EnvTokenRevoked { revoked_at_ms: i64 },
    /// No environment token and a live admin token exists: nothing to do.
    Existing,
}

impl Store {
    /// Makes sure an admin can log in on a fresh install.
    ///
    /// With `Some(token)` (e.g. from `TOLLGATE_ADMIN_TOKEN`) the `bootstrap` admin row is set to
    /// that token's hash when it holds another (a new token in the environment rotates it; the
    /// change is in the audit log, by the actor `environment`). The same token again changes
    /// nothing, so a token revoked through the admin API stays revoked across restarts
    /// ([`AdminBootstrap::EnvTokenRevoked`]). Any string is accepted, not only a well-formed
    /// `tga-…` token. With `None`, if no live admin-role token exists, a `tga-…` token is
    /// generated and stored as `bootstrap` and returned once for the caller to print.
    pub async fn ensure_admin_token(&self, env_token: Option<&str>) -> Result<AdminBootstrap> {
        match env_token {
            Some(token) => self.set_env_admin_token(token).await,
            None => {
                let secret = NewSecret::generate(SecretKind::AdminToken);
                // One statement, so two replicas starting at once cannot both mint a token: the
                // loser either sees a live admin in NOT EXISTS or hits the winner's row and the
                // conditional DO UPDATE leaves it alone, returning no row.
                let stored = sqlx::query(
                    "INSERT INTO admin_tokens (id, name, role, token_hash, created_at_ms) \
                     SELECT $1, $1, 'admin', $2, $3 \
                     WHERE NOT EXISTS (SELECT 1 FROM admin_tokens \
                                       WHERE role = 'admin' AND revoked_at_ms IS NULL) \
                     ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, \
                     created_at_ms = excluded.created_at_ms, role = 'admin', team_id = NULL, \
                     revoked_at_ms = NULL WHERE admin_tokens.revoked_at_ms IS NOT NULL \
                     RETURNING id",
                )
                .bind(BOOTSTRAP)
                .bind(secret.hash.to_hex())
                .bind(now_ms())
                .fetch_optional(&self.pool)
                .await?;
                Ok(match stored {
                    Some(_) => AdminBootstrap::Generated(secret.token),
                    None => AdminBootstrap::Existing,
                })
            }
        }
    }

    async fn set_env_admin_token(&self, token: &str) -> Result<AdminBootstrap> {
        if token.trim().is_empty() {
            return Err(StoreError::Invalid(
                "the admin token must not be empty".into(),
            ));
        }
        let hash = KeyHash::of(token).to_hex();
        let before = self.admin_token(BOOTSTRAP).await?;
        // Only a different hash replaces the row: restarting with the token that is already
        // stored must not clear a revocation made through the admin API. Two replicas starting
        // with one new token race harmlessly: the second finds the hash equal and returns no row.
        let replaced = sqlx::query(
            "INSERT INTO admin_tokens (id, name, role, token_hash, created_at_ms) \
             VALUES ($1, $1, 'admin', $2, $3) \
             ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, \
             created_at_ms = excluded.created_at_ms, role = 'admin', team_id = NULL, \
             revoked_at_ms = NULL WHERE admin_tokens.token_hash <> excluded.token_hash \
             RETURNING id",
        )
        .bind(BOOTSTRAP)
        .bind(&hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                "that admin token is already in use by another admin token row".into()
            })
        })?;
        let after = self.admin_token(BOOTSTRAP).await?;
        if replaced.is_some()
            && let Some(before) = &before
        {
            // A rotation by whoever controls the environment: as visible as one made through
            // the admin API.
            let actor = Actor {
                id: "environment".into(),
                name: "TOLLGATE_ADMIN_TOKEN".into(),
                role: "operator".into(),
            };
            let view = |t: &AdminToken| serde_json::to_value(t).ok();
            self.write_audit(
                &actor,
                "serve: TOLLGATE_ADMIN_TOKEN replaced the bootstrap admin token",
                BOOTSTRAP,
                view(before).as_ref(),
                after.as_ref().and_then(view).as_ref(),
            )
            .await?;
        }
        Ok(match after.and_then(|t| t.revoked_at_ms) {
            Some(revoked_at_ms) => AdminBootstrap::EnvTokenRevoked { revoked_at_ms },
            None => AdminBootstrap::EnvToken,
        })
    }

    /// The live (not revoked) admin token with this value, looked up by hash.
    pub async fn admin_for_token(&self, token: &str) -> Result<Option<AdminPrincipal>> {
        let row = sqlx::query(
            "SELECT id, name, role, team_id FROM admin_tokens \
             WHERE token_hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(KeyHash::of(token).to_hex())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let role: String = row.try_get("role")?;
        let role = Role::parse(&role)
            .ok_or_else(|| StoreError::Invalid(format!("admin token has unknown role {role:?}")))?;
        Ok(Some(AdminPrincipal {
            token_id: row.try_get("id")?,
            name: row.try_get("name")?,
            role,
            team_id: row.try_get("team_id")?,
        }))
    }

    /// Issues an admin token (`team_admin` needs a team; the others must not have one). The
    /// secret is returned once; only its hash is stored.
    pub async fn create_admin_token(
        &self,
        name: &str,
        role: Role,
        team_id: Option<&str>,
    ) -> Result<(AdminToken, String)> {
        let name = crate::teams::clean_name("admin token name", name)?;
        if (role == Role::TeamAdmin) != team_id.is_some() {
            return Err(StoreError::Invalid(
                "a team_admin token needs a team, and only a team_admin token has one".into(),
            ));
        }
        let secret = NewSecret::generate(SecretKind::AdminToken);
        let token = AdminToken {
            id: format!("adm_{}", secret.id),
            name,
            role,
            team_id: team_id.map(str::to_string),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        sqlx::query(
            "INSERT INTO admin_tokens (id, name, role, team_id, token_hash, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(role.as_str())
        .bind(token.team_id.as_deref())
        .bind(secret.hash.to_hex())
        .bind(token.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_on_unique(e, || "admin token collision; retry".into()))?;
        Ok((token, secret.token))
    }

    /// Every admin token (never its secret), oldest first.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminToken>> {
        let rows = sqlx::query(
            "SELECT id, name, role, team_id, created_at_ms, revoked_at_ms FROM admin_tokens \
             ORDER BY created_at_ms, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(admin_token_from_row).collect()
    }

    pub async fn admin_token(&self, id: &str) -> Result<Option<AdminToken>> {
        let row = sqlx::query(
            "SELECT id, name, role, team_id, created_at_ms, revoked_at_ms FROM admin_tokens \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(admin_token_from_row).transpose()
    }

    /// Revokes an admin token now (the first revocation time is kept).
    pub async fn revoke_admin_token(&self, id: &str) -> Result<Option<AdminToken>> {
        sqlx::query(
            "UPDATE admin_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.admin_token(id).await
    }
}

/// An admin token as the admin API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub team_id: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

fn admin_token_from_row(row: &sqlx::any::AnyRow) -> Result<AdminToken> {
    let role: String = row.try_get("role")?;
    Ok(AdminToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Invalid(format!("admin token has unknown role {role:?}")))?,
        team_id: row.try_get("team_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}
