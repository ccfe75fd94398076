//! The console's pages, by path. Each reads through the admin API's operations as the person
//! signed in, and each form posts to a console path that carries out one operation and sends
//! the browser back (post/redirect/get), with the outcome as a one-time message.

use http::Method;

use super::form::Form;
use super::html::Section;
use super::{Console, Ctx, Outcome};

pub mod admin;
pub mod overview;
pub mod reports;
pub mod session;
pub mod sign_in;
pub mod team;

pub async fn dispatch(
    console: &Console,
    ctx: &Ctx,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    form: &Form,
) -> Outcome {
    let q = Form::parse(query.unwrap_or("").as_bytes());
    match (method.as_str(), segments) {
        ("GET", []) => Outcome::Redirect {
            location: super::home(&ctx.who),
            flash: None,
        },
        ("GET", ["overview"]) => overview::page(console, ctx).await,
        ("GET", ["teams"]) => admin::teams(console, ctx).await,
        ("POST", ["teams"]) => admin::create_team(console, ctx, form).await,
        ("GET", ["teams", team]) => team::page(console, ctx, team).await,
        ("POST", ["teams", team, "keys"]) => team::issue_key(console, ctx, team, form).await,
        ("POST", ["teams", team, "budgets"]) => team::create_budget(console, ctx, team, form).await,
        ("POST", ["teams", team, "rate-limits"]) => {
            team::set_rate_limit(console, ctx, team, form).await
        }
        ("POST", ["keys", id, "rotate"]) => team::rotate_key(console, ctx, id, form).await,
        ("POST", ["keys", id, "revoke"]) => team::revoke_key(console, ctx, id, form).await,
        ("POST", ["budgets", id]) => team::update_budget(console, ctx, id, form).await,
        ("POST", ["budgets", id, "delete"]) => team::delete_budget(console, ctx, id, form).await,
        ("GET", ["teams", team, "session"]) => match q.get("id") {
            Some(id) => session::page(console, ctx, team, id).await,
            None => not_found(),
        },
        ("GET", ["reports"]) => reports::page(console, ctx, &q).await,
        ("GET", ["reports", "download"]) => reports::download(console, ctx, &q).await,
        ("GET", ["audit"]) => admin::audit(console, ctx, &q).await,
        ("GET", ["admin-tokens"]) => admin::tokens(console, ctx).await,
        ("POST", ["admin-tokens"]) => admin::create_token(console, ctx, form).await,
        ("POST", ["admin-tokens", id, "revoke"]) => admin::revoke_token(console, ctx, id).await,
        _ => not_found(),
    }
}

fn not_found() -> Outcome {
    Outcome::Page {
        status: http::StatusCode::NOT_FOUND,
        title: "Not found".to_string(),
        section: Section::None,
        body: super::html::problem(404, "There is no console page here."),
    }
}

/// Team id → name, from a `GET /admin/v1/teams` answer.
pub fn team_names(teams: &serde_json::Value) -> std::collections::HashMap<String, String> {
    teams["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| (super::html::text(&t["id"]), super::html::text(&t["name"])))
        .collect()
}

/// The page a form returns to when its operation was refused: the API's message as the flash.
pub fn refused_to(location: String, error: &tollgate_core::ApiError) -> Outcome {
    Outcome::redirect(location, format!("Not done: {}", error.message))
}
