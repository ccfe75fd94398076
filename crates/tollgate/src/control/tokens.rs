//! `/admin/v1/admin-tokens` (admin only): issue an admin token with a role (the secret is shown
//! once; only its hash is stored), list them, revoke one. Revoking the token making the call is
//! allowed: it works for this call and fails from the next.

use serde::Deserialize;

use tollgate_store::{AdminToken, Role};

use super::page::{Listed, Query, numbered};
use super::reply::{Answer, created, json, not_found, ok, read_json, store_error};
use super::{Call, Control};
use crate::validate::{FieldErrors, valid_key_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAdminToken {
    name: Option<String>,
    /// `admin`, `team_admin` or `finance`.
    role: Option<String>,
    /// The team (id or name) of a `team_admin` token; the other roles take none.
    team: Option<String>,
}

impl Control {
    pub(super) async fn list_admin_tokens(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        errors.into_result()?;
        let tokens = self.store.list_admin_tokens().await.map_err(store_error)?;
        let listed = Listed::slice(tokens, &page, |t| numbered(t.created_at_ms, &t.id));
        ok(listed.map(|t| token_view(&t)).to_json())
    }

    pub(super) async fn create_admin_token(&self, call: &Call<'_>) -> Answer {
        let body: CreateAdminToken = read_json(call.body)?;
        let mut errors = FieldErrors::default();
        errors.check("name", body.name.as_deref(), valid_key_name);
        let role = match body.role.as_deref() {
            None => {
                errors.push("role", "is required (admin, team_admin or finance)");
                None
            }
            Some(text) => {
                let role = Role::parse(text);
                if role.is_none() {
                    errors.push("role", "must be admin, team_admin or finance");
                }
                role
            }
        };
        match (role, &body.team) {
            (Some(Role::TeamAdmin), None) => {
                errors.push("team", "is required for a team_admin token");
            }
            (Some(Role::Admin | Role::Finance), Some(_)) => {
                errors.push("team", "is only for a team_admin token");
            }
            _ => {}
        }
        errors.into_result()?;
        let team = match &body.team {
            Some(t) => Some(self.team(t).await?.id),
            None => None,
        };
        let (token, secret) = self
            .store
            .create_admin_token(
                body.name.as_deref().unwrap_or_default(),
                role.unwrap_or(Role::Finance),
                team.as_deref(),
            )
            .await
            .map_err(store_error)?;
        let after = token_view(&token);
        self.audit(call, &token.id, None, Some(&after)).await;
        let mut reply = after;
        reply["secret"] = secret.into();
        created(reply)
    }

    pub(super) async fn revoke_admin_token(&self, call: &Call<'_>) -> Answer {
        let id = call.param(0);
        let before = self
            .store
            .admin_token(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("admin token", id))?;
        let token = self
            .store
            .revoke_admin_token(&before.id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("admin token", id))?;
        let after = token_view(&token);
        self.audit(call, &token.id, Some(&token_view(&before)), Some(&after))
            .await;
        ok(after)
    }
}

fn token_view(token: &AdminToken) -> serde_json::Value {
    let mut value = json(token);
    value["object"] = "admin_token".into();
    value
}
