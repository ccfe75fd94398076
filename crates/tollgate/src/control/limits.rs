//! The routes of `/admin/v1/budgets` and `/admin/v1/rate-limits` (their bodies, rules and views
//! are in [`super::budgets`]). A team_admin manages its own team's budgets and limits; finance
//! reads every budget.

use serde_json::{Value, json};

use tollgate_core::ApiError;
use tollgate_core::budget::BudgetDef;
use tollgate_core::ratelimit::RateLimitDef;
use tollgate_store::{BudgetSpec, Team};

use super::budgets;
use super::page::{Listed, Query};
use super::reply::{Answer, created, not_found, ok, read_json, store_error};
use super::routes::check_team;
use super::{Call, Control};
use crate::validate::FieldErrors;

impl Control {
    /// A budget the caller may see or change: 404, then 403.
    async fn own_budget(&self, call: &Call<'_>, id: &str) -> Result<BudgetDef, ApiError> {
        let budget = self
            .store
            .budget(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("budget", id))?;
        check_team(call.principal, &budget.team_id)?;
        Ok(budget)
    }

    /// Applies budget changes to this process at once (others follow within a sync interval).
    async fn reload_budgets(&self) -> Result<(), ApiError> {
        let Some(live) = &self.live else {
            return Ok(());
        };
        let all = self.store.list_budgets(None).await.map_err(store_error)?;
        live.budgets.set_budgets(all);
        Ok(())
    }

    async fn budget_view(&self, budget: &BudgetDef) -> Result<Value, ApiError> {
        budgets::show(&self.store, budget, self.calendar())
            .await
            .map_err(store_error)
    }

    /// Resolves a body's `team` (id or name, which the caller must own) and optional `key` id
    /// (which must belong to that team).
    async fn scope(
        &self,
        call: &Call<'_>,
        team: Option<&str>,
        key: Option<&str>,
    ) -> Result<(Team, Option<String>), ApiError> {
        let Some(team) = team else {
            let mut errors = FieldErrors::default();
            errors.push("team", "is required (a team id or name)");
            errors.into_result()?;
            return Err(not_found("team", ""));
        };
        let team = self.own_team(call, team).await?;
        let Some(key) = key else {
            return Ok((team, None));
        };
        match self.store.key(key).await.map_err(store_error)? {
            Some(k) if k.team_id == team.id => Ok((team, Some(k.id))),
            Some(_) => {
                let mut errors = FieldErrors::default();
                errors.push(
                    "key",
                    format!("key '{key}' does not belong to team '{}'", team.name),
                );
                errors.into_result()?;
                Err(not_found("key", key))
            }
            None => Err(not_found("key", key)),
        }
    }

    pub(super) async fn list_budgets(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["team", "limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        errors.into_result()?;
        let team = self.team_filter(call, &query).await?;
        let all = self
            .store
            .list_budgets(team.as_deref())
            .await
            .map_err(store_error)?;
        // By team, then id: stable, and a team's budgets sit together.
        let listed = Listed::slice(all, &page, |b| format!("{}.{}", b.team_id, b.id));
        let mut data = Vec::with_capacity(listed.data.len());
        for budget in &listed.data {
            data.push(self.budget_view(budget).await?);
        }
        let shown = Listed {
            data,
            has_more: listed.has_more,
            next_after: listed.next_after,
        };
        ok(shown.to_json())
    }

    pub(super) async fn get_budget(&self, call: &Call<'_>) -> Answer {
        let budget = self.own_budget(call, call.param(0)).await?;
        ok(self.budget_view(&budget).await?)
    }

    pub(super) async fn create_budget(&self, call: &Call<'_>) -> Answer {
        let body: budgets::CreateBudget = read_json(call.body)?;
        let (team, key) = self
            .scope(call, body.team.as_deref(), body.key.as_deref())
            .await?;
        let spec = budgets::create_spec(&body, &team.id, key.as_deref())?;
        self.refuse_a_second(&spec, None).await?;
        let budget = self
            .store
            .create_budget(&spec, self.calendar())
            .await
            .map_err(store_error)?;
        self.reload_budgets().await?;
        self.audit(call, &budget.id, None, Some(&budgets::definition(&budget)))
            .await;
        created(self.budget_view(&budget).await?)
    }

    /// One budget per team (or key) and period: a second would be enforced beside the first,
    /// and `tollgate budget set` would change only one of them. 409, naming the one to change.
    async fn refuse_a_second(
        &self,
        spec: &BudgetSpec,
        except: Option<&str>,
    ) -> Result<(), ApiError> {
        let existing = self
            .store
            .list_budgets(Some(&spec.team_id))
            .await
            .map_err(store_error)?;
        let Some(other) = existing.iter().find(|b| {
            b.key_id == spec.key_id && b.period == spec.period && Some(b.id.as_str()) != except
        }) else {
            return Ok(());
        };
        let scope = match &spec.key_id {
            Some(key) => format!("key '{key}'"),
            None => "this team".to_string(),
        };
        Err(ApiError::new(
            409,
            "invalid_request_error",
            "conflict",
            format!(
                "{scope} already has a {} budget ({}); change it with PATCH /admin/v1/budgets/{}.",
                spec.period.as_str(),
                other.id,
                other.id
            ),
        ))
    }

    pub(super) async fn update_budget(&self, call: &Call<'_>) -> Answer {
        let current = self.own_budget(call, call.param(0)).await?;
        let body: budgets::UpdateBudget = read_json(call.body)?;
        let spec = budgets::update_spec(&current, &body)?;
        self.refuse_a_second(&spec, Some(&current.id)).await?;
        let updated = self
            .store
            .update_budget(&current.id, &spec, body.reset)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found("budget", &current.id))?;
        self.reload_budgets().await?;
        self.audit(
            call,
            &current.id,
            Some(&budgets::definition(&current)),
            Some(&budgets::definition(&updated)),
        )
        .await;
        ok(self.budget_view(&updated).await?)
    }

    pub(super) async fn delete_budget(&self, call: &Call<'_>) -> Answer {
        let current = self.own_budget(call, call.param(0)).await?;
        if !self
            .store
            .delete_budget(&current.id)
            .await
            .map_err(store_error)?
        {
            return Err(not_found("budget", &current.id));
        }
        self.reload_budgets().await?;
        self.audit(
            call,
            &current.id,
            Some(&budgets::definition(&current)),
            None,
        )
        .await;
        ok(json!({"object": "budget", "id": current.id, "deleted": true}))
    }

    pub(super) async fn list_rate_limits(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["team", "limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        errors.into_result()?;
        let team = self.team_filter(call, &query).await?;
        let limits = self
            .store
            .list_rate_limits(team.as_deref())
            .await
            .map_err(store_error)?;
        let listed = Listed::slice(limits, &page, rate_limit_cursor);
        ok(listed.map(|l| budgets::rate_limit_view(&l)).to_json())
    }

    pub(super) async fn set_rate_limit(&self, call: &Call<'_>) -> Answer {
        let body: budgets::SetRateLimit = read_json(call.body)?;
        let (team, key) = self
            .scope(call, body.team.as_deref(), body.key.as_deref())
            .await?;
        let def = budgets::rate_limit_def(&body, &team.id, key.as_deref())?;
        let before = self
            .store
            .list_rate_limits(Some(&team.id))
            .await
            .map_err(store_error)?
            .into_iter()
            .find(|l| l.key_id == def.key_id)
            .map(|l| budgets::rate_limit_view(&l));
        self.store.set_rate_limit(&def).await.map_err(store_error)?;
        let after = budgets::rate_limit_view(&def);
        let target = match &def.key_id {
            Some(k) => format!("{}/{k}", def.team_id),
            None => def.team_id.clone(),
        };
        self.audit(call, &target, before.as_ref(), Some(&after))
            .await;
        ok(after)
    }
}

/// Team, then key (the team-wide limit first).
fn rate_limit_cursor(l: &RateLimitDef) -> String {
    format!("{}.{}", l.team_id, l.key_id.as_deref().unwrap_or(""))
}
