//! The audit log: every change made through the admin API that succeeded, with who made it
//! (the admin token's id, name and role), the route, the target and the resource before and
//! after; `GET /admin/v1/audit` pages through it, oldest first, for `admin` tokens.

use serde_json::Value;

use tollgate_store::{Actor, AuditEntry};

use super::page::{Listed, Query, numbered};
use super::reply::{Answer, json, ok, store_error};
use super::{Call, Control};
use crate::validate::FieldErrors;

impl Control {
    /// Records one change. The change is already committed when this runs (the store writes
    /// each resource in its own transaction), so a failure to record it is logged loudly
    /// rather than turned into an error that would make the caller retry a change that
    /// happened.
    pub(super) async fn audit(
        &self,
        call: &Call<'_>,
        target: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) {
        let actor = Actor {
            id: call.principal.token_id.clone(),
            name: call.principal.name.clone(),
            role: call.principal.role.as_str().to_string(),
        };
        let action = call.route.action();
        if let Err(error) = self
            .store
            .write_audit(&actor, &action, target, before, after)
            .await
        {
            tracing::error!(%error, %action, target, actor = %actor.id, "audit log write failed; the change was made but is not in the audit log");
        }
    }

    pub(super) async fn list_audit(&self, call: &Call<'_>) -> Answer {
        let query = Query::parse(call.query, &["limit", "after"])?;
        let mut errors = FieldErrors::default();
        let page = query.page(&mut errors);
        errors.into_result()?;
        let rows = self
            .store
            .list_audit(page.numbered_cursor()?, page.fetch())
            .await
            .map_err(store_error)?;
        let listed = Listed::from_fetched(rows, &page, |e| numbered(e.at_ms, &e.id));
        ok(listed.map(|e| entry_view(&e)).to_json())
    }
}

fn entry_view(entry: &AuditEntry) -> Value {
    let mut value = json(entry);
    value["object"] = "audit_entry".into();
    value
}
