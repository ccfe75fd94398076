//! A real browser for the console's tests: Debian's headless Chromium driven through ChromeDriver
//! (WebDriver, via `fantoccini`), with axe-core for accessibility checks. Each [`Browser`] has
//! its own ChromeDriver (on a port it picks itself, `--port=0`) and its own temporary profile,
//! so tests running in parallel never share a port, a cookie jar or a cache. Chromium,
//! ChromeDriver and axe-core come from `tests/clients/setup.sh`, run on first use.
//!
//! Every method fails the test on error, saying what was asked and what the page showed. Only
//! [`Browser::wait_for`] waits for content to appear; the others act on the page as it is
//! (after [`Browser::goto`], [`Browser::click`] and [`Browser::submit`] have let it load).

mod launch;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::HttpClient;
use crate::clients::{clients_dir, repo_root};
use launch::{Device, Driver};

/// How long [`Browser::wait_for`] polls for an element, and a navigation may take to settle.
const WAIT: Duration = Duration::from_secs(10);
/// Page loads and scripts (axe on a large page, a slow download) fail after this.
const COMMAND_TIMEOUT_MS: u64 = 30_000;
/// The axe-core rule tags [`Browser::axe`] runs: WCAG 2.0, 2.1 and 2.2, levels A and AA.
const AXE_TAGS: [&str; 5] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"];

/// One headless Chromium session and the ChromeDriver that runs it.
pub struct Browser {
    client: Option<Client>,
    driver: Driver,
}

impl Browser {
    /// Starts ChromeDriver on a free port and one headless Chromium session (window 1280x900,
    /// a fresh temporary profile). Fails with a clear message naming what is missing.
    pub async fn start() -> Browser {
        Browser::launch(Device::Desktop).await
    }

    /// As [`Browser::start`], with ChromeDriver's mobile emulation: a 390x844 viewport, touch,
    /// device pixel ratio 3 and a mobile user agent, for the phone layout.
    pub async fn start_phone() -> Browser {
        Browser::launch(Device::Phone).await
    }

    async fn launch(device: Device) -> Browser {
        let (client, driver) = launch::start(device).await;
        Browser {
            client: Some(client),
            driver,
        }
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until close()")
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The address of the page now shown (after any redirects).
    pub async fn current_url(&self) -> String {
        self.client()
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// Clears the first element matching `css`, then types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear `{css}`: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
    }

    /// Chooses the option whose `value` is `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.select_by_value(value).await {
            panic!(
                "cannot select value {value:?} in `{css}`: {e}\n{}",
                self.page_text().await
            );
        }
    }

    /// Clicks the first element matching `css`; if that starts a navigation (a link, a submit
    /// button), returns once the new page has loaded.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        let mark = self.mark_document().await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
        self.settle(&mark, &format!("clicking `{css}`")).await;
    }

    /// Submits the form matching `form_css` as pressing Enter in it would (`requestSubmit()`:
    /// validation and `submit` handlers run) and waits for the page it leads to.
    pub async fn submit(&self, form_css: &str) {
        let form = self.find(form_css).await;
        let mark = self.mark_document().await;
        let element = serde_json::to_value(&form).expect("an element reference serialises");
        self.client()
            .execute("arguments[0].requestSubmit();", vec![element])
            .await
            .unwrap_or_else(|e| panic!("cannot submit `{form_css}`: {e}"));
        self.settle(&mark, &format!("submitting `{form_css}`"))
            .await;
    }

    /// The `innerText` of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let found = self
            .eval(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![json!(css)],
            )
            .await;
        match found {
            Value::String(text) => text,
            _ => self.missing(css).await,
        }
    }

    /// The `innerText` of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let found = self
            .eval(
                "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText);",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(found).expect("a list of strings")
    }

    /// Whether anything matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        self.eval(
            "return document.querySelector(arguments[0]) !== null;",
            vec![json!(css)],
        )
        .await
            == Value::Bool(true)
    }

    /// Attribute `name` of the first element matching `css`, as `getAttribute` returns it.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let found = self
            .eval(
                "const e = document.querySelector(arguments[0]);
                 return e ? [e.getAttribute(arguments[1])] : null;",
                vec![json!(css), json!(name)],
            )
            .await;
        match found {
            Value::Array(mut v) => v.pop().and_then(|a| a.as_str().map(str::to_owned)),
            _ => self.missing(css).await,
        }
    }

    /// The current DOM serialised as HTML.
    pub async fn page_source(&self) -> String {
        self.client().source().await.expect("the page source")
    }

    /// Waits up to 10 s for something to match `css`; fails with the page's text if nothing does.
    pub async fn wait_for(&self, css: &str) {
        let found = self
            .client()
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(25))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(_) => {}
            Err(fantoccini::error::CmdError::WaitTimeout) => panic!(
                "nothing matched `{css}` within {WAIT:?} on {}; the page says:\n{}",
                self.current_url().await,
                self.page_text().await
            ),
            Err(e) => panic!("waiting for `{css}`: {e}"),
        }
    }

    /// Runs `js` as the body of a function in the page (`arguments` holds `args`; `return` a
    /// value, or a promise to wait for it) and returns its JSON result.
    pub async fn eval(&self, js: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(js, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n--- script ---\n{js}"))
    }

    /// `fetch(url, {credentials: 'same-origin'})` inside the page: the status, the content-type
    /// and the body, which must be UTF-8 (it is compared byte for byte, BOM included).
    pub async fn fetch(&self, url: &str) -> (u16, String, String) {
        let (status, content_type, body) = self.fetch_bytes(url).await;
        let body = String::from_utf8(body)
            .unwrap_or_else(|e| panic!("{url} did not return UTF-8 ({e}); use fetch_bytes"));
        (status, content_type, body)
    }

    /// [`Browser::fetch`] returning the body's exact bytes.
    pub async fn fetch_bytes(&self, url: &str) -> (u16, String, Vec<u8>) {
        // The bytes travel as a JSON array: `Response.text()` would drop a BOM and replace
        // invalid UTF-8, hiding exactly the differences a download test looks for.
        let reply = self
            .eval(
                "return fetch(arguments[0], {credentials: 'same-origin'}).then(async r => ({
                     status: r.status,
                     type: r.headers.get('content-type') || '',
                     body: Array.from(new Uint8Array(await r.arrayBuffer())),
                 }));",
                vec![json!(url)],
            )
            .await;
        let status = reply["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        let body: Option<Vec<u8>> = serde_json::from_value(reply["body"].clone()).ok();
        match (status, reply["type"].as_str(), body) {
            (Some(status), Some(content_type), Some(body)) => {
                (status, content_type.to_owned(), body)
            }
            _ => panic!("fetch({url}) in the page returned {reply}"),
        }
    }

    /// Saves a PNG of the viewport as `target/console-screenshots/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.expect("a screenshot");
        let dir = target_dir().join("console-screenshots");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Runs axe-core (from the clients dir, never a CDN) on the current page with the WCAG 2
    /// A/AA rules (2.0, 2.1 and 2.2); each violation as `"id: help (n nodes: first selector)"`.
    pub async fn axe(&self) -> Vec<String> {
        let source = axe_source().await;
        // Injected through WebDriver, so a page's Content-Security-Policy does not block it.
        if self.eval("return typeof window.axe;", vec![]).await != json!("object") {
            self.eval(&format!("{source}\n;return typeof window.axe;"), vec![])
                .await;
        }
        let violations = self
            .eval(
                "return axe.run(document, {
                     runOnly: {type: 'tag', values: arguments[0]},
                     resultTypes: ['violations'],
                 }).then(r => r.violations.map(v => ({
                     id: v.id,
                     help: v.help,
                     nodes: v.nodes.length,
                     first: v.nodes.length ? v.nodes[0].target.map(String).join(' ') : '',
                 })));",
                vec![json!(AXE_TAGS)],
            )
            .await;
        let Value::Array(violations) = violations else {
            panic!("axe.run returned {violations}");
        };
        violations
            .iter()
            .map(|v| {
                format!(
                    "{}: {} ({} nodes: {})",
                    v["id"].as_str().unwrap_or_default(),
                    v["help"].as_str().unwrap_or_default(),
                    v["nodes"],
                    v["first"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Asserts axe finds no violation on the current page (`page` names it in the failure).
    pub async fn assert_accessible(&self, page: &str) {
        let violations = self.axe().await;
        assert!(
            violations.is_empty(),
            "{page} ({}) has {} accessibility violation(s):\n  {}",
            self.current_url().await,
            violations.len(),
            violations.join("\n  ")
        );
    }

    /// Every cookie of the current page: name, value, HttpOnly, SameSite (`"Strict"`, `"Lax"`,
    /// `"None"`).
    pub async fn cookies(&self) -> Vec<(String, String, bool, Option<String>)> {
        self.client()
            .get_all_cookies()
            .await
            .expect("the page's cookies")
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.value().to_owned(),
                    c.http_only().unwrap_or(false),
                    c.same_site().map(|s| s.to_string()),
                )
            })
            .collect()
    }

    /// Emulates `prefers-color-scheme: dark` (or light) for this tab, through ChromeDriver's
    /// `goog/cdp/execute` (`Emulation.setEmulatedMedia`); it lasts across navigations.
    pub async fn set_prefers_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .await;
    }

    /// Sends a Chrome DevTools Protocol command to this tab and returns its result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        // fantoccini knows only W3C endpoints; ChromeDriver's CDP one is a plain POST to it.
        let session = self
            .client()
            .session_id()
            .await
            .expect("the session id")
            .expect("an open session");
        let url = format!(
            "http://127.0.0.1:{}/session/{session}/goog/cdp/execute",
            self.driver.port
        );
        let reply = HttpClient::new()
            .json(
                Method::POST,
                &url,
                &[],
                json!({"cmd": cmd, "params": params}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "CDP {cmd}: {reply:?}");
        reply.json()["value"].clone()
    }

    /// Ends the session (Chromium exits) and stops ChromeDriver; the profile is removed.
    pub async fn close(mut self) {
        self.driver.note_chromium();
        if let Some(client) = self.client.take()
            && let Err(e) = client.close().await
        {
            eprintln!("closing the WebDriver session: {e}");
        }
        self.driver.stop().await;
        // Drop waits for Chromium's last processes to exit and removes the profile.
    }

    /// The first element matching `css`, or a failure showing the page.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) if e.is_no_such_element() => self.missing(css).await,
            Err(e) => panic!("cannot look for `{css}`: {e}"),
        }
    }

    async fn missing<T>(&self, css: &str) -> T {
        panic!(
            "nothing matches `{css}` on {}; the page says:\n{}",
            self.current_url().await,
            self.page_text().await
        )
    }

    /// The page's visible text (the first 4,000 characters), for failure messages.
    async fn page_text(&self) -> String {
        let text = self
            .client()
            .execute(
                "return document.body ? document.body.innerText : document.documentElement.outerHTML;",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "(the page could not be read)".into());
        text.chars().take(4000).collect()
    }

    /// Tags the current document and starts noting what would navigate it away, so
    /// [`Browser::settle`] can tell "no navigation" from "navigation not started yet".
    async fn mark_document(&self) -> String {
        let mark = format!("{:016x}", rand::random::<u64>());
        self.eval(
            "window.__tollgateMark = arguments[0];
             window.__tollgateUnloading = false;
             window.__tollgateSubmit = null;
             if (!window.__tollgateListening) {
               window.__tollgateListening = true;
               addEventListener('beforeunload', () => { window.__tollgateUnloading = true; });
               addEventListener('submit', e => { window.__tollgateSubmit = e; }, true);
             }",
            vec![json!(mark)],
        )
        .await;
        mark
    }

    /// After an action on the document marked `mark`: returns at once if it started no
    /// navigation, else once the next document has loaded. ChromeDriver waits for the
    /// navigations it sees start, but a form submission navigates from a task queued after the
    /// `submit` event, which can run after the click has returned; so a `submit` that no handler
    /// cancelled and that targets this window counts as a navigation on its way.
    async fn settle(&self, mark: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_millis(COMMAND_TIMEOUT_MS);
        loop {
            let state = self
                .client()
                .execute(
                    "const s = window.__tollgateSubmit;
                     let pending = window.__tollgateUnloading === true;
                     if (s && !s.defaultPrevented) {
                       const by = s.submitter, form = s.target;
                       const method = (by && by.getAttribute('formmethod')) || form.method || '';
                       const target = (by && by.getAttribute('formtarget')) || form.target || '';
                       if (method.toLowerCase() !== 'dialog' && ['', '_self'].includes(target)) {
                         pending = true;
                       }
                     }
                     return [window.__tollgateMark === arguments[0], pending, document.readyState];",
                    vec![json!(mark)],
                )
                .await;
            // A script can fail while one document replaces another: look again.
            if let Ok(Value::Array(state)) = state {
                let same = state.first() == Some(&Value::Bool(true));
                let pending = state.get(1) == Some(&Value::Bool(true));
                let complete = state.get(2) == Some(&json!("complete"));
                if (same && !pending) || (!same && complete) {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "the navigation after {what} did not finish within {COMMAND_TIMEOUT_MS} ms \
                     (still at {}; a download or a 204 leaves the page in place: fetch() \
                     those instead)",
                    self.current_url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Browser {
    /// A test that failed (or skipped `close()`) must not leave Chromium running: kills
    /// ChromeDriver and Chromium by id, and removes the profile.
    fn drop(&mut self) {
        self.driver.tear_down();
    }
}

/// axe-core's `axe.min.js`, as setup.sh installed it (pinned) under the clients dir.
async fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    if let Some(source) = SOURCE.get() {
        return source;
    }
    let source = tokio::task::spawn_blocking(|| {
        let path = clients_dir("axe-core").join("web/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read axe-core at {} ({e}); tests/clients/setup.sh installs it with npm",
                path.display()
            )
        })
    })
    .await
    .expect("join");
    SOURCE.get_or_init(|| source)
}

/// `CARGO_TARGET_DIR` if set (absolute), else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| repo_root().join("target"))
}
