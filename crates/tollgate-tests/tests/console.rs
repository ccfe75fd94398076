//! The web console in a real headless Chromium (Debian's, through ChromeDriver) against a real
//! gateway and database: sign-in by role, a key's secret shown once, a budget set in the
//! console refusing traffic with the console and the API agreeing, downloads equal to the
//! API's bytes, a team admin fenced into its team, CSRF, and axe-core on every page. Each page
//! visited is saved as a screenshot in target/console-screenshots/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_tests::browser::Browser;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, HttpClient, eventually};

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

async fn api(h: &Harness, path: &str) -> Value {
    let reply = h
        .http
        .send(Method::GET, &format!("{}{path}", h.base()), &admin(), "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    reply.json()
}

/// An admin token of `role` (and `team`) through the admin API: its secret.
async fn token(h: &Harness, name: &str, role: &str, team: Option<&str>) -> String {
    let mut body = json!({"name": name, "role": role});
    if let Some(team) = team {
        body["team"] = json!(team);
    }
    let reply = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &admin(),
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    reply.json()["secret"].as_str().unwrap().to_string()
}

/// Signs in through the sign-in form and lands on the role's home page.
async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/console")).await;
    assert!(
        b.current_url().await.contains("/console/sign-in"),
        "a visitor without a session is sent to sign in"
    );
    b.fill("#token", token).await;
    b.click("form[action='/console/sign-in'] button[type=submit]")
        .await;
    b.wait_for("header nav").await;
}

async fn visit(b: &Browser, url: &str, shot: &str) {
    b.goto(url).await;
    b.wait_for("main h1").await;
    b.screenshot(shot).await;
    b.assert_accessible(shot).await;
}

/// One chat completion with `key`: its status.
async fn call(h: &Harness, key: &str) -> StatusCode {
    h.http
        .json(
            Method::POST,
            &format!("{}/v1/chat/completions", h.base()),
            &[("authorization", format!("Bearer {key}"))],
            json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await
        .status
}

/// The dollars a page shows for an amount, as the console formats it (exact, grouped).
fn shown(nanos: i64) -> String {
    let whole = nanos / 1_000_000_000;
    let frac = format!("{:09}", nanos % 1_000_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{frac}")
}

#[tokio::test]
async fn an_admin_creates_a_team_issues_a_key_sets_a_budget_and_sees_it_refuse() {
    let h = Harness::start(Backend::Postgres).await;
    let base = h.base();
    let b = Browser::start().await;
    sign_in(&b, &base, ADMIN_TOKEN).await;

    // A new gateway: the overview says what to do first.
    assert!(b.current_url().await.ends_with("/console/overview"));
    assert!(b.text("main").await.contains("No teams yet"));
    b.screenshot("01-overview-empty").await;
    b.assert_accessible("overview (no teams)").await;

    // Create a team.
    visit(&b, &format!("{base}/console/teams"), "02-teams-empty").await;
    b.fill("#new-team input[name=name]", "search").await;
    b.fill("#new-team input[name=cost_centre]", "CC-4711").await;
    b.click("#new-team button[type=submit]").await;
    b.wait_for("#keys").await;
    assert!(b.text(".flash").await.contains("Team search created"));
    assert!(
        b.text("#setup").await.contains(&format!("{base}/v1")),
        "no traffic yet: the set-up snippets point at this gateway"
    );
    b.screenshot("03-team-new").await;
    b.assert_accessible("team (new)").await;

    // Issue a key: its secret is shown once, and works.
    b.fill("#new-key input[name=name]", "ci-runner").await;
    b.fill("#new-key input[name=allowed_models]", "gpt-5*")
        .await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for("#secret").await;
    let secret = b.text("#secret").await;
    assert!(secret.starts_with("tg-"), "{secret}");
    assert!(b.exists("button[data-copy=secret]").await);
    b.screenshot("04-key-issued").await;
    b.assert_accessible("key issued").await;
    assert_eq!(call(&h, &secret).await, StatusCode::OK);
    b.click("a.button.primary").await;
    b.wait_for("#keys").await;
    assert!(
        !b.page_source().await.contains(&secret),
        "the secret is never shown again"
    );
    let team_url = b.current_url().await;
    let row = b.text("#keys tbody tr").await;
    assert!(row.contains("ci-runner") && row.contains("gpt-5*"), "{row}");

    // A budget of $0.002 (each call costs $0.000862 on the mock): the third call is refused.
    b.fill("#new-budget input[name=limit_usd]", "0.002").await;
    b.click("#new-budget button[type=submit]").await;
    b.wait_for("#budgets table").await;
    assert!(b.text(".flash").await.contains("Budget set: $0.002"));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let status = call(&h, &secret).await;
        statuses.push(status);
        if status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // The budget page agrees with the API, to the nano-dollar.
    let budgets = api(&h, "/admin/v1/budgets?team=search").await;
    let budget = &budgets["data"][0];
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            api(&h, "/admin/v1/budgets?team=search").await["data"][0]["reserved_nano_usd"] == 0
        })
        .await
    );
    let budget_now = api(&h, "/admin/v1/budgets?team=search").await["data"][0].clone();
    b.goto(&team_url).await;
    b.wait_for("#budgets table").await;
    let committed = budget_now["committed_nano_usd"].as_i64().unwrap();
    assert!(committed > 0, "{budget}");
    assert_eq!(
        b.text("#budgets td.committed").await,
        shown(committed),
        "{budget_now}"
    );
    assert_eq!(
        b.text("#budgets td.remaining").await,
        shown(budget_now["remaining_nano_usd"].as_i64().unwrap())
    );
    assert_eq!(b.text("#budgets td.limit").await, "$0.002");
    b.screenshot("05-team-budget-spent").await;
    b.assert_accessible("team (budget spent)").await;

    // The overview agrees with the spend report and the refusals report.
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            api(&h, "/admin/v1/reports/refusals").await["total"] == 1
        })
        .await,
        "the refusal reaches the refusals rollup"
    );
    let report = api(&h, "/admin/v1/reports/spend").await;
    let total = report["totals"]["cost_nano_usd"].as_i64().unwrap();
    visit(&b, &format!("{base}/console/overview"), "06-overview").await;
    assert_eq!(
        b.attr("#month-to-date .big", "data-nanos").await.as_deref(),
        Some(total.to_string().as_str())
    );
    assert_eq!(b.text("#month-to-date .big").await, shown(total));
    assert!(b.text("#budgets").await.contains("search"));
    let refused = b.text("#refused tbody").await;
    assert!(
        refused.contains("budget") && refused.ends_with('1'),
        "the refusal is counted: {refused}"
    );

    // The audit log shows the console's changes under the token that signed in.
    visit(&b, &format!("{base}/console/audit"), "07-audit").await;
    let audit = b.text("#audit").await;
    assert!(
        audit.contains("POST /admin/v1/teams/{team}/keys"),
        "{audit}"
    );
    assert!(audit.contains("POST /admin/v1/budgets"), "{audit}");
    let entries = api(&h, "/admin/v1/audit").await;
    assert!(
        entries["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor_id"] == "bootstrap"),
        "{entries}"
    );

    visit(
        &b,
        &format!("{base}/console/admin-tokens"),
        "08-admin-tokens",
    )
    .await;

    // Signing out ends the session: the same cookie no longer opens a page.
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c.0 == "tollgate_console")
        .expect("a session cookie");
    assert!(session.2, "HttpOnly");
    assert_eq!(session.3.as_deref(), Some("Strict"));
    b.click("header form button[type=submit]").await;
    b.wait_for("#token").await;
    b.goto(&format!("{base}/console/overview")).await;
    assert!(b.current_url().await.contains("/console/sign-in"));
    b.close().await;
}

#[tokio::test]
async fn finance_downloads_a_report_byte_for_byte_the_apis() {
    let h = Harness::start(Backend::Sqlite).await;
    let base = h.base();
    let key = h.team_key("search").await;
    for _ in 0..3 {
        assert_eq!(call(&h, &key).await, StatusCode::OK);
    }
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            api(&h, "/admin/v1/reports/spend").await["totals"]["requests"] == 3
        })
        .await
    );
    let finance = token(&h, "finance-alice", "finance", None).await;
    let b = Browser::start().await;
    sign_in(&b, &base, &finance).await;
    assert!(b.current_url().await.ends_with("/console/overview"));
    let nav = b.text("header nav").await;
    assert!(
        !nav.contains("Admin tokens") && !nav.contains("Audit"),
        "{nav}"
    );

    visit(&b, &format!("{base}/console/reports"), "09-reports").await;
    b.click("input[name=group_by][value=cost_centre]").await;
    b.fill("input[name=tz]", "Europe/Berlin").await;
    b.click("#report button[type=submit]").await;
    b.wait_for("#report-table").await;
    assert!(b.text("#report-table").await.contains("CC-1"));
    b.screenshot("10-report-by-cost-centre").await;
    b.assert_accessible("report").await;

    for (link, format) in [("#download-csv", "csv"), ("#download-json", "json")] {
        let href = b.attr(link, "href").await.expect("a download link");
        let (status, content_type, body) = b.fetch_bytes(&href).await;
        assert_eq!(status, 200);
        let api = h
            .http
            .send(
                Method::GET,
                &format!(
                    "{base}/admin/v1/reports/spend?tz=Europe%2FBerlin&group_by=cost_centre&format={format}"
                ),
                &[("authorization", format!("Bearer {finance}"))],
                "",
            )
            .await;
        assert_eq!(api.status, StatusCode::OK);
        assert_eq!(
            body,
            api.body.to_vec(),
            "{format} download equals the API's"
        );
        assert_eq!(
            Some(content_type.as_str()),
            api.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
        );
    }

    // Finance reads, and cannot change: no forms on a team page, and a hand-made POST is 403.
    visit(
        &b,
        &format!("{base}/console/teams/search"),
        "11-team-as-finance",
    )
    .await;
    assert!(!b.exists("#new-key").await && !b.exists("#new-budget").await);
    b.goto(&format!("{base}/console/admin-tokens")).await;
    assert!(b.text("main").await.contains("Not allowed"));
    b.close().await;
}

#[tokio::test]
async fn a_team_admin_cannot_reach_another_team_by_link_or_typed_url() {
    let h = Harness::start(Backend::Sqlite).await;
    let base = h.base();
    let own = h.team_key("search").await;
    let other = h.team_key("payments").await;
    for key in [&own, &other] {
        assert_eq!(call(&h, key).await, StatusCode::OK);
    }
    let team_admin = token(&h, "search-lead", "team_admin", Some("search")).await;
    let payments = api(&h, "/admin/v1/teams/payments").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = Browser::start().await;
    sign_in(&b, &base, &team_admin).await;
    assert!(
        b.current_url().await.contains("/console/teams/"),
        "a team admin starts on its team"
    );
    assert!(b.text("main h1").await.contains("search"));
    b.screenshot("12-team-as-team-admin").await;
    b.assert_accessible("team (team admin)").await;
    assert!(!b.page_source().await.contains("payments"));

    for path in [
        format!("/console/teams/{payments}"),
        "/console/teams/payments".to_string(),
        "/console/teams/PAYMENTS".to_string(),
        format!("/console/teams/{payments}/session?id=anything"),
        "/console/audit".to_string(),
        "/console/admin-tokens".to_string(),
        "/console/reports/download?team=payments&format=csv".to_string(),
    ] {
        b.goto(&format!("{base}{path}")).await;
        let main = b.text("main").await;
        assert!(
            main.contains("Not allowed") || main.contains("Not found"),
            "{path}: {main}"
        );
    }
    // The overview and team list are not a way round: they lead back to the own team.
    for path in ["/console/overview", "/console/teams"] {
        b.goto(&format!("{base}{path}")).await;
        assert!(b.text("main h1").await.contains("search"), "{path}");
    }
    // Reports are the own team's only.
    b.goto(&format!("{base}/console/reports?group_by=team"))
        .await;
    let table = b.text("#report-table").await;
    assert!(
        table.contains("search") && !table.contains("payments"),
        "{table}"
    );
    b.close().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_changes_nothing() {
    let h = Harness::start(Backend::Sqlite).await;
    let base = h.base();
    h.team_key("search").await;
    let keys_before = api(&h, "/admin/v1/teams/search/keys").await["data"]
        .as_array()
        .unwrap()
        .len();
    let b = Browser::start().await;
    sign_in(&b, &base, ADMIN_TOKEN).await;
    b.goto(&format!("{base}/console/teams/search")).await;
    b.wait_for("#new-key").await;
    b.fill("#new-key input[name=name]", "forged").await;
    b.eval(
        "document.querySelector('#new-key input[name=csrf]').remove()",
        vec![],
    )
    .await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for("main h1").await;
    assert!(
        b.text("main").await.contains("security token"),
        "{}",
        b.text("main").await
    );
    // A token from another session is refused the same way.
    b.goto(&format!("{base}/console/teams/search")).await;
    b.wait_for("#new-key").await;
    b.eval(
        "document.querySelector('#new-key input[name=csrf]').value = 'a'.repeat(64)",
        vec![],
    )
    .await;
    b.fill("#new-key input[name=name]", "forged").await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for("main h1").await;
    assert!(b.text("main").await.contains("security token"));
    let keys_after = api(&h, "/admin/v1/teams/search/keys").await["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys_before, keys_after, "no key was issued");

    // Without a session at all, a POST is refused too (no redirect that could replay it).
    let reply = HttpClient::new()
        .send(
            Method::POST,
            &format!("{base}/console/teams/search/keys"),
            &[(
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            "name=forged",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    b.close().await;
}

#[tokio::test]
async fn pages_read_on_a_phone_and_in_the_dark() {
    let h = Harness::start(Backend::Sqlite).await;
    let base = h.base();
    let key = h.team_key("search").await;
    for _ in 0..2 {
        let reply = h
            .http
            .json(
                Method::POST,
                &format!("{base}/v1/responses"),
                &[
                    ("authorization", format!("Bearer {key}")),
                    ("session-id", "codex-run-1".to_string()),
                ],
                json!({"model": "gpt-5.5", "input": "hello"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            api(&h, "/admin/v1/teams/search/sessions").await["data"][0]["requests"] == 2
        })
        .await
    );
    let b = Browser::start_phone().await;
    sign_in(&b, &base, ADMIN_TOKEN).await;
    visit(&b, &format!("{base}/console/overview"), "13-overview-phone").await;
    let width = b
        .eval("return document.documentElement.scrollWidth", vec![])
        .await;
    assert!(
        width.as_i64().unwrap() <= 390,
        "nothing wider than the phone: {width}"
    );
    visit(
        &b,
        &format!("{base}/console/teams/search/session?id=codex-run-1"),
        "14-session-phone",
    )
    .await;
    assert!(b.text("#calls").await.contains("gpt-5.5"));
    assert_eq!(b.texts("#calls tbody tr").await.len(), 2);
    b.set_prefers_dark(true).await;
    visit(
        &b,
        &format!("{base}/console/overview"),
        "15-overview-phone-dark",
    )
    .await;
    let background = b
        .eval(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await;
    assert_eq!(
        background,
        json!("rgb(21, 23, 26)"),
        "the dark theme applies"
    );
    b.close().await;
}

#[tokio::test]
async fn single_sign_on_through_a_real_openid_provider_maps_a_group_to_team_admin() {
    // The console's public URL must be known before the gateway starts: the provider only
    // redirects to a registered URI.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");
    let provider =
        tollgate_tests::oidc::Provider::start(0, &format!("{public}/console/oidc/callback"), &[])
            .await;
    let issuer = provider.issuer.clone();
    let h = Harness::start_custom(
        Backend::Sqlite,
        tollgate_mock::MockOptions::default(),
        |c| {
            c.listen = format!("127.0.0.1:{port}");
            c.console.public_url = Some(public.clone());
            c.console.oidc = Some(tollgate_core::config::OidcConfig {
                issuer,
                client_id: "tollgate-console".into(),
                label: "Sign in with Example SSO".into(),
                scopes: vec!["email".into(), "profile".into(), "groups".into()],
                claim: "groups".into(),
                roles: vec![
                    tollgate_core::config::OidcRole {
                        value: "platform-admins".into(),
                        role: "admin".into(),
                        team: None,
                    },
                    tollgate_core::config::OidcRole {
                        value: "search-admins".into(),
                        role: "team_admin".into(),
                        team: Some("search".into()),
                    },
                ],
            });
        },
    )
    .await;
    h.team_key("search").await;
    h.team_key("payments").await;

    let b = Browser::start().await;
    b.goto(&format!("{public}/console")).await;
    b.wait_for("#oidc").await;
    b.screenshot("16-sign-in").await;
    b.assert_accessible("sign-in").await;
    b.click("#oidc").await;
    // The provider's own login and consent forms.
    b.wait_for("input[name=login]").await;
    b.fill("input[name=login]", "ada").await;
    b.fill("input[name=password]", "anything").await;
    b.click("button[type=submit]").await;
    b.wait_for("button[type=submit]").await;
    b.click("button[type=submit]").await;
    b.wait_for("header nav").await;
    assert!(
        b.current_url()
            .await
            .starts_with(&format!("{public}/console/teams/")),
        "ada lands on her team: {}",
        b.current_url().await
    );
    assert!(b.text("main h1").await.contains("search"));
    let who = b.text("header .who").await;
    assert!(who.contains("team admin"), "{who}");
    b.screenshot("17-signed-in-with-sso").await;

    // She is a team admin of search and nothing more.
    b.goto(&format!("{public}/console/teams/payments")).await;
    assert!(b.text("main").await.contains("Not allowed"));

    // A change she makes is audited under her single sign-on identity.
    b.goto(&format!("{public}/console/teams/search")).await;
    b.wait_for("#new-key").await;
    b.fill("#new-key input[name=name]", "ada-laptop").await;
    b.click("#new-key button[type=submit]").await;
    b.wait_for("#secret").await;
    let audit = api(&h, "/admin/v1/audit").await;
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"] == "POST /admin/v1/teams/{team}/keys" && e["after"]["name"] == "ada-laptop"
        })
        .unwrap_or_else(|| panic!("no audit entry for ada's key: {audit}"))
        .clone();
    assert!(
        entry["actor_id"].as_str().unwrap().starts_with("oidc:"),
        "{entry}"
    );
    assert_eq!(entry["actor_role"], "team_admin");
    b.close().await;
    provider.stop().await;
}

#[tokio::test]
async fn the_console_is_served_where_the_admin_api_is_and_can_be_switched_off() {
    // With an admin listener, the console is there and not on the public listener.
    let h = Harness::start_custom(
        Backend::Sqlite,
        tollgate_mock::MockOptions::default(),
        |c| c.admin_listen = Some("127.0.0.1:0".into()),
    )
    .await;
    let admin_addr = h.gateway.admin_addr.expect("an admin listener");
    let on_admin = h
        .http
        .send(
            Method::GET,
            &format!("http://{admin_addr}/console/sign-in"),
            &[],
            "",
        )
        .await;
    assert_eq!(on_admin.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&on_admin.body).contains("Admin token"));
    assert!(
        on_admin
            .headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("frame-ancestors 'none'"))
    );
    let on_main = h
        .http
        .send(
            Method::GET,
            &format!("{}/console/sign-in", h.base()),
            &[],
            "",
        )
        .await;
    on_main.assert_error(404, "unknown_url");

    // Switched off, /console is not there at all.
    let off = Harness::start_custom(
        Backend::Sqlite,
        tollgate_mock::MockOptions::default(),
        |c| c.console.enabled = false,
    )
    .await;
    let reply = off
        .http
        .send(Method::GET, &format!("{}/console", off.base()), &[], "")
        .await;
    reply.assert_error(404, "unknown_url");
}
