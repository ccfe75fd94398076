//! The console's page frame and the small pieces every page uses: navigation by role, amounts,
//! times, empty states, forms' CSRF field. maud escapes every interpolated value, so a team or
//! key name can never become markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use tollgate_core::money::Money;
use tollgate_store::Role;

/// Who is signed in, as the frame shows it.
pub struct Who {
    pub name: String,
    pub role: Role,
    /// The team a `team_admin` manages: (id, name).
    pub team: Option<(String, String)>,
}

/// One page: its title, the signed-in person (none on the sign-in page), the session's CSRF
/// token for the sign-out form, and a one-time message.
pub struct Frame<'a> {
    pub title: &'a str,
    pub who: Option<&'a Who>,
    pub csrf: &'a str,
    pub flash: Option<&'a str>,
    /// Which navigation entry is this page's.
    pub section: Section,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    None,
    Overview,
    Teams,
    Reports,
    Audit,
    Tokens,
}

pub fn layout(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (frame.title) " · tollgate" }
                link rel="stylesheet" href="/console/assets/console.css";
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" {
                        svg.logo width="20" height="20" viewBox="0 0 32 32" aria-hidden="true" {
                            rect width="32" height="32" rx="6" class="s0" {}
                            path d="M7 10h18M9 10v14M23 10v14M6 14h20" stroke="#fff" stroke-width="3" fill="none" {}
                        }
                        " tollgate"
                    }
                    @if let Some(who) = frame.who {
                        nav aria-label="Main" { (nav(who, frame.section)) }
                        div.who {
                            span { (who.name) " · " (role_label(who.role)) }
                            form method="post" action="/console/sign-out" {
                                (csrf_field(frame.csrf))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (frame.title) }
                    @if let Some(flash) = frame.flash {
                        @if flash.starts_with("Not done") {
                            p.problem role="alert" { (flash) }
                        } @else {
                            p.flash role="status" { (flash) }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

fn nav(who: &Who, section: Section) -> Markup {
    let mut items: Vec<(&str, String, Section)> = Vec::new();
    match who.role {
        Role::Admin | Role::Finance => {
            items.push(("Overview", "/console/overview".into(), Section::Overview));
            items.push(("Teams", "/console/teams".into(), Section::Teams));
        }
        Role::TeamAdmin => {
            if let Some((id, _)) = &who.team {
                items.push(("My team", team_href(id), Section::Teams));
            }
        }
    }
    items.push(("Reports", "/console/reports".into(), Section::Reports));
    if who.role == Role::Admin {
        items.push(("Audit log", "/console/audit".into(), Section::Audit));
        items.push((
            "Admin tokens",
            "/console/admin-tokens".into(),
            Section::Tokens,
        ));
    }
    html! {
        ul {
            @for (label, href, s) in &items {
                li {
                    @if *s == section {
                        a href=(href) aria-current="page" { (label) }
                    } @else {
                        a href=(href) { (label) }
                    }
                }
            }
        }
    }
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Finance => "finance",
        Role::TeamAdmin => "team admin",
    }
}

pub fn team_href(team_id: &str) -> String {
    format!("/console/teams/{}", path_segment(team_id))
}

/// A value made safe as one path segment.
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// An exact amount: `$0.002652`, `$1,204.50` (never rounded; at least cents).
pub fn usd(nanos: i64) -> String {
    let text = Money(nanos).to_usd_string();
    let (sign, text) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((text, "00"));
    format!("{sign}${}.{frac}", group_thousands(whole))
}

/// "1 call", "2 calls".
pub fn calls(n: i64) -> String {
    if n == 1 {
        "1 call".to_string()
    } else {
        format!("{} calls", count(n))
    }
}

/// A count with thousands separators.
pub fn count(n: i64) -> String {
    let text = n.unsigned_abs().to_string();
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", group_thousands(&text))
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A Unix time in milliseconds as `2026-12-04 16:43 UTC`.
pub fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A duration in milliseconds for people: `850 ms`, `12.4 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1000, (ms % 1000) / 100),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// A box that says what is missing and what to do about it.
pub fn empty_state(title: &str, body: Markup) -> Markup {
    html! {
        section.empty {
            h2 { (title) }
            (body)
        }
    }
}

/// A value from the API's JSON as text (strings unquoted, null as an em dash).
pub fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "—".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON integer (0 when absent).
pub fn int(value: &serde_json::Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// A copy button for a secret shown once (console.js copies the text of `target`).
pub fn copy_button(target_id: &str) -> Markup {
    html! {
        button.copy type="button" data-copy=(target_id) { "Copy" }
    }
}

/// The page for a refusal or a failure, with the API's own message.
pub fn problem(status: u16, message: &str) -> Markup {
    let (title, hint) = match status {
        401 => ("Sign in again", "Your session ended."),
        403 => (
            "Not allowed",
            "Your role does not reach this page. Ask an admin if you need it.",
        ),
        404 => ("Not found", "Nothing is here: check the link."),
        400 | 409 | 413 | 422 => ("Not done", "Nothing was changed."),
        503 => (
            "Unavailable",
            "tollgate cannot reach its database right now. Your session is kept: try again in a moment.",
        ),
        _ => (
            "Something went wrong",
            "Try again; if it persists, tell your platform team.",
        ),
    };
    html! {
        section.problem role="alert" {
            h2 { (title) }
            p { (message) }
            p.muted { (hint) " " a href="/console" { "Back to the console" } }
        }
    }
}

/// Raw markup the console itself produced (an SVG chart).
pub fn trusted(markup: String) -> Markup {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_grouped() {
        assert_eq!(usd(2_652_000), "$0.002652");
        assert_eq!(usd(1_204_500_000_000), "$1,204.50");
        assert_eq!(usd(1), "$0.000000001");
        assert_eq!(usd(-1_000_000_000_000), "-$1,000.00");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(duration(61_500), "1 min 1 s");
    }

    #[test]
    fn names_are_escaped() {
        let who = Who {
            name: "<script>alert(1)</script>".into(),
            role: Role::Admin,
            team: None,
        };
        let frame = Frame {
            title: "T & <b>",
            who: Some(&who),
            csrf: "c",
            flash: None,
            section: Section::None,
        };
        let page = layout(&frame, html! {}).into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("T &amp; &lt;b&gt;"));
    }
}
