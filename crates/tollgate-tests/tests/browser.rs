//! The browser harness itself, against a small local site: a form that posts and redirects,
//! pages with and without an accessibility violation, a CSV download, cookies, an element
//! added late by script, and the phone viewport. Each test runs its own Chromium, in parallel.

// Integration tests: helpers fail loudly, and read whole (small) test requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use tollgate_tests::browser::Browser;

/// Byte-exact download content: a BOM, CRLF line ends, a quoted comma and non-ASCII text.
const CSV: &str =
    "\u{feff}team,cost_usd,note\r\nalpha,1.50,\"comma, inside\"\r\nbeta,0.000001,Zoë\r\n";
const CSV_TYPE: &str = "text/csv; charset=utf-8";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// A policy as strict as the console's: no inline script, so axe must arrive through WebDriver.
const CSP: &str = "default-src 'self'; img-src 'self' data:; script-src 'self'";

#[tokio::test]
async fn form_round_trip_through_fill_select_and_click() {
    let site = serve().await;
    let b = timed_start(Browser::start()).await;

    b.goto(&format!("{site}/form")).await;
    assert_eq!(
        b.texts("#colour option").await,
        ["Red", "Green", "Blue"],
        "texts() in document order"
    );
    assert_eq!(b.attr("#name", "name").await.as_deref(), Some("name"));
    assert_eq!(b.attr("#name", "placeholder").await, None);
    assert!(b.exists("#send").await);
    assert!(!b.exists("#nope").await);
    assert!(b.page_source().await.contains("<form id=\"f\""));

    // fill() replaces the field's initial value; click() returns after the POST, its 303 and
    // the GET it redirects to have loaded: read the result at once, no waiting.
    b.fill("#name", "Zoë & <Ängström>").await;
    b.select("#colour", "blue").await;
    b.click("#send").await;
    assert!(
        b.current_url().await.starts_with(&format!("{site}/echo?")),
        "{}",
        b.current_url().await
    );
    assert_eq!(b.text("#got-name").await, "Zoë & <Ängström>");
    assert_eq!(b.text("#got-colour").await, "blue");

    // submit() is pressing Enter in the form: the same round trip without the button.
    b.goto(&format!("{site}/form")).await;
    b.fill("#name", "second").await;
    b.submit("#f").await;
    assert_eq!(b.text("#got-name").await, "second");
    assert_eq!(b.text("#got-colour").await, "red");

    let shot = b.screenshot("browser-harness-form").await;
    assert!(shot.ends_with("console-screenshots/browser-harness-form.png"));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(PNG_MAGIC),
        "{} is not a PNG",
        shot.display()
    );
    b.close().await;
}

#[tokio::test]
async fn axe_reports_the_missing_alt_and_nothing_on_the_clean_page() {
    let site = serve().await;
    let b = timed_start(Browser::start()).await;

    b.goto(&format!("{site}/bad")).await;
    let violations = b.axe().await;
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert!(
        violations[0].starts_with("image-alt: ") && violations[0].ends_with("(1 nodes: #logo)"),
        "{violations:#?}"
    );

    b.goto(&format!("{site}/clean")).await;
    b.assert_accessible("the clean page").await;
    b.close().await;
}

#[tokio::test]
async fn fetch_returns_the_exact_csv_and_the_session_cookie_is_httponly_strict() {
    let site = serve().await;
    let b = timed_start(Browser::start()).await;

    b.goto(&format!("{site}/cookie")).await;
    let mut cookies = b.cookies().await;
    cookies.sort();
    assert_eq!(
        cookies,
        [
            (
                "tg_session".into(),
                "s3cr3t".into(),
                true,
                Some("Strict".into())
            ),
            ("tg_theme".into(), "dark".into(), false, Some("Lax".into())),
        ]
    );
    // HttpOnly as the page sees it: invisible to script, yet sent with its requests.
    assert_eq!(
        b.eval("return document.cookie;", vec![]).await,
        "tg_theme=dark"
    );
    let (status, _, sent) = b.fetch("/whoami").await;
    assert_eq!(status, 200);
    assert!(sent.contains("tg_session=s3cr3t"), "{sent}");

    let (status, content_type, body) = b.fetch(&format!("{site}/x.csv")).await;
    assert_eq!((status, content_type.as_str()), (200, CSV_TYPE));
    assert_eq!(body.as_bytes(), CSV.as_bytes());
    let (status, _, _) = b.fetch("/missing.csv").await;
    assert_eq!(status, 404);
    b.close().await;
}

#[tokio::test]
async fn phone_viewport_is_390_wide_and_prefers_dark_is_emulated() {
    let site = serve().await;
    let b = timed_start(Browser::start_phone()).await;

    b.goto(&format!("{site}/clean")).await;
    assert_eq!(b.eval("return window.innerWidth;", vec![]).await, 390);
    let agent = b.eval("return navigator.userAgent;", vec![]).await;
    assert!(agent.as_str().unwrap().contains("Mobile"), "{agent}");

    let dark = "return matchMedia('(prefers-color-scheme: dark)').matches;";
    assert_eq!(b.eval(dark, vec![]).await, false);
    b.set_prefers_dark(true).await;
    assert_eq!(b.eval(dark, vec![]).await, true);
    b.goto(&format!("{site}/form")).await;
    assert_eq!(b.eval(dark, vec![]).await, true, "lasts across navigations");

    let png = std::fs::read(b.screenshot("browser-harness-phone").await).unwrap();
    assert!(png.starts_with(PNG_MAGIC));
    b.close().await;
}

#[tokio::test]
async fn two_browsers_at_once_share_no_profile_and_wait_for_sees_late_content() {
    let site = serve().await;
    let (one, two) = tokio::join!(Browser::start(), Browser::start());

    one.goto(&format!("{site}/cookie")).await;
    two.goto(&format!("{site}/clean")).await;
    assert_eq!(one.cookies().await.len(), 2);
    assert_eq!(
        two.cookies().await,
        [],
        "the second profile has no cookie jar in common"
    );

    // An element the page's own script adds 300 ms after load.
    two.goto(&format!("{site}/late")).await;
    assert!(!two.exists("#late").await);
    two.wait_for("#late").await;
    assert_eq!(two.text("#late").await, "arrived");

    // Dropped without close(): Drop kills Chromium and ChromeDriver.
    drop(one);
    two.close().await;
}

async fn timed_start(start: impl std::future::Future<Output = Browser>) -> Browser {
    let began = Instant::now();
    let browser = start.await;
    eprintln!("Browser start took {:?}", began.elapsed());
    browser
}

/// The test site on 127.0.0.1:0; returns its base URL.
async fn serve() -> String {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(route)),
            );
        }
    });
    base
}

async fn route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let query = parts.uri.query().unwrap_or_default();
    let reply = match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/form") => page(
            "Form",
            r#"<form id="f" method="post" action="/form">
                 <label for="name">Name</label> <input id="name" name="name" value="initial">
                 <label for="colour">Colour</label>
                 <select id="colour" name="colour">
                   <option value="red">Red</option><option value="green">Green</option>
                   <option value="blue">Blue</option>
                 </select>
                 <button id="send" type="submit">Send</button>
               </form>"#,
        ),
        // Post/redirect/get, as the console does it.
        ("POST", "/form") => Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(
                header::LOCATION,
                format!("/echo?{}", String::from_utf8_lossy(&body)),
            )
            .body(Full::default())
            .unwrap(),
        ("GET", "/echo") => {
            let fields = form_decode(query);
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| escape(v))
                    .unwrap_or_default()
            };
            page(
                "Echo",
                &format!(
                    r#"<p id="got-name">{}</p><p id="got-colour">{}</p>"#,
                    field("name"),
                    field("colour")
                ),
            )
        }
        ("GET", "/bad") => page(
            "Bad",
            r#"<img id="logo" src="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/%3E">"#,
        ),
        ("GET", "/clean") => page(
            "Clean",
            r#"<img id="logo" alt="tollgate" src="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/%3E">"#,
        ),
        ("GET", "/x.csv") => Response::builder()
            .header(header::CONTENT_TYPE, CSV_TYPE)
            .header(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"x.csv\"",
            )
            .body(Full::new(Bytes::from_static(CSV.as_bytes())))
            .unwrap(),
        ("GET", "/cookie") => {
            let mut reply = page("Cookie", "<p>Signed in.</p>");
            let headers = reply.headers_mut();
            headers.append(
                header::SET_COOKIE,
                "tg_session=s3cr3t; Path=/; HttpOnly; SameSite=Strict"
                    .parse()
                    .unwrap(),
            );
            headers.append(
                header::SET_COOKIE,
                "tg_theme=dark; Path=/; SameSite=Lax".parse().unwrap(),
            );
            reply
        }
        ("GET", "/whoami") => Response::new(Full::new(Bytes::from(
            parts
                .headers
                .get(header::COOKIE)
                .map(|c| c.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default(),
        ))),
        ("GET", "/late") => page("Late", r#"<script src="/late.js"></script>"#),
        ("GET", "/late.js") => Response::builder()
            .header(header::CONTENT_TYPE, "text/javascript")
            .body(Full::new(Bytes::from_static(
                b"setTimeout(() => { const p = document.createElement('p'); p.id = 'late'; \
                  p.textContent = 'arrived'; document.querySelector('main').append(p); }, 300);",
            )))
            .unwrap(),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))
            .unwrap(),
    };
    Ok(reply)
}

/// A complete, otherwise accessible HTML page around `main`.
fn page(title: &str, main: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><main><h1>{title}</h1>{main}</main></body></html>"
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("content-security-policy", CSP)
        .body(Full::new(Bytes::from(html)))
        .unwrap()
}

/// `application/x-www-form-urlencoded` pairs.
fn form_decode(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let mut out = Vec::new();
        let mut bytes = s.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).unwrap()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn form_decoding_handles_utf8_and_plus() {
    assert_eq!(
        form_decode("name=Zo%C3%AB+%26+x&colour=blue"),
        [
            ("name".into(), "Zoë & x".into()),
            ("colour".into(), "blue".into())
        ]
    );
}
