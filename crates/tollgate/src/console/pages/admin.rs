//! Teams (list and create), the audit log and admin tokens.

use std::collections::HashMap;

use http::Method;
use maud::html;
use serde_json::{Value, json};

use tollgate_store::Role;

use super::super::form::{Form, encode};
use super::super::html::{
    self, Section, copy_button, csrf_field, int, path_segment, team_href, usd, when,
};
use super::super::{Console, Ctx, Outcome};
use super::overview::rows;
use super::refused_to;

pub async fn teams(console: &Console, ctx: &Ctx) -> Outcome {
    if ctx.who.role == Role::TeamAdmin {
        return Outcome::Redirect {
            location: super::super::home(&ctx.who),
            flash: None,
        };
    }
    let teams = match console
        .get(ctx, "/admin/v1/teams", Some("limit=1000"))
        .await
    {
        Ok(t) => t,
        Err(e) => return Outcome::problem(&e),
    };
    let spend = console
        .get(ctx, "/admin/v1/reports/spend", Some("group_by=team"))
        .await
        .unwrap_or(Value::Null);
    let month: HashMap<String, i64> = rows(&spend)
        .map(|r| (html::text(&r["team_id"]), int(&r["cost_nano_usd"])))
        .collect();
    let list: Vec<&Value> = teams["data"].as_array().into_iter().flatten().collect();
    let admin = ctx.who.role == Role::Admin;
    let body = html! {
        @if list.is_empty() {
            (html::empty_state("No teams yet", html! {
                p { "Every call through tollgate is charged to a team. Create one for each group that has its own budget or cost centre." }
                @if !admin { p { "An admin creates teams." } }
            }))
        } @else {
            section.panel {
                table #teams {
                    thead { tr { th { "Team" } th { "Cost centre" } th.num { "Spend this month" } } }
                    tbody {
                        @for t in &list {
                            @let id = html::text(&t["id"]);
                            tr {
                                td { a href=(team_href(&id)) { (html::text(&t["name"])) }
                                     @if t["disabled"].as_bool() == Some(true) { " " span.badge.danger { "disabled" } } }
                                td { (html::text(&t["cost_centre"])) }
                                td.num { (usd(month.get(&id).copied().unwrap_or(0))) }
                            }
                        }
                    }
                }
                @if teams["has_more"].as_bool() == Some(true) { p.muted { "The first 1,000 teams are listed." } }
            }
        }
        @if admin {
            section.panel {
                h2 { "Create a team" }
                form.row #new-team method="post" action="/console/teams" {
                    (csrf_field(&ctx.csrf))
                    label { "Name" input name="name" required maxlength="64" placeholder="search"; }
                    label { "Cost centre (optional)" input name="cost_centre" placeholder="CC-1234"; }
                    button.primary type="submit" { "Create team" }
                }
            }
        }
    };
    Outcome::page("Teams", Section::Teams, body)
}

pub async fn create_team(console: &Console, ctx: &Ctx, form: &Form) -> Outcome {
    let mut body = json!({ "name": form.filled("name") });
    if let Some(cc) = form.filled("cost_centre") {
        body["cost_centre"] = json!(cc);
    }
    match console
        .call(ctx, Method::POST, "/admin/v1/teams", None, Some(&body))
        .await
    {
        Ok(team) => Outcome::redirect(
            team_href(&html::text(&team["id"])),
            format!(
                "Team {} created. Issue its first key below.",
                html::text(&team["name"])
            ),
        ),
        Err(error) => refused_to("/console/teams".to_string(), &error),
    }
}

pub async fn audit(console: &Console, ctx: &Ctx, q: &Form) -> Outcome {
    let mut query = "limit=100".to_string();
    if let Some(after) = q.filled("after") {
        query.push_str(&format!("&after={}", encode(after)));
    }
    let log = match console.get(ctx, "/admin/v1/audit", Some(&query)).await {
        Ok(l) => l,
        Err(e) => return Outcome::problem(&e),
    };
    let entries: Vec<&Value> = log["data"].as_array().into_iter().flatten().collect();
    let body = html! {
        @if entries.is_empty() {
            p.muted { "No changes yet. Every change made through the console, the admin API or the CLI is recorded here, with who made it." }
        } @else {
            section.panel {
                table #audit {
                    thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th.hide-phone { "Change" } } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { (when(int(&e["at_ms"]))) }
                                td { (html::text(&e["actor_name"])) " " span.muted { "(" (html::text(&e["actor_role"])) ", " code { (html::text(&e["actor_id"])) } ")" } }
                                td { code { (html::text(&e["action"])) } }
                                td { code { (html::text(&e["target"])) } }
                                td.hide-phone { code { (change_summary(&e["before"], &e["after"])) } }
                            }
                        }
                    }
                }
            }
            @if let (Some(true), Some(next)) = (log["has_more"].as_bool(), log["next_after"].as_str()) {
                p { a href=(format!("/console/audit?after={}", encode(next))) { "Older entries" } }
            }
        }
    };
    Outcome::page("Audit log", Section::Audit, body)
}

/// What changed, briefly: the fields whose value differs.
fn change_summary(before: &Value, after: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(after) = after.as_object() {
        for (k, v) in after {
            if before.get(k) != Some(v) && !k.ends_with("_ms") && k != "secret" {
                parts.push(format!("{k}: {}", html::text(v)));
            }
        }
    }
    if parts.is_empty() && after.is_null() && !before.is_null() {
        return "removed".to_string();
    }
    let mut text = parts.join(", ");
    if text.chars().count() > 160 {
        text = text.chars().take(159).collect::<String>() + "…";
    }
    text
}

pub async fn tokens(console: &Console, ctx: &Ctx) -> Outcome {
    let list = match console
        .get(ctx, "/admin/v1/admin-tokens", Some("limit=1000"))
        .await
    {
        Ok(l) => l,
        Err(e) => return Outcome::problem(&e),
    };
    let teams = console
        .get(ctx, "/admin/v1/teams", Some("limit=1000"))
        .await
        .unwrap_or(Value::Null);
    let team_names = super::team_names(&teams);
    let body = html! {
        section.panel {
            table #tokens {
                thead { tr { th { "Name" } th { "Id" } th { "Role" } th { "Team" } th.hide-phone { "Created" } th { "" } } }
                tbody {
                    @for t in list["data"].as_array().into_iter().flatten() {
                        @let id = html::text(&t["id"]);
                        @let team = t["team_id"].as_str().map(|tid| team_names.get(tid).cloned().unwrap_or(tid.to_string()));
                        tr {
                            td { (html::text(&t["name"])) }
                            td { code { (id) } }
                            td { (html::text(&t["role"])) }
                            td { (team.unwrap_or_else(|| "—".to_string())) }
                            td.hide-phone { (when(int(&t["created_at_ms"]))) }
                            td {
                                @if !t["revoked_at_ms"].is_null() { span.badge.danger { "revoked" } }
                                @else if id == ctx.actor.token_id { span.muted { "yours" } }
                                @else {
                                    form.inline method="post" action=(format!("/console/admin-tokens/{}/revoke", path_segment(&id))) data-confirm="Revoke this admin token? Its console sessions end at once." {
                                        (csrf_field(&ctx.csrf))
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Create an admin token" }
            form.row #new-token method="post" action="/console/admin-tokens" {
                (csrf_field(&ctx.csrf))
                (console.once_field(ctx))
                label { "Name" input name="name" required placeholder="finance-alice"; }
                label { "Role" select name="role" {
                    option value="finance" { "finance (reads spend, reports)" }
                    option value="team_admin" { "team admin (one team)" }
                    option value="admin" { "admin (everything)" }
                } }
                label { "Team (for a team admin)" select name="team" {
                    option value="" { "—" }
                    @for (id, name) in &team_names { option value=(id) { (name) } }
                } }
                button.primary type="submit" { "Create token" }
            }
        }
    };
    Outcome::page("Admin tokens", Section::Tokens, body)
}

pub async fn create_token(console: &Console, ctx: &Ctx, form: &Form) -> Outcome {
    if !console.first_send(ctx, form) {
        return Outcome::redirect(
            "/console/admin-tokens",
            "Not done: that form was already sent (a reload or a second click). No second \
             token was created; the list below shows every token.",
        );
    }
    let role = form.filled("role").unwrap_or("finance");
    let mut body = json!({ "name": form.filled("name"), "role": role });
    if role == "team_admin" {
        body["team"] = json!(form.filled("team"));
    }
    match console
        .call(
            ctx,
            Method::POST,
            "/admin/v1/admin-tokens",
            None,
            Some(&body),
        )
        .await
    {
        Ok(token) => Outcome::page(
            "Admin token created",
            Section::Tokens,
            html! {
                p { "Token " strong { (html::text(&token["name"])) } " (" code { (html::text(&token["id"])) } "), role " (html::text(&token["role"])) "." }
                div.secret { code #secret { (html::text(&token["secret"])) } (copy_button("secret")) }
                p.problem { strong { "Copy it now: this is the only time it is shown." } " Give it to its holder over a channel you trust; they sign in to this console with it." }
                p { a.button.primary href="/console/admin-tokens" { "Done" } }
            },
        ),
        Err(error) => refused_to("/console/admin-tokens".to_string(), &error),
    }
}

pub async fn revoke_token(console: &Console, ctx: &Ctx, id: &str) -> Outcome {
    let path = format!("/admin/v1/admin-tokens/{}", path_segment(id));
    match console.call(ctx, Method::DELETE, &path, None, None).await {
        Ok(_) => Outcome::redirect(
            "/console/admin-tokens",
            format!("Admin token {id} revoked."),
        ),
        Err(error) => refused_to("/console/admin-tokens".to_string(), &error),
    }
}
