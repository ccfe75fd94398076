//! `/admin/v1/teams`: create, list, read and change teams. Only `admin` creates teams, sets a
//! cost centre (finance books spend by it) or disables a team; a `team_admin` may read its own
//! team and change its labels.

use std::collections::BTreeMap;

use serde::Deserialize;

use tollgate_core::ApiError;
use tollgate_store::{Role, Team, TeamUpdate};

use super::page::{Listed, Query};
use super::reply::{Answer, created, json, not_found, ok, read_json, store_error};
use super::routes::{check_team, forbidden};
use super::{Call, Control};
use crate::validate::{
    FieldErrors, check_labels, check_models, valid_cost_centre, valid_team_name,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTeam {
    name: Option<String>,
    /// US spelling `cost_center` accepted too.
    #[serde(alias = "cost_center")]
    cost_centre: Option<String>,
    /// Models the team's keys may call (`gpt-5*` matches a prefix); absent: all.
    allowed_models: Option<Vec<String>>,
}

/// `PATCH /admin/v1/teams/{team}`: absent fields keep their value; `cost_centre: null` removes
/// it; `labels` replaces the whole set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTeam {
    #[serde(
        default,
        alias = "cost_center",
        deserialize_with = "super::budgets::present"
    )]
    cost_centre: Option<Option<String>>,
    labels: Option<BTreeMap<String, String>>,
    disabled: Option<bool>,
}

impl Control {
    /// A team by id or name, or 404.
    pub(super) async fn team(&self, id_or_name: &str) -> Result<Team, ApiError> {
        self.store
            .team(id_or_name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("team", id_or_name))
    }

    /// A team by id or name that the caller may act on: 404, then 403.
    pub(super) async fn own_team(
        &self,
        call: &Call<'_>,
        id_or_name: &str,
    ) -> Result<Team, ApiError> {
        let team = self.team(id_or_name).await?;
        check_team(call.principal, &team.id)?;
        Ok(team)
    }

    /// The `?team=` filter of a list, fenced for a team_admin (its own team whether it names
    /// it or not; another team is 403).
    pub(super) async fn team_filter(
        &self,
        call: &Call<'_>,
        query: &Query,
    ) -> Result<Option<String>, ApiError> {
        match query.get("team") {
            Some(t) => Ok(Some(self.own_team(call, t).await?.id)),
            None => Ok(call.fence().map(str::to_string)),
        }
    }

    pub(super) async fn list_teams(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        errors.into_result()?;
        let mut teams = self.store.list_teams().await.map_err(store_error)?;
        if let Some(own) = call.fence() {
            teams.retain(|t| t.id == own);
        }
        // Names are unique, and byte order is the same on every database.
        ok(Listed::slice(teams, &page, |t| t.name.clone()).to_json())
    }

    pub(super) async fn get_team(&self, call: &Call<'_>) -> Answer {
        ok(json(self.own_team(call, call.param(0)).await?))
    }

    pub(super) async fn create_team(&self, call: &Call<'_>) -> Answer {
        let body: CreateTeam = read_json(call.body)?;
        let mut errors = FieldErrors::default();
        let name = errors.check("name", body.name.as_deref(), valid_team_name);
        if let Some(cc) = body.cost_centre.as_deref() {
            errors.check("cost_centre", Some(cc), valid_cost_centre);
        }
        let allowed = check_models(&mut errors, body.allowed_models.as_deref());
        errors.into_result()?;
        let team = self
            .store
            .create_team_with(
                name.unwrap_or_default(),
                body.cost_centre.as_deref(),
                allowed.as_deref(),
            )
            .await
            .map_err(store_error)?;
        let after = json(&team);
        self.audit(call, &team.id, None, Some(&after)).await;
        created(after)
    }

    pub(super) async fn update_team(&self, call: &Call<'_>) -> Answer {
        let before = self.own_team(call, call.param(0)).await?;
        let body: UpdateTeam = read_json(call.body)?;
        if call.principal.role != Role::Admin {
            let admin_only: Vec<&str> = [
                ("cost_centre", body.cost_centre.is_some()),
                ("disabled", body.disabled.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, given)| given.then_some(field))
            .collect();
            if !admin_only.is_empty() {
                return Err(forbidden(format!(
                    "Only an admin token may change {} (a team_admin may change labels).",
                    admin_only.join(" and ")
                )));
            }
        }
        let mut errors = FieldErrors::default();
        if let Some(Some(cc)) = &body.cost_centre {
            errors.check("cost_centre", Some(cc), valid_cost_centre);
        }
        if let Some(labels) = &body.labels {
            check_labels(&mut errors, labels);
        }
        errors.into_result()?;
        let update = TeamUpdate {
            cost_centre: body.cost_centre,
            labels: body.labels,
            disabled: body.disabled,
        };
        let team = self
            .store
            .update_team(&before.id, &update)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("team", call.param(0)))?;
        if update.disabled.is_some() {
            // This process refuses (or admits again) the team's keys at once; the others follow
            // within `store.key_refresh_ms`.
            self.recache_team_keys(&team.id).await?;
        }
        let after = json(&team);
        self.audit(call, &team.id, Some(&json(&before)), Some(&after))
            .await;
        ok(after)
    }
}
