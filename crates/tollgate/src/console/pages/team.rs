//! A team (admin, its team admin; finance reads): budgets with committed, reserved and
//! remaining amounts and reset times, keys (issue with the secret shown once, rotate with
//! grace, revoke, model allow-lists), rate limits, this month's spend by key, user and model,
//! and its most expensive sessions. Every form carries out one admin API operation.

use http::Method;
use maud::{Markup, html};
use serde_json::{Value, json};

use tollgate_core::ApiError;
use tollgate_store::Role;

use super::super::form::{Form, encode};
use super::super::html::{
    self, Section, copy_button, count, csrf_field, int, path_segment, team_href, usd, when,
};
use super::super::{Console, Ctx, Outcome};
use super::overview::rows;
use super::refused_to;

pub async fn page(console: &Console, ctx: &Ctx, team: &str) -> Outcome {
    match build(console, ctx, team).await {
        Ok((title, body)) => Outcome::page(title, Section::Teams, body),
        Err(error) => Outcome::problem(&error),
    }
}

fn can_change(ctx: &Ctx) -> bool {
    ctx.who.role != Role::Finance
}

async fn build(console: &Console, ctx: &Ctx, team: &str) -> Result<(String, Markup), ApiError> {
    let seg = path_segment(team);
    let info = console
        .get(ctx, &format!("/admin/v1/teams/{seg}"), None)
        .await?;
    let id = html::text(&info["id"]);
    let name = html::text(&info["name"]);
    let filter = format!("team={}&limit=1000", encode(&id));
    let keys_path = format!("/admin/v1/teams/{}/keys", path_segment(&id));
    let sessions_path = format!("/admin/v1/teams/{}/sessions", path_segment(&id));
    let spend_query = |group: &str| format!("group_by={group}&team={}", encode(&id));
    let (key_q, user_q, model_q) = (
        spend_query("key"),
        spend_query("user"),
        spend_query("model"),
    );
    let spend = "/admin/v1/reports/spend";
    // Independent reads, at once: the page costs its slowest read, not their sum.
    let (budgets, keys, limits, by_key, by_user, by_model, sessions) = tokio::try_join!(
        console.get(ctx, "/admin/v1/budgets", Some(&filter)),
        console.get(ctx, &keys_path, Some("limit=1000")),
        console.get(ctx, "/admin/v1/rate-limits", Some(&filter)),
        console.get(ctx, spend, Some(&key_q)),
        console.get(ctx, spend, Some(&user_q)),
        console.get(ctx, spend, Some(&model_q)),
        console.get(ctx, &sessions_path, Some("limit=10")),
    )?;

    let change = can_change(ctx);
    // One token for this page's secret-showing forms: after one is sent, the others need a
    // fresh page (which the result page links back to).
    let once = console.once_field(ctx);
    let team_path = team_href(&id);
    let key_list: Vec<&Value> = keys["data"].as_array().into_iter().flatten().collect();
    let live_keys: Vec<&&Value> = key_list
        .iter()
        .filter(|k| k["revoked_at_ms"].is_null())
        .collect();
    let no_traffic = int(&by_key["totals"]["requests"]) == 0;
    let body = html! {
        p.muted {
            "Cost centre " strong { (html::text(&info["cost_centre"])) } " · team id " code { (id) }
            @if info["disabled"].as_bool() == Some(true) { " · " span.badge.danger { "disabled" } }
            @if let Some(models) = info["allowed_models"].as_array() {
                " · models allowed: " (models.iter().map(html::text).collect::<Vec<_>>().join(", "))
            }
        }
        @if no_traffic {
            (setup_snippets(&ctx.base_url, Some(&name)))
        }
        section.panel #budgets {
            h2 { "Budgets" }
            @if budgets["data"].as_array().is_none_or(Vec::is_empty) {
                p.muted { "No budget yet: this team can spend without limit. A hard limit refuses calls before they overspend; the soft limit alerts first." }
            } @else {
                table {
                    thead { tr {
                        th { "Scope" } th { "Period" } th.num { "Committed" } th.num { "Reserved" } th.num { "Remaining" } th.num { "Limit" } th { "" } th { "Resets" }
                        @if change { th { "Change" } }
                    } }
                    tbody {
                        @for b in budgets["data"].as_array().into_iter().flatten() {
                            @let bid = html::text(&b["id"]);
                            tr data-budget=(bid) {
                                td { (html::text(&b["scope"])) @if !b["key_id"].is_null() { " " code { (html::text(&b["key_id"])) } }
                                    @if b["soft_crossed"].as_bool() == Some(true) { " " span.badge.warn { "soft limit crossed" } } }
                                td { (html::text(&b["period"])) }
                                td.num.committed { (usd(int(&b["committed_nano_usd"]))) }
                                td.num.reserved { (usd(int(&b["reserved_nano_usd"]))) }
                                td.num.remaining { (usd(int(&b["remaining_nano_usd"]))) }
                                td.num.limit { (usd(int(&b["limit_nano_usd"]))) }
                                td { (budget_meter(b)) }
                                td { @if let Some(at) = b["resets_at_ms"].as_i64() { (when(at)) } @else { "never" } }
                                @if change {
                                    td {
                                        form.row method="post" action=(format!("/console/budgets/{}", path_segment(&bid))) {
                                            (csrf_field(&ctx.csrf))
                                            input type="hidden" name="team" value=(id);
                                            label { "New limit (USD)" input name="limit_usd" inputmode="decimal" size="8" required; }
                                            button type="submit" { "Save" }
                                        }
                                        form.inline method="post" action=(format!("/console/budgets/{}/delete", path_segment(&bid))) data-confirm="Delete this budget? The team can then spend without this limit." {
                                            (csrf_field(&ctx.csrf))
                                            input type="hidden" name="team" value=(id);
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if change {
                h3 { "Set a budget" }
                form.row #new-budget method="post" action=(format!("{team_path}/budgets")) {
                    (csrf_field(&ctx.csrf))
                    label { "Limit (USD)" input name="limit_usd" inputmode="decimal" placeholder="500" required; }
                    label { "Period" select name="period" {
                        option value="month" selected { "month" } option value="week" { "week" } option value="day" { "day" } option value="total" { "total" }
                    } }
                    label { "Soft limit (share of the limit)" input name="soft_ratio" inputmode="decimal" placeholder="0.8"; }
                    label { "Only for key (optional)" select name="key" {
                        option value="" { "the whole team" }
                        @for k in &live_keys { option value=(html::text(&k["id"])) { (html::text(&k["name"])) " (" (html::text(&k["id"])) ")" } }
                    } }
                    button.primary type="submit" { "Set budget" }
                }
            }
        }
        section.panel #keys {
            h2 { "Keys" }
            @if key_list.is_empty() {
                p.muted { "No keys yet: issue one below and give it to a developer or a CI runner." }
            } @else {
                table {
                    thead { tr { th { "Name" } th { "Id" } th.hide-phone { "Issued" } th { "Models" } th { "State" } @if change { th { "Change" } } } }
                    tbody {
                        @for k in &key_list {
                            @let kid = html::text(&k["id"]);
                            @let revoked = !k["revoked_at_ms"].is_null();
                            tr data-key=(kid) {
                                td { (html::text(&k["name"])) }
                                td { code { (kid) } }
                                td.hide-phone { (when(int(&k["created_at_ms"]))) }
                                td { @if let Some(m) = k["allowed_models"].as_array() { (m.iter().map(html::text).collect::<Vec<_>>().join(", ")) } @else { span.muted { "team's" } } }
                                td {
                                    @if revoked { span.badge.danger { "revoked " (when(int(&k["revoked_at_ms"]))) } }
                                    @else if let Some(at) = k["expires_at_ms"].as_i64() { span.badge.warn { "expires " (when(at)) } }
                                    @else { span.badge.ok { "active" } }
                                }
                                @if change {
                                    td {
                                        @if !revoked {
                                            form.inline method="post" action=(format!("/console/keys/{}/rotate", path_segment(&kid))) {
                                                (csrf_field(&ctx.csrf))
                                                (once)
                                                input type="hidden" name="team" value=(id);
                                                label.check { "old key works for" select name="grace_seconds" {
                                                    option value="0" { "no time" } option value="3600" selected { "1 hour" } option value="86400" { "1 day" } option value="604800" { "7 days" }
                                                } }
                                                button type="submit" { "Rotate" }
                                            }
                                            " "
                                            form.inline method="post" action=(format!("/console/keys/{}/revoke", path_segment(&kid))) data-confirm="Revoke this key? Calls with it are refused at once." {
                                                (csrf_field(&ctx.csrf))
                                                input type="hidden" name="team" value=(id);
                                                button.danger type="submit" { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if change {
                h3 { "Issue a key" }
                form.row #new-key method="post" action=(format!("{team_path}/keys")) {
                    (csrf_field(&ctx.csrf))
                    (once)
                    label { "Name" input name="name" placeholder="ci-runner" required maxlength="128"; }
                    label { "Models allowed (optional, comma-separated, * wildcards)" input name="allowed_models" placeholder="gpt-5*, o3"; }
                    label { "Expires in days (optional)" input name="expires_days" inputmode="numeric" size="6"; }
                    button.primary type="submit" { "Issue key" }
                }
            }
        }
        section.panel #rate-limits {
            h2 { "Rate limits" }
            @if limits["data"].as_array().is_none_or(Vec::is_empty) {
                p.muted { "No rate limit: calls are limited only by budgets." }
            } @else {
                table {
                    thead { tr { th { "Scope" } th.num { "Requests / minute" } th.num { "Tokens / minute" } } }
                    tbody {
                        @for l in limits["data"].as_array().into_iter().flatten() {
                            tr { td { (html::text(&l["scope"])) @if !l["key_id"].is_null() { " " code { (html::text(&l["key_id"])) } } }
                                 td.num { (html::text(&l["requests_per_minute"])) } td.num { (html::text(&l["tokens_per_minute"])) } }
                        }
                    }
                }
            }
            @if change {
                form.row #rate-limit method="post" action=(format!("{team_path}/rate-limits")) {
                    (csrf_field(&ctx.csrf))
                    label { "Requests per minute" input name="requests_per_minute" inputmode="numeric" size="8"; }
                    label { "Tokens per minute" input name="tokens_per_minute" inputmode="numeric" size="10"; }
                    label { "Only for key (optional)" select name="key" {
                        option value="" { "the whole team" }
                        @for k in &live_keys { option value=(html::text(&k["id"])) { (html::text(&k["name"])) } }
                    } }
                    button type="submit" { "Set limit" }
                }
                p.muted { "Leave a field empty for no limit of that kind." }
            }
        }
        div.grid {
            (spend_table("Spend this month by key", &by_key, "key_name", "key_id"))
            (spend_table("By user", &by_user, "user", "user"))
            (spend_table("By model", &by_model, "model", "model"))
        }
        section.panel #sessions {
            h2 { "Most expensive sessions this month" }
            @if sessions["data"].as_array().is_none_or(Vec::is_empty) {
                p.muted { "No sessions yet. Codex sends its session id with every call; SDK clients can send a " code { "session-id" } " header." }
            } @else {
                table {
                    thead { tr { th { "Session" } th.hide-phone { "Last call" } th.num { "Calls" } th.num { "Cost" } } }
                    tbody {
                        @for s in sessions["data"].as_array().into_iter().flatten() {
                            @let sid = html::text(&s["id"]);
                            tr {
                                td { a href=(session_href(&id, &sid)) { code { (sid) } } }
                                td.hide-phone { (when(int(&s["last_seen_ms"]))) }
                                td.num { (count(int(&s["requests"]))) }
                                td.num { (usd(int(&s["cost_nano_usd"]))) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok((format!("Team {name}"), body))
}

fn spend_table(title: &str, report: &Value, name_key: &str, id_key: &str) -> Markup {
    let mut items: Vec<&Value> = rows(report).collect();
    items.sort_by_key(|r| std::cmp::Reverse(int(&r["cost_nano_usd"])));
    html! {
        section.panel {
            h2 { (title) }
            @if items.is_empty() { p.muted { "No calls this month." } }
            @else {
                table {
                    tbody {
                        @for r in items.iter().take(10) {
                            tr {
                                td { @match &r[name_key] { Value::Null => { span.muted { "(none)" } }, v => { (html::text(v)) } }
                                     @if name_key != id_key && !r[id_key].is_null() { " " code.muted { (html::text(&r[id_key])) } } }
                                td.num { (html::calls(int(&r["requests"]))) }
                                td.num { (usd(int(&r["cost_nano_usd"]))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A bar: committed, then reserved, of the limit (full when over).
pub fn budget_meter(budget: &Value) -> Markup {
    let limit = int(&budget["limit_nano_usd"]).max(1);
    let committed = int(&budget["committed_nano_usd"]).max(0);
    let reserved = int(&budget["reserved_nano_usd"]).max(0);
    let share = |v: i64| (i128::from(v.min(limit)) * 120 / i128::from(limit)) as i64;
    let c = share(committed);
    let r = share(committed + reserved) - c;
    let used_pct = (i128::from(committed + reserved) * 100 / i128::from(limit)) as i64;
    let class = match used_pct {
        ..80 => "fill-ok",
        80..100 => "fill-warn",
        _ => "fill-danger",
    };
    let label = format!("{used_pct}% of the limit used or reserved");
    html! {
        span.meter-wrap title=(label) {
            svg width="120" height="10" role="img" aria-label=(label) {
                rect width="120" height="10" rx="5" class="s7" opacity="0.3" {}
                rect width=(c) height="10" class=(class) {}
                rect x=(c) width=(r) height="10" class="fill-reserved" {}
            }
        }
    }
}

/// How to point Codex and the OpenAI SDKs at this gateway, with a team key to fill in.
pub fn setup_snippets(base_url: &str, team: Option<&str>) -> Markup {
    let key_hint = match team {
        Some(name) => format!("a key of team {name} (issue one below)"),
        None => "a team key (issue one on a team's page)".to_string(),
    };
    html! {
        section.empty #setup {
            h2 { "No traffic yet" }
            p { "Point clients at this gateway with " (key_hint) ". They notice nothing else." }
            h3 { "Codex (" code { "~/.codex/config.toml" } ")" }
            pre { (format!("model = \"gpt-5.5\"\nmodel_provider = \"tollgate\"\n\n[model_providers.tollgate]\nname = \"tollgate\"\nbase_url = \"{base_url}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"")) }
            p { "then " code { "TOLLGATE_KEY=tg-… codex exec \"…\"" } }
            h3 { "OpenAI SDKs (Python, Node, …)" }
            pre { (format!("export OPENAI_BASE_URL={base_url}/v1\nexport OPENAI_API_KEY=tg-…")) }
        }
    }
}

/// A session's page: the id is the client's choice (it may hold `/`), so it goes in the query.
pub fn session_href(team_id: &str, session_id: &str) -> String {
    format!("{}/session?id={}", team_href(team_id), encode(session_id))
}

/// Refuses a resent secret-showing form (its one-time token is used up).
fn sent_before(team: &str) -> Outcome {
    Outcome::redirect(
        back(team),
        "Not done: that form was already sent (a reload or a second click). Nothing new was \
         issued; the list below shows every key.",
    )
}

fn back(team: &str) -> String {
    team_href(team)
}

/// The team the form came from (for the way back).
fn team_of<'a>(form: &'a Form, fallback: &'a str) -> &'a str {
    form.filled("team").unwrap_or(fallback)
}

pub async fn issue_key(console: &Console, ctx: &Ctx, team: &str, form: &Form) -> Outcome {
    if !console.first_send(ctx, form) {
        return sent_before(team);
    }
    let mut body = json!({ "name": form.filled("name") });
    if let Some(models) = form.filled("allowed_models") {
        let list: Vec<&str> = models
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        body["allowed_models"] = json!(list);
    }
    if let Some(days) = form.filled("expires_days") {
        match days.parse::<i64>() {
            Ok(d) if d > 0 && d <= 3650 => {
                body["expires_at"] = json!(tollgate_core::time::now_ms() / 1000 + d * 86_400);
            }
            _ => {
                return Outcome::redirect(
                    back(team),
                    format!("Not done: '{days}' is not a number of days from 1 to 3650."),
                );
            }
        }
    }
    let path = format!("/admin/v1/teams/{}/keys", path_segment(team));
    match console
        .call(ctx, Method::POST, &path, None, Some(&body))
        .await
    {
        Ok(key) => Outcome::page("Key issued", Section::Teams, secret_page(&key, team, None)),
        Err(error) => refused_to(back(team), &error),
    }
}

pub async fn rotate_key(console: &Console, ctx: &Ctx, id: &str, form: &Form) -> Outcome {
    let team = team_of(form, "");
    if !console.first_send(ctx, form) {
        return sent_before(team);
    }
    let grace = form
        .filled("grace_seconds")
        .and_then(|g| g.parse::<i64>().ok())
        .unwrap_or(3600);
    let path = format!("/admin/v1/keys/{}/rotate", path_segment(id));
    match console
        .call(
            ctx,
            Method::POST,
            &path,
            None,
            Some(&json!({ "grace_seconds": grace })),
        )
        .await
    {
        Ok(key) => {
            let team = html::text(&key["team_id"]);
            let note = if grace == 0 {
                "The old key stopped working now.".to_string()
            } else {
                format!(
                    "The old key {id} keeps working for {} so running jobs can switch.",
                    html::duration(grace * 1000)
                )
            };
            Outcome::page(
                "Key rotated",
                Section::Teams,
                secret_page(&key, &team, Some(&note)),
            )
        }
        Err(error) => refused_to(back(team), &error),
    }
}

/// The new secret, shown once: it is not stored, only its hash.
fn secret_page(key: &Value, team: &str, note: Option<&str>) -> Markup {
    html! {
        p { "Key " strong { (html::text(&key["name"])) } " (" code { (html::text(&key["id"])) } ") of team " (html::text(&key["team_name"])) "." }
        @if let Some(note) = note { p { (note) } }
        div.secret {
            code #secret { (html::text(&key["secret"])) }
            (copy_button("secret"))
        }
        p.problem { strong { "Copy it now: this is the only time it is shown." } " tollgate keeps only its hash; a lost key is rotated, not recovered." }
        p { a.button.primary href=(back(team)) { "Done, back to the team" } }
    }
}

pub async fn revoke_key(console: &Console, ctx: &Ctx, id: &str, form: &Form) -> Outcome {
    let team = team_of(form, "");
    let path = format!("/admin/v1/keys/{}", path_segment(id));
    match console.call(ctx, Method::DELETE, &path, None, None).await {
        Ok(key) => Outcome::redirect(
            back(&html::text(&key["team_id"])),
            format!("Key {id} revoked: calls with it are refused from now on."),
        ),
        Err(error) => refused_to(back(team), &error),
    }
}

pub async fn create_budget(console: &Console, ctx: &Ctx, team: &str, form: &Form) -> Outcome {
    let mut body = json!({
        "team": team,
        "period": form.filled("period").unwrap_or("month"),
        "limit_usd": form.filled("limit_usd").map(strip_dollar),
    });
    if let Some(key) = form.filled("key") {
        body["key"] = json!(key);
    }
    if let Some(ratio) = form.filled("soft_ratio") {
        match ratio.parse::<f64>() {
            // The ratio is a share, not money: it only places the soft limit.
            Ok(r) if r.is_finite() => body["soft_ratio"] = json!(r),
            _ => {
                return Outcome::redirect(
                    back(team),
                    format!("Not done: soft limit '{ratio}' is not a share like 0.8."),
                );
            }
        }
    }
    match console
        .call(ctx, Method::POST, "/admin/v1/budgets", None, Some(&body))
        .await
    {
        Ok(b) => Outcome::redirect(
            back(team),
            format!(
                "Budget set: {} per {}.",
                usd(int(&b["limit_nano_usd"])),
                html::text(&b["period"])
            ),
        ),
        Err(error) => refused_to(back(team), &error),
    }
}

pub async fn update_budget(console: &Console, ctx: &Ctx, id: &str, form: &Form) -> Outcome {
    let team = team_of(form, "");
    let body = json!({ "limit_usd": form.filled("limit_usd").map(strip_dollar) });
    let path = format!("/admin/v1/budgets/{}", path_segment(id));
    match console
        .call(ctx, Method::PATCH, &path, None, Some(&body))
        .await
    {
        Ok(b) => Outcome::redirect(
            back(&html::text(&b["team_id"])),
            format!("Budget limit now {}.", usd(int(&b["limit_nano_usd"]))),
        ),
        Err(error) => refused_to(back(team), &error),
    }
}

pub async fn delete_budget(console: &Console, ctx: &Ctx, id: &str, form: &Form) -> Outcome {
    let team = team_of(form, "");
    let path = format!("/admin/v1/budgets/{}", path_segment(id));
    match console.call(ctx, Method::DELETE, &path, None, None).await {
        Ok(_) => Outcome::redirect(back(team), "Budget deleted."),
        Err(error) => refused_to(back(team), &error),
    }
}

pub async fn set_rate_limit(console: &Console, ctx: &Ctx, team: &str, form: &Form) -> Outcome {
    let number = |name: &str| -> Result<Value, String> {
        match form.filled(name) {
            None => Ok(Value::Null),
            Some(v) => v
                .replace([',', '_'], "")
                .parse::<u64>()
                .map(|n| json!(n))
                .map_err(|_| format!("Not done: '{v}' is not a whole number.")),
        }
    };
    let (rpm, tpm) = match (number("requests_per_minute"), number("tokens_per_minute")) {
        (Ok(r), Ok(t)) => (r, t),
        (Err(e), _) | (_, Err(e)) => return Outcome::redirect(back(team), e),
    };
    let mut body = json!({ "team": team, "requests_per_minute": rpm, "tokens_per_minute": tpm });
    if let Some(key) = form.filled("key") {
        body["key"] = json!(key);
    }
    match console
        .call(ctx, Method::PUT, "/admin/v1/rate-limits", None, Some(&body))
        .await
    {
        Ok(_) => Outcome::redirect(back(team), "Rate limit saved."),
        Err(error) => refused_to(back(team), &error),
    }
}

/// "$500" and "500" both mean 500 USD.
fn strip_dollar(v: &str) -> &str {
    v.trim().trim_start_matches('$').trim()
}
