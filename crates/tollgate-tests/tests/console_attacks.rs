//! The web console attacked over plain HTTP, as a hostile team admin or finance holder, a team
//! key holder, an unauthenticated visitor and a careless new user: every form and page path
//! that could reach further than the role allows, sign-in and session abuse, markup smuggled in
//! through names and session ids, malformed forms, and forms resent by a reload. A test that
//! fails here names a real break; the others pin behaviour that is already right on paths the
//! browser tests do not take.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, HttpClient, Reply, eventually};

// ---------------------------------------------------------------------------------------------
// An HTTP console client: cookies and the CSRF token handled by hand.

/// `application/x-www-form-urlencoded` for one value.
fn enc(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn body(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of cookie `name` set by `reply`, if any.
fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// The `value` of the first `<input name="{name}">` in `html`.
fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The one-time message a page shows (flash or problem), if any.
fn flash(html: &str) -> Option<String> {
    for class in ["<p class=\"flash\"", "<p class=\"problem\""] {
        if let Some(at) = html.find(class) {
            let rest = &html[at..];
            let start = rest.find('>')? + 1;
            let end = rest.find("</p>")?;
            return Some(rest[start..end].to_string());
        }
    }
    None
}

/// The secret a "Key issued" / "Key rotated" / "Admin token created" page shows.
fn shown_secret(html: &str) -> Option<String> {
    let at = html.find("id=\"secret\">")?;
    let rest = &html[at + 12..];
    Some(rest[..rest.find('<')?].to_string())
}

/// A signed-in console session over HTTP.
struct Session {
    base: String,
    cookie: String,
    csrf: String,
    http: HttpClient,
}

/// Signs in with `token` through the sign-in form (double-submit cookie), as a browser does.
async fn sign_in_at(base: &str, token: &str) -> Session {
    let http = HttpClient::new();
    let page = http
        .send(Method::GET, &format!("{base}/console/sign-in"), &[], "")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let pending = set_cookie(&page, "tollgate_console_pending").expect("a pending cookie");
    assert_eq!(
        input_value(&body(&page), "csrf").as_deref(),
        Some(&*pending)
    );
    let signed = http
        .send(
            Method::POST,
            &format!("{base}/console/sign-in"),
            &[
                ("cookie", format!("tollgate_console_pending={pending}")),
                ("content-type", "application/x-www-form-urlencoded".into()),
            ],
            form(&[("csrf", &pending), ("token", token), ("next", "/console")]),
        )
        .await;
    let cookie = set_cookie(&signed, "tollgate_console")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("sign-in failed: {} {}", signed.status, body(&signed)));
    let mut session = Session {
        base: base.to_string(),
        cookie,
        csrf: String::new(),
        http,
    };
    let reports = session.get("/console/reports").await;
    session.csrf = input_value(&body(&reports), "csrf").expect("a csrf field on every page");
    session
}

async fn sign_in(h: &Harness, token: &str) -> Session {
    sign_in_at(&h.base(), token).await
}

impl Session {
    async fn get(&self, path: &str) -> Reply {
        self.http
            .send(
                Method::GET,
                &format!("{}{path}", self.base),
                &[("cookie", format!("tollgate_console={}", self.cookie))],
                "",
            )
            .await
    }

    async fn send(&self, method: Method, path: &str, raw: impl Into<bytes::Bytes>) -> Reply {
        self.http
            .send(
                method,
                &format!("{}{path}", self.base),
                &[
                    ("cookie", format!("tollgate_console={}", self.cookie)),
                    ("content-type", "application/x-www-form-urlencoded".into()),
                ],
                raw,
            )
            .await
    }

    /// POSTs a form with this session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.send(Method::POST, path, form(&all)).await
    }

    /// POSTs, follows the 303 and returns the message the next page shows.
    async fn post_flash(&self, path: &str, fields: &[(&str, &str)]) -> String {
        let reply = self.post(path, fields).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{path}: {}",
            body(&reply)
        );
        let next = self.get(&location(&reply)).await;
        flash(&body(&next)).unwrap_or_else(|| panic!("no message after {path}: {}", body(&next)))
    }
}

// ---------------------------------------------------------------------------------------------
// The admin API, to set up and to check that nothing changed.

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

async fn api(h: &Harness, method: Method, path: &str, body: Option<Value>) -> Reply {
    let url = format!("{}{path}", h.base());
    match body {
        Some(b) => h.http.json(method, &url, &admin(), b).await,
        None => h.http.send(method, &url, &admin(), "").await,
    }
}

async fn get(h: &Harness, path: &str) -> Value {
    let reply = api(h, Method::GET, path, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    reply.json()
}

/// An admin token of `role` (and `team`): its (id, secret).
async fn token(h: &Harness, name: &str, role: &str, team: Option<&str>) -> (String, String) {
    let mut b = json!({"name": name, "role": role});
    if let Some(team) = team {
        b["team"] = json!(team);
    }
    let reply = api(h, Method::POST, "/admin/v1/admin-tokens", Some(b)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let v = reply.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

fn key_id(secret: &str) -> String {
    secret.split('-').nth(1).unwrap().to_string()
}

async fn team_id(h: &Harness, team: &str) -> String {
    get(h, &format!("/admin/v1/teams/{team}")).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Everything a team admin could change, as the admin API shows it: compared before and after.
async fn state(h: &Harness) -> Value {
    json!({
        "keys": get(h, "/admin/v1/keys?limit=1000").await,
        "budgets": get(h, "/admin/v1/budgets?limit=1000").await["data"]
            .as_array().unwrap().iter()
            .map(|b| json!([b["id"], b["limit_nano_usd"], b["team_id"], b["key_id"]]))
            .collect::<Vec<_>>(),
        "limits": get(h, "/admin/v1/rate-limits?limit=1000").await,
        "teams": get(h, "/admin/v1/teams?limit=1000").await,
        "tokens": get(h, "/admin/v1/admin-tokens?limit=1000").await,
    })
}

/// One chat completion with `key` and extra headers: its status.
async fn call(h: &Harness, key: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut all = vec![("authorization", format!("Bearer {key}"))];
    all.extend(headers.iter().map(|(k, v)| (*k, (*v).to_string())));
    h.http
        .json(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &all,
            json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await
        .status
}

// ---------------------------------------------------------------------------------------------
// Breaks found: these fail until the console (or the operation under it) is fixed.

/// A rotation result page resent (Chromium's reload of a POST result after "Confirm Form
/// Resubmission", a double click, or the Rotate button the team page still shows on the old key
/// during its grace) rotates the *old* key again. The new key copies the old key's expiry,
/// which is now the grace deadline: the page hands out a secret that dies with the old key an
/// hour later, with nothing on the page saying so.
#[tokio::test]
async fn rotating_a_key_twice_never_hands_out_a_secret_that_dies_with_the_grace_period() {
    let h = Harness::start(Backend::Sqlite).await;
    let secret = h.team_key("search").await;
    let id = key_id(&secret);
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let mut shown = Vec::new();
    // The same form sent twice (one page's one-time token), then once more from a fresh page
    // (where the Rotate button still shows during the grace period).
    let once = input_value(&body(&admin.get("/console/teams/search").await), "once").unwrap();
    for fresh in [false, false, true] {
        let once = if fresh {
            input_value(&body(&admin.get("/console/teams/search").await), "once").unwrap()
        } else {
            once.clone()
        };
        let page = admin
            .post(
                &format!("/console/keys/{id}/rotate"),
                &[
                    ("grace_seconds", "3600"),
                    ("team", "search"),
                    ("once", &once),
                ],
            )
            .await;
        if let Some(s) = shown_secret(&body(&page)) {
            shown.push(s);
        }
    }
    assert_eq!(
        shown.len(),
        1,
        "one rotation shows one new secret: {shown:?}"
    );
    let refused = admin
        .post_flash(
            &format!("/console/keys/{id}/rotate"),
            &[
                ("grace_seconds", "3600"),
                ("team", "search"),
                (
                    "once",
                    &input_value(&body(&admin.get("/console/teams/search").await), "once").unwrap(),
                ),
            ],
        )
        .await;
    assert!(refused.contains("already rotated"), "{refused}");
    for s in &shown {
        let key = get(&h, &format!("/admin/v1/keys/{}", key_id(s))).await;
        assert!(
            key["expires_at_ms"].is_null(),
            "a rotation page showed secret of key {} as the replacement, but it expires with the \
             old key's grace period: {key}",
            key_id(s)
        );
    }
}

/// Reloading the "Key issued" page (a POST result: Chromium asks "Confirm Form Resubmission"
/// and resends), or a double click, issues a second live key without a word: the first secret,
/// already copied somewhere, and the second are both valid, and nobody knows about the spare.
#[tokio::test]
async fn resending_the_issue_key_form_does_not_silently_issue_a_second_key() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("search").await;
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let before = get(&h, "/admin/v1/teams/search/keys").await["data"]
        .as_array()
        .unwrap()
        .len();
    let once = input_value(&body(&admin.get("/console/teams/search").await), "once").unwrap();
    let fields = [("name", "ci-runner"), ("once", once.as_str())];
    let first = admin.post("/console/teams/search/keys", &fields).await;
    assert!(shown_secret(&body(&first)).is_some(), "{}", body(&first));
    let again = admin.post("/console/teams/search/keys", &fields).await;
    let after = get(&h, "/admin/v1/teams/search/keys").await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        after,
        before + 1,
        "the same form sent twice issued two keys (second page: {:?})",
        flash(&body(&again)).or_else(|| shown_secret(&body(&again)))
    );
}

/// The same for admin tokens, where a spare is worse: a resent "Create token" form mints a
/// second live admin-role token.
#[tokio::test]
async fn resending_the_create_admin_token_form_does_not_mint_a_second_token() {
    let h = Harness::start(Backend::Sqlite).await;
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let once = input_value(&body(&admin.get("/console/admin-tokens").await), "once").unwrap();
    let fields = [
        ("name", "ops-bob"),
        ("role", "admin"),
        ("once", once.as_str()),
    ];
    admin.post("/console/admin-tokens", &fields).await;
    admin.post("/console/admin-tokens", &fields).await;
    let tokens = get(&h, "/admin/v1/admin-tokens?limit=1000").await;
    let bobs = tokens["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "ops-bob" && t["revoked_at_ms"].is_null())
        .count();
    assert_eq!(bobs, 1, "one form, resent, minted {bobs} admin tokens");
}

/// A session id is the client's choice (`session-id` header). One with a `/` (`ci/build-42`,
/// and so also `<script>…</script>`) or that is `.`/`..` is listed on the team page with a
/// link, and the link is a 404: `form::segments` refuses a decoded `/` or dot segment.
#[tokio::test]
async fn every_session_listed_on_the_team_page_opens_from_its_link() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("search").await;
    let ids = ["ci/build-42", "..", "<script>alert(1)</script>"];
    for id in ids {
        assert_eq!(call(&h, &key, &[("session-id", id)]).await, StatusCode::OK);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&h, "/admin/v1/teams/search/sessions").await["data"]
                .as_array()
                .is_some_and(|d| d.len() == ids.len())
        })
        .await
    );
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let page = body(&admin.get("/console/teams/search").await);
    let links: Vec<String> = page
        .match_indices("href=\"/console/teams/")
        .filter_map(|(at, _)| {
            let rest = &page[at + 6..];
            let link = &rest[..rest.find('"')?];
            link.contains("/session?id=").then(|| link.to_string())
        })
        .collect();
    assert_eq!(links.len(), ids.len(), "{links:?}");
    let mut broken = Vec::new();
    for link in &links {
        let reply = admin.get(link).await;
        if reply.status != StatusCode::OK {
            broken.push(format!("{link} -> {}", reply.status));
        }
    }
    assert!(
        broken.is_empty(),
        "session links that do not open: {broken:?}"
    );
}

/// `soft_ratio` is parsed as an f64 and put into JSON, where NaN and infinity become `null`:
/// "nan" or "inf" in the soft-limit field silently sets a budget with the default 0.8.
#[tokio::test]
async fn a_soft_limit_of_nan_or_inf_is_refused_not_replaced_by_the_default() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("search").await;
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    for (ratio, period) in [("NaN", "day"), ("inf", "week")] {
        let message = admin
            .post_flash(
                "/console/teams/search/budgets",
                &[
                    ("limit_usd", "10"),
                    ("period", period),
                    ("soft_ratio", ratio),
                ],
            )
            .await;
        assert!(
            message.starts_with("Not done"),
            "soft limit '{ratio}': {message}"
        );
    }
    let budgets = get(&h, "/admin/v1/budgets?team=search").await;
    assert_eq!(budgets["data"], json!([]), "nothing was set: {budgets}");
}

/// A report download is the API's answer byte for byte, headers and all — and so it lacks the
/// headers every other console response has: finance's spend by team may be kept in the
/// browser's (or a shared proxy's) cache, and is not marked nosniff.
#[tokio::test]
async fn report_downloads_are_not_cached_and_not_sniffed() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("search").await;
    let (_, finance) = token(&h, "finance-alice", "finance", None).await;
    let session = sign_in(&h, &finance).await;
    for format in ["csv", "json"] {
        let reply = session
            .get(&format!(
                "/console/reports/download?group_by=team&format={format}"
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{format}: {:?}",
            reply.headers
        );
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    }
}

/// A database blip ends every console session: `actor_of` treats "cannot check the token" as
/// "revoked", signs the person out and sends them to sign in again (with a token they may not
/// have at hand). A page should say the database is unreachable, and the session should
/// survive the outage.
#[tokio::test]
async fn a_database_outage_shows_a_problem_page_and_does_not_end_the_session() {
    let h = Harness::start(Backend::Postgres).await;
    h.team_key("search").await;
    let session = sign_in(&h, ADMIN_TOKEN).await;
    assert_eq!(
        session.get("/console/overview").await.status,
        StatusCode::OK
    );

    let admin_url = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| tollgate_store::testdb::DEFAULT_POSTGRES_ADMIN_URL.to_string());
    let database =
        h.db.url
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string();
    let pg = |sql: String| {
        let admin_url = admin_url.clone();
        async move {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap();
            let _ = c.close().await;
        }
    };
    pg(format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS false"
    ))
    .await;
    pg(format!(
        "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '{database}'"
    ))
    .await;

    let during = session.get("/console/overview").await;
    pg(format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS true"
    ))
    .await;
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "during the outage: {} {}",
        location(&during),
        body(&during)
    );
    assert!(
        body(&during).to_lowercase().contains("database"),
        "the page says what is wrong: {}",
        body(&during)
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            session.get("/console/overview").await.status == StatusCode::OK
        })
        .await,
        "the session outlives the outage"
    );
}

/// A link to a report (a colleague's "last month by cost centre") opened while signed out loses
/// its query on the way through sign-in: `next` carries only the path.
#[tokio::test]
async fn signing_in_from_a_link_keeps_the_links_query() {
    let h = Harness::start(Backend::Sqlite).await;
    let reply = h
        .http
        .send(
            Method::GET,
            &format!(
                "{}/console/reports?from=2026-11-01&group_by=cost_centre",
                h.base()
            ),
            &[],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let to = location(&reply);
    assert!(to.starts_with("/console/sign-in?next="), "{to}");
    let sign_in_page = h
        .http
        .send(Method::GET, &format!("{}{to}", h.base()), &[], "")
        .await;
    let next = input_value(&body(&sign_in_page), "next").unwrap();
    assert!(
        next.contains("group_by=cost_centre"),
        "the sign-in form continues to {next}"
    );
}

/// `safe_next` checks the raw text starts with `/console`, so `/console/../admin/v1/teams`
/// passes and the browser, resolving the dot segment, lands outside the console.
#[tokio::test]
async fn sign_in_next_with_dot_segments_does_not_leave_the_console() {
    let h = Harness::start(Backend::Sqlite).await;
    for next in [
        "/console/../admin/v1/teams",
        "/console/%2e%2e/healthz",
        "/console/./../v1/models",
    ] {
        let page = h
            .http
            .send(
                Method::GET,
                &format!("{}/console/sign-in?next={}", h.base(), enc(next)),
                &[],
                "",
            )
            .await;
        assert_eq!(
            input_value(&body(&page), "next").as_deref(),
            Some("/console"),
            "next={next}"
        );
    }
}

/// A careless admin creates "Search" beside "search": two teams, spend split between them, and
/// keys of either look alike on every report. The console says "already exists" only for an
/// exact match.
#[tokio::test]
async fn a_team_name_differing_only_in_case_is_refused_as_a_duplicate() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("search").await;
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let before = state(&h).await["teams"].clone();
    let message = admin
        .post_flash("/console/teams", &[("name", "Search")])
        .await;
    assert!(message.starts_with("Not done"), "{message}");
    assert_eq!(state(&h).await["teams"], before);
}

/// A 1 MB form is refused (good) with a message naming `limits.max_body_bytes`, which does not
/// govern console forms (the console's own 64 KiB limit does): an operator who raises it
/// changes nothing.
#[tokio::test]
async fn an_oversized_form_is_refused_with_the_consoles_own_limit_and_changes_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    let before = state(&h).await;
    let huge = format!(
        "csrf={}&name=big&cost_centre={}",
        admin.csrf,
        "a".repeat(1024 * 1024)
    );
    let reply = admin.send(Method::POST, "/console/teams", huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(state(&h).await, before);
    let text = body(&reply);
    assert!(
        !text.contains("max_body_bytes"),
        "the page points at a setting that does not apply: {:?}",
        text.split("<p>")
            .nth(1)
            .and_then(|p| p.split("</p>").next())
    );
}

// ---------------------------------------------------------------------------------------------
// Already right, on paths the browser tests do not take.

/// A team admin posting to every console form with another team's ids (in the path, the hidden
/// `team` field or the `key` field) changes nothing anywhere.
#[tokio::test]
async fn a_team_admin_changes_nothing_of_another_team_through_any_form() {
    let h = Harness::start(Backend::Sqlite).await;
    h.team_key("search").await;
    let other_key = key_id(&h.team_key("payments").await);
    let other_budget = h.set_budget("payments", "100").await;
    let payments = team_id(&h, "payments").await;
    let (_, lead) = token(&h, "search-lead", "team_admin", Some("search")).await;
    let s = sign_in(&h, &lead).await;
    let before = state(&h).await;

    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/console/keys/{other_key}/rotate"),
            vec![("grace_seconds", "0"), ("team", "search")],
        ),
        (
            format!("/console/keys/{other_key}/revoke"),
            vec![("team", "search")],
        ),
        (
            format!("/console/keys/{}/revoke", other_key.to_uppercase()),
            vec![],
        ),
        (format!("/console/keys/{other_key}%2F/revoke"), vec![]),
        (format!("/console//keys/{other_key}/revoke/"), vec![]),
        (
            format!("/console/budgets/{other_budget}"),
            vec![("limit_usd", "1"), ("team", "search")],
        ),
        (
            format!("/console/budgets/{other_budget}/delete"),
            vec![("team", "search")],
        ),
        (
            format!("/console/teams/{payments}/keys"),
            vec![("name", "sneaky")],
        ),
        (
            "/console/teams/payments/keys".into(),
            vec![("name", "sneaky")],
        ),
        (
            "/console/teams/PAYMENTS/keys".into(),
            vec![("name", "sneaky")],
        ),
        (
            "/console/teams/payments/budgets".into(),
            vec![("limit_usd", "1"), ("period", "day")],
        ),
        // The own team in the path, another team's key in the body.
        (
            "/console/teams/search/budgets".into(),
            vec![("limit_usd", "1"), ("period", "day"), ("key", &other_key)],
        ),
        (
            "/console/teams/search/rate-limits".into(),
            vec![("requests_per_minute", "1"), ("key", &other_key)],
        ),
        (
            "/console/teams/payments/rate-limits".into(),
            vec![("requests_per_minute", "1"), ("team", "search")],
        ),
        (
            format!("/console/teams/{payments}/rate-limits"),
            vec![("requests_per_minute", "1")],
        ),
        ("/console/teams".into(), vec![("name", "mine-now")]),
        (
            "/console/admin-tokens".into(),
            vec![("name", "escalate"), ("role", "admin")],
        ),
        ("/console/admin-tokens/bootstrap/revoke".into(), vec![]),
    ];
    for (path, fields) in &attempts {
        let reply = s.post(path, fields).await;
        assert!(
            shown_secret(&body(&reply)).is_none(),
            "{path} showed a secret: {}",
            body(&reply)
        );
    }
    assert_eq!(state(&h).await, before, "a team admin changed another team");
    // Reading is fenced too: the other team's page, sessions and reports.
    for path in [
        format!("/console/teams/{payments}"),
        "/console/teams/payments/session?id=x".to_string(),
        format!("/console/teams/{payments}/session?id=x"),
        "/console/reports/download?team=payments&format=json".to_string(),
        "/console/audit".to_string(),
        "/console/admin-tokens".to_string(),
    ] {
        let reply = s.get(&path).await;
        assert!(
            matches!(reply.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{path}: {}",
            reply.status
        );
        assert!(!body(&reply).contains(&other_key), "{path}");
    }
    let report = s.get("/console/reports?group_by=team&team=payments").await;
    assert!(
        !body(&report).contains("payments</td>"),
        "{}",
        body(&report)
    );
}

/// Finance reads and changes nothing, whatever it posts.
#[tokio::test]
async fn finance_changes_nothing_through_any_form() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = key_id(&h.team_key("search").await);
    let budget = h.set_budget("search", "100").await;
    let (_, finance) = token(&h, "finance-alice", "finance", None).await;
    let s = sign_in(&h, &finance).await;
    let before = state(&h).await;
    for (path, fields) in [
        (
            format!("/console/keys/{key}/rotate"),
            vec![("grace_seconds", "0")],
        ),
        (format!("/console/keys/{key}/revoke"), vec![]),
        (
            format!("/console/budgets/{budget}"),
            vec![("limit_usd", "1")],
        ),
        (format!("/console/budgets/{budget}/delete"), vec![]),
        ("/console/teams/search/keys".into(), vec![("name", "x")]),
        (
            "/console/teams/search/budgets".into(),
            vec![("limit_usd", "1"), ("period", "day")],
        ),
        (
            "/console/teams/search/rate-limits".into(),
            vec![("requests_per_minute", "1")],
        ),
        ("/console/teams".into(), vec![("name", "newteam")]),
        (
            "/console/admin-tokens".into(),
            vec![("name", "x"), ("role", "admin")],
        ),
        ("/console/admin-tokens/bootstrap/revoke".into(), vec![]),
    ] {
        let reply = s.post(&path, &fields).await;
        assert!(shown_secret(&body(&reply)).is_none(), "{path}");
    }
    assert_eq!(state(&h).await, before);
}

/// A team key, a revoked admin token, an empty token and garbage do not open the console; a
/// session of a token revoked later ends on its next click.
#[tokio::test]
async fn only_a_live_admin_token_opens_the_console_and_revoking_it_ends_its_session() {
    let h = Harness::start(Backend::Sqlite).await;
    let team_key = h.team_key("search").await;
    let (revoked_id, revoked) = token(&h, "gone", "admin", None).await;
    api(
        &h,
        Method::DELETE,
        &format!("/admin/v1/admin-tokens/{revoked_id}"),
        None,
    )
    .await;
    let http = HttpClient::new();
    for bad in [
        team_key.as_str(),
        revoked.as_str(),
        "",
        "tga-",
        "%00",
        "bootstrap",
    ] {
        let page = http
            .send(
                Method::GET,
                &format!("{}/console/sign-in", h.base()),
                &[],
                "",
            )
            .await;
        let pending = set_cookie(&page, "tollgate_console_pending").unwrap();
        let reply = http
            .send(
                Method::POST,
                &format!("{}/console/sign-in", h.base()),
                &[
                    ("cookie", format!("tollgate_console_pending={pending}")),
                    ("content-type", "application/x-www-form-urlencoded".into()),
                ],
                form(&[("csrf", &pending), ("token", bad), ("next", "/console")]),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "token {bad:?}");
        assert!(
            set_cookie(&reply, "tollgate_console").is_none(),
            "token {bad:?}"
        );
    }

    let (id, live) = token(&h, "ops", "admin", None).await;
    let s = sign_in(&h, &live).await;
    assert_eq!(s.get("/console/overview").await.status, StatusCode::OK);
    api(
        &h,
        Method::DELETE,
        &format!("/admin/v1/admin-tokens/{id}"),
        None,
    )
    .await;
    let after = s.get("/console/overview").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert!(
        location(&after).starts_with("/console/sign-in"),
        "{}",
        location(&after)
    );
    let post = s.post("/console/teams", &[("name", "late")]).await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
    let late = api(&h, Method::GET, "/admin/v1/teams/late", None).await;
    assert_eq!(late.status, StatusCode::NOT_FOUND);
}

/// Sign-in without the pending cookie, with another sign-in's value, or with a planted session
/// cookie: refused, or a fresh session id that the planter does not know.
#[tokio::test]
async fn sign_in_forgery_and_session_fixation_get_nowhere() {
    let h = Harness::start(Backend::Sqlite).await;
    let http = HttpClient::new();
    let base = h.base();
    let post = |cookie: String, fields: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            http.send(
                Method::POST,
                &format!("{base}/console/sign-in"),
                &[
                    ("cookie", cookie),
                    ("content-type", "application/x-www-form-urlencoded".into()),
                ],
                fields,
            )
            .await
        }
    };
    // No pending cookie (a cross-site form), or a value that does not match.
    let r = post(String::new(), form(&[("csrf", ""), ("token", ADMIN_TOKEN)])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = post(
        "tollgate_console_pending=aaaa".into(),
        form(&[("csrf", "bbbb"), ("token", ADMIN_TOKEN)]),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&r, "tollgate_console").is_none());

    // A planted session cookie is not adopted: sign-in sets a new one.
    let planted = "f".repeat(64);
    let page = http
        .send(Method::GET, &format!("{base}/console/sign-in"), &[], "")
        .await;
    let pending = set_cookie(&page, "tollgate_console_pending").unwrap();
    let r = post(
        format!("tollgate_console={planted}; tollgate_console_pending={pending}"),
        form(&[
            ("csrf", &pending),
            ("token", ADMIN_TOKEN),
            ("next", "//evil.example/"),
        ]),
    )
    .await;
    let fresh = set_cookie(&r, "tollgate_console").unwrap();
    assert_ne!(fresh, planted);
    let cookie_line = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tollgate_console="))
        .unwrap()
        .to_string();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    assert!(
        body(&r).contains("href=\"/console\""),
        "next fell back: {}",
        body(&r)
    );
    let with_planted = http
        .send(
            Method::GET,
            &format!("{base}/console/overview"),
            &[("cookie", format!("tollgate_console={planted}"))],
            "",
        )
        .await;
    assert_eq!(with_planted.status, StatusCode::SEE_OTHER);

    // Signing out ends the session server-side: the old cookie opens nothing, posts nothing.
    let s = sign_in(&h, ADMIN_TOKEN).await;
    let out = s.post("/console/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        s.get("/console/overview").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        s.post("/console/teams", &[("name", "after-sign-out")])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Sign-out itself needs the CSRF token (a cross-site form cannot sign you out).
    let s = sign_in(&h, ADMIN_TOKEN).await;
    let forged = s.send(Method::POST, "/console/sign-out", "").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get("/console/overview").await.status, StatusCode::OK);
}

/// `next` never leads off the site: other hosts, schemes, backslashes, CRLF.
#[tokio::test]
async fn sign_in_next_never_names_another_site_or_a_script() {
    let h = Harness::start(Backend::Sqlite).await;
    for next in [
        "//evil.example",
        "///evil.example",
        "/console//evil.example",
        "javascript:alert(1)",
        "https://evil.example/console",
        "/\\evil.example",
        "/console/\\evil.example",
        "/console\r\nSet-Cookie: x=1",
        "/consoleevil",
    ] {
        let page = h
            .http
            .send(
                Method::GET,
                &format!("{}/console/sign-in?next={}", h.base(), enc(next)),
                &[],
                "",
            )
            .await;
        assert_eq!(
            input_value(&body(&page), "next").as_deref(),
            Some("/console"),
            "next={next:?}"
        );
    }
}

/// Markup in a session id or in the `user` a client sends is text on every page it reaches.
#[tokio::test]
async fn markup_sent_by_a_team_key_holder_stays_text() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("search").await;
    let evil = "\"><svg onload=alert(1)>";
    assert_eq!(
        call(&h, &key, &[("session-id", evil), ("x-tollgate-user", evil)]).await,
        StatusCode::OK
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&h, "/admin/v1/teams/search/sessions").await["data"][0]["id"] == evil
        })
        .await
    );
    let admin = sign_in(&h, ADMIN_TOKEN).await;
    for path in [
        "/console/overview".to_string(),
        "/console/teams/search".to_string(),
        format!("/console/teams/search/session?id={}", enc(evil)),
        "/console/reports?group_by=session&group_by=user".to_string(),
    ] {
        let reply = admin.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let text = body(&reply);
        assert!(!text.contains("<svg onload"), "{path}: raw markup");
        for header in [
            "content-security-policy",
            "x-frame-options",
            "x-content-type-options",
        ] {
            assert!(reply.headers.contains_key(header), "{path}: {header}");
        }
        assert_eq!(reply.headers["cache-control"], "no-store", "{path}");
    }
}

/// Assets are three fixed names: no traversal, no other file.
#[tokio::test]
async fn assets_serve_three_names_and_nothing_else() {
    let h = Harness::start(Backend::Sqlite).await;
    for (path, status) in [
        ("/console/assets/console.css", StatusCode::OK),
        ("/console/assets/console.js", StatusCode::OK),
        ("/console/assets/favicon.svg", StatusCode::OK),
        (
            "/console/assets/../assets/console.js",
            StatusCode::NOT_FOUND,
        ),
        (
            "/console/assets/%2e%2e/%2e%2e/Cargo.toml",
            StatusCode::NOT_FOUND,
        ),
        (
            "/console/assets/..%2f..%2fCargo.toml",
            StatusCode::NOT_FOUND,
        ),
        ("/console/assets/CONSOLE.JS", StatusCode::NOT_FOUND),
        ("/console/assets/", StatusCode::NOT_FOUND),
    ] {
        let reply = h
            .http
            .send(Method::GET, &format!("{}{path}", h.base()), &[], "")
            .await;
        assert_eq!(reply.status, status, "{path}");
    }
}

/// Malformed forms: invalid UTF-8, repeated fields (the first `csrf` counts), a NUL, other
/// methods on console paths. Each is refused or harmless, and none changes anything unasked.
#[tokio::test]
async fn malformed_forms_and_other_methods_change_nothing_unasked() {
    let h = Harness::start(Backend::Postgres).await;
    h.team_key("search").await;
    let s = sign_in(&h, ADMIN_TOKEN).await;
    let before = state(&h).await;
    // A wrong csrf first and the right one second: refused.
    let twice = s
        .send(
            Method::POST,
            "/console/teams",
            format!("csrf=wrong&csrf={}&name=twice", s.csrf),
        )
        .await;
    assert_eq!(twice.status, StatusCode::FORBIDDEN);
    // Invalid UTF-8 and a NUL in a name: refused by validation with a message.
    let mut raw = format!("csrf={}&name=bad", s.csrf).into_bytes();
    raw.extend_from_slice(&[0xff, 0xfe]);
    let reply = s.send(Method::POST, "/console/teams", raw).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let msg = s.post_flash("/console/teams", &[("name", "a\0b")]).await;
    assert!(msg.starts_with("Not done"), "{msg}");
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD] {
        let reply = s
            .send(
                method.clone(),
                "/console/teams/search",
                format!("csrf={}&name=x", s.csrf),
            )
            .await;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    assert_eq!(state(&h).await, before);
}

/// A careless new user: each empty page says what to do, and each mistyped form gives a
/// message naming the field and changes nothing.
#[tokio::test]
async fn a_new_users_mistakes_get_clear_messages_and_change_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let s = sign_in(&h, ADMIN_TOKEN).await;
    let overview = body(&s.get("/console/overview").await);
    assert!(overview.contains("No teams yet"), "{overview}");
    let empty = s.post_flash("/console/teams", &[("name", "  ")]).await;
    assert!(empty.contains("name"), "{empty}");
    assert!(
        s.post_flash("/console/teams", &[("name", "search")])
            .await
            .contains("created")
    );
    let dup = s.post_flash("/console/teams", &[("name", "search")]).await;
    assert!(dup.contains("already exists"), "{dup}");
    let team = body(&s.get("/console/teams/search").await);
    assert!(
        team.contains("No keys yet") && team.contains("No budget yet"),
        "{team}"
    );
    let before = state(&h).await;
    for limit in ["500.", "-1", "abc", "", "1e3", "0"] {
        let m = s
            .post_flash(
                "/console/teams/search/budgets",
                &[("limit_usd", limit), ("period", "month")],
            )
            .await;
        assert!(
            m.starts_with("Not done") && m.contains("limit_usd"),
            "{limit:?}: {m}"
        );
    }
    for days in ["0", "-1", "abc", "99999"] {
        let m = s
            .post_flash(
                "/console/teams/search/keys",
                &[("name", "k"), ("expires_days", days)],
            )
            .await;
        assert!(m.starts_with("Not done"), "{days:?}: {m}");
    }
    for rpm in ["-1", "1.5", "abc", "0"] {
        let m = s
            .post_flash(
                "/console/teams/search/rate-limits",
                &[("requests_per_minute", rpm)],
            )
            .await;
        assert!(m.starts_with("Not done"), "{rpm:?}: {m}");
    }
    assert_eq!(state(&h).await, before);
    // "$500" means 500 USD.
    let ok = s
        .post_flash(
            "/console/teams/search/budgets",
            &[("limit_usd", "$500"), ("period", "month")],
        )
        .await;
    assert!(ok.contains("$500.00"), "{ok}");
}

/// What a person does after copying the secret: presses reload on the "Key issued" page (a POST
/// result, sent `no-store`). Chromium resends the form, and the console issues another key.
#[tokio::test]
async fn reloading_the_key_issued_page_in_chromium_does_not_issue_another_key() {
    use tollgate_tests::browser::Browser;
    let h = Harness::start(Backend::Sqlite).await;
    let base = h.base();
    h.team_key("search").await;
    let count = || async {
        get(&h, "/admin/v1/teams/search/keys").await["data"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count().await;
    let b = Browser::start().await;
    b.goto(&format!("{base}/console")).await;
    b.fill("#token", ADMIN_TOKEN).await;
    b.click("form[action='/console/sign-in'] button[type=submit]")
        .await;
    b.wait_for("header nav").await;
    b.goto(&format!("{base}/console/teams/search")).await;
    b.wait_for("#new-key").await;
    b.fill("#new-key input[name=name]", "laptop").await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for("#secret").await;
    let first = b.text("#secret").await;
    assert_eq!(count().await, before + 1);
    b.cdp("Page.reload", json!({})).await;
    // The resent form lands somewhere new: the team page saying it was already sent, or (the
    // break) another secret.
    let landed = eventually(Duration::from_secs(10), || async {
        let source = b.page_source().await;
        source.contains("already sent") || shown_secret(&source).is_some_and(|s| s != first)
    })
    .await;
    let again = b.page_source().await;
    assert!(landed, "the reload led nowhere: {again}");
    assert!(
        again.contains("already sent"),
        "the page says why nothing was issued"
    );
    let after = count().await;
    b.close().await;
    assert_eq!(
        after,
        before + 1,
        "a reload issued another key (the page now shows {:?}, first was {first})",
        shown_secret(&again)
    );
}
