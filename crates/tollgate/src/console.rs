//! The web console at `/console`: the third shell over the control plane, beside the admin API
//! and the CLI. Every page reads and every form writes through [`Control::run`] as the person
//! signed in, so roles, refusals and the audit log are the admin API's own: a team admin is
//! fenced into its team here exactly as over HTTP, and a key issued here is audited under the
//! token (or OpenID identity) that signed in.
//!
//! Pages are HTML rendered on the server (maud), charts SVG rendered on the server, and the
//! stylesheet and the few lines of script are embedded in the binary: the console works
//! offline, behind any proxy, with no build step. Sessions are server-side ([`signin`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use maud::Markup;
use serde_json::Value;

use tollgate_core::ApiError;
use tollgate_core::config::Config;
use tollgate_proxy::ProxyBody;
use tollgate_proxy::body::read_limited;
use tollgate_store::{Role, Store};

use crate::control::reply::{ReportBody, store_error};
use crate::control::{Actor, Control, Live, Reply};
use html::{Frame, Section, Who};
use signin::{COOKIE as SESSION_COOKIE, Credential, Current, PENDING_COOKIE, SignIns};

mod assets;
mod chart;
mod form;
mod html;
pub mod oidc;
mod pages;
mod signin;

/// The largest form the console accepts (no form needs more).
const MAX_FORM_BYTES: u64 = 64 * 1024;

pub fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

pub struct Console {
    control: Control,
    store: Store,
    signins: SignIns,
    oidc: Option<Arc<oidc::Oidc>>,
    oidc_label: String,
    /// Cookies are marked `Secure` (tollgate terminates TLS, or the public URL is https).
    secure: bool,
    /// `[console] public_url`: the address shown in set-up snippets (else the request's Host).
    public_url: Option<String>,
    loop_rule: pages::session::LoopRule,
}

/// What a page handler produced.
pub enum Outcome {
    Page {
        status: StatusCode,
        title: String,
        section: Section,
        body: Markup,
    },
    /// 303 to `location`, with a message for the next page.
    Redirect {
        location: String,
        flash: Option<String>,
    },
    /// A finished response (a download).
    Raw(Response<ProxyBody>),
}

impl Outcome {
    pub fn page(title: impl Into<String>, section: Section, body: Markup) -> Outcome {
        Outcome::Page {
            status: StatusCode::OK,
            title: title.into(),
            section,
            body,
        }
    }

    pub fn redirect(location: impl Into<String>, flash: impl Into<String>) -> Outcome {
        Outcome::Redirect {
            location: location.into(),
            flash: Some(flash.into()),
        }
    }

    /// The page for an error the control plane (or the console) answered.
    pub fn problem(error: &ApiError) -> Outcome {
        let title = match error.status {
            403 => "Not allowed",
            404 => "Not found",
            400 | 409 | 413 | 422 => "Not done",
            _ => "Something went wrong",
        };
        Outcome::Page {
            status: StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
            title: title.to_string(),
            section: Section::None,
            body: html::problem(error.status, &error.message),
        }
    }
}

/// The signed-in person on one request.
pub struct Ctx {
    /// The console session this request belongs to.
    pub session: signin::SessionId,
    pub actor: Actor,
    pub who: Who,
    pub csrf: String,
    /// Where set-up snippets point clients: `http://host:port`.
    pub base_url: String,
}

impl Console {
    pub fn new(config: &Config, store: Store, live: Live) -> Console {
        let console = &config.console;
        let oidc = console.oidc.as_ref().map(|o| {
            Arc::new(oidc::Oidc::new(
                o,
                config.secrets.oidc_client_secret.clone(),
                console.public_base().unwrap_or_default(),
            ))
        });
        let secure = config.tls.cert_file.is_some()
            || console
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        Console {
            control: Control::new(store.clone(), Some(live)),
            store,
            signins: SignIns::new(
                Duration::from_secs(console.idle_timeout_minutes.saturating_mul(60)),
                Duration::from_secs(console.absolute_timeout_hours.saturating_mul(3600)),
            ),
            oidc_label: console
                .oidc
                .as_ref()
                .map(|o| o.label.clone())
                .unwrap_or_default(),
            oidc,
            secure,
            public_url: console.public_base().map(str::to_string),
            loop_rule: pages::session::LoopRule {
                calls: config.telemetry.loop_exec_calls,
                window_ms: i64::try_from(config.telemetry.loop_window_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                tools: config.telemetry.loop_tools.clone(),
                breakers: config.telemetry.loop_breaker_tools.clone(),
            },
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path().to_string();
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.as_str().to_string());
        if let Some(name) = path.strip_prefix("/console/assets/") {
            return assets::serve(name);
        }
        let method = request.method().clone();
        let query = request.uri().query().map(str::to_string);
        let cookies = form::cookies(request.headers().get_all(COOKIE));
        let base_url = self.base_url(&request);
        let Some(segments) = form::segments(&path) else {
            return self.render_bare(Outcome::problem(&not_found()));
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let body = if method == Method::POST {
            match read_limited(request.into_body(), MAX_FORM_BYTES).await {
                Ok(body) => body,
                Err(mut error) => {
                    if error.status == 413 {
                        error.message = format!(
                            "This form is larger than the console accepts ({} KiB); nothing \
                             was changed.",
                            MAX_FORM_BYTES / 1024
                        );
                    }
                    return self.render_bare(Outcome::problem(&error));
                }
            }
        } else {
            Bytes::new()
        };
        let form = form::Form::parse(&body);

        match (&method, segments.as_slice()) {
            (&Method::GET, ["sign-in"]) => return self.sign_in_page(None, query.as_deref()),
            (&Method::POST, ["sign-in"]) => return self.sign_in(&form, &cookies).await,
            (&Method::GET, ["oidc", "start"]) => return self.oidc_start().await,
            (&Method::GET, ["oidc", "callback"]) => {
                return self.oidc_callback(query.as_deref(), &cookies).await;
            }
            _ => {}
        }

        let current = cookies
            .get(SESSION_COOKIE)
            .and_then(|c| self.signins.current(c));
        let Some(current) = current else {
            if method == Method::GET {
                return redirect(&format!(
                    "/console/sign-in?next={}",
                    form::encode(&path_and_query)
                ));
            }
            return self.render_bare(Outcome::problem(&ApiError::new(
                401,
                "invalid_request_error",
                "signed_out",
                "Your console session ended (signed out, or idle for too long). Sign in again; \
                 nothing was changed.",
            )));
        };
        let actor = match self.actor_of(&current).await {
            Ok(Some(actor)) => actor,
            Ok(None) => {
                self.signins.end(&current.id);
                return redirect("/console/sign-in?ended=1");
            }
            // The session stays: it works again once the database answers.
            Err(error) => return self.render_bare(Outcome::problem(&error)),
        };
        if method == Method::POST {
            let sent = form.get("csrf").unwrap_or("");
            if !signin::same_secret(sent, &current.csrf) {
                return self.render_bare(Outcome::problem(&ApiError::new(
                    403,
                    "invalid_request_error",
                    "csrf_token_invalid",
                    "This form was not sent from this console session (its security token \
                     is missing or stale). Reload the page and try again; nothing was changed.",
                )));
            }
            if segments.as_slice() == ["sign-out"] {
                self.signins.end(&current.id);
                let mut response = redirect("/console/sign-in?signed_out=1");
                self.set_cookie(&mut response, SESSION_COOKIE, "", 0, "Strict");
                return response;
            }
        }
        let who = self.who(&actor).await;
        let ctx = Ctx {
            session: current.id,
            actor,
            who,
            csrf: current.csrf.clone(),
            base_url,
        };
        let outcome =
            pages::dispatch(self, &ctx, &method, &segments, query.as_deref(), &form).await;
        self.render(Some((&ctx, &current)), outcome)
    }

    /// The response for a handler's outcome, inside a session (`Some`) or outside one
    /// (sign-in, errors before sign-in).
    fn render(&self, signed_in: Option<(&Ctx, &Current)>, outcome: Outcome) -> Response<ProxyBody> {
        match outcome {
            Outcome::Page {
                status,
                title,
                section,
                body,
            } => {
                let frame = Frame {
                    title: &title,
                    who: signed_in.map(|(ctx, _)| &ctx.who),
                    csrf: signed_in.map_or("", |(ctx, _)| ctx.csrf.as_str()),
                    flash: signed_in.and_then(|(_, current)| current.flash.as_deref()),
                    section,
                };
                html_response(status, html::layout(&frame, body))
            }
            Outcome::Redirect { location, flash } => {
                if let (Some(flash), Some((_, current))) = (flash, signed_in) {
                    self.signins.set_flash(&current.id, flash);
                }
                redirect(&location)
            }
            Outcome::Raw(response) => response,
        }
    }

    fn render_bare(&self, outcome: Outcome) -> Response<ProxyBody> {
        self.render(None, outcome)
    }

    /// Who a session acts as now: an admin token is resolved again, so a revoked one ends the
    /// session at once.
    async fn actor_of(&self, current: &Current) -> Result<Option<Actor>, ApiError> {
        match &current.credential {
            Credential::Oidc(actor) => Ok(Some(actor.clone())),
            Credential::AdminToken(token) => {
                self.store.admin_for_token(token).await.map_err(|error| {
                    tracing::warn!(%error, "console: cannot check an admin token");
                    store_error(error)
                })
            }
        }
    }

    async fn who(&self, actor: &Actor) -> Who {
        let team = match &actor.team_id {
            Some(id) => {
                let name = match self.store.team(id).await {
                    Ok(Some(team)) => team.name,
                    _ => id.clone(),
                };
                Some((id.clone(), name))
            }
            None => None,
        };
        Who {
            name: actor.name.clone(),
            role: actor.role,
            team,
        }
    }

    /// The public URL, else `http(s)://<Host>` of this request (shown, never trusted).
    fn base_url(&self, request: &Request<Incoming>) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = request
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or("127.0.0.1:8080");
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{host}")
    }

    /// Carries out an admin API operation as the signed-in person: its JSON answer.
    pub async fn call(
        &self,
        ctx: &Ctx,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        match self.reply(ctx, method, path, query, body).await? {
            Reply::Json(_, value) => Ok(value),
            Reply::Report {
                body: ReportBody::Json(value),
                ..
            } => Ok(value),
            Reply::Report {
                body: ReportBody::Csv { text, .. },
                ..
            } => Ok(Value::String(text)),
            Reply::Document(text) => Ok(Value::String(text.to_string())),
        }
    }

    /// A hidden field with a new one-time token, for a form that shows a secret.
    pub fn once_field(&self, ctx: &Ctx) -> Markup {
        let token = self.signins.new_once(&ctx.session);
        maud::html! { input type="hidden" name="once" value=(token); }
    }

    /// Uses up the form's one-time token: false when the form was sent before.
    pub fn first_send(&self, ctx: &Ctx, form: &form::Form) -> bool {
        self.signins
            .use_once(&ctx.session, form.get("once").unwrap_or(""))
    }

    /// A read: `GET path?query` as the signed-in person.
    pub async fn get(&self, ctx: &Ctx, path: &str, query: Option<&str>) -> Result<Value, ApiError> {
        self.call(ctx, Method::GET, path, query, None).await
    }

    /// The control plane's reply itself (downloads are answered with it, byte for byte).
    pub async fn reply(
        &self,
        ctx: &Ctx,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply, ApiError> {
        let routed = Control::route(&method, path)?;
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.control.run(&ctx.actor, routed, query, &body).await
    }

    pub fn loop_rule(&self) -> &pages::session::LoopRule {
        &self.loop_rule
    }

    fn set_cookie(
        &self,
        response: &mut Response<ProxyBody>,
        name: &str,
        value: &str,
        max_age_secs: u64,
        same_site: &str,
    ) {
        let path = if name == PENDING_COOKIE {
            "/console/"
        } else {
            "/console"
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite={same_site}{secure}"
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }

    fn sign_in_page(&self, error: Option<&str>, query: Option<&str>) -> Response<ProxyBody> {
        let params = form::Form::parse(query.unwrap_or("").as_bytes());
        let note = if params.get("signed_out").is_some() {
            Some("You are signed out.")
        } else if params.get("ended").is_some() {
            Some("Your session ended: the admin token was revoked or the database is unreachable.")
        } else {
            None
        };
        let next = params
            .get("next")
            .filter(|n| safe_next(n))
            .unwrap_or("/console");
        // Sign-in forms are protected by a double-submit value: the cookie and the form must
        // carry the same random value, which another site can neither read nor set.
        let pending = signin::random_token();
        let body = pages::sign_in::page(
            &pending,
            next,
            error.or(note),
            self.oidc.is_some().then_some(self.oidc_label.as_str()),
        );
        let status = if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let mut response = self.render_bare(Outcome::Page {
            status,
            title: "Sign in".to_string(),
            section: Section::None,
            body,
        });
        self.set_cookie(&mut response, PENDING_COOKIE, &pending, 3600, "Strict");
        response
    }

    async fn sign_in(
        &self,
        form: &form::Form,
        cookies: &std::collections::HashMap<String, String>,
    ) -> Response<ProxyBody> {
        let sent = form.get("csrf").unwrap_or("");
        let expected = cookies
            .get(PENDING_COOKIE)
            .map(String::as_str)
            .unwrap_or("");
        if expected.is_empty() || !signin::same_secret(sent, expected) {
            return self.sign_in_page(
                Some("The sign-in form expired or did not come from this console. Try again."),
                None,
            );
        }
        let token = form.get("token").unwrap_or("").trim();
        let actor = match self.store.admin_for_token(token).await {
            Ok(Some(actor)) => actor,
            Ok(None) => {
                return self.sign_in_page(
                    Some(
                        "That admin token is not valid (admin tokens start with tga-; a team \
                         key, tg-…, does not open the console).",
                    ),
                    None,
                );
            }
            Err(error) => {
                let error = store_error(error);
                return self.render_bare(Outcome::problem(&error));
            }
        };
        tracing::info!(token_id = %actor.token_id, role = actor.role.as_str(), "console sign-in");
        self.start_session(Credential::AdminToken(token.to_string()), form.get("next"))
    }

    fn start_session(&self, credential: Credential, next: Option<&str>) -> Response<ProxyBody> {
        let Some(cookie) = self.signins.create(credential) else {
            return self.render_bare(Outcome::problem(&ApiError::new(
                503,
                "server_error",
                "too_many_sessions",
                "Too many console sessions are open on this gateway. Try again later.",
            )));
        };
        let next = next.filter(|n| safe_next(n)).unwrap_or("/console");
        // A page, not a redirect: after an OpenID provider's (cross-site) redirect, a
        // SameSite=Strict cookie is only sent on a navigation that starts on this site.
        let body = pages::sign_in::continue_to(next);
        let mut response = self.render_bare(Outcome::page("Signed in", Section::None, body));
        let max_age = self.signins.absolute().as_secs();
        self.set_cookie(&mut response, SESSION_COOKIE, &cookie, max_age, "Strict");
        self.set_cookie(&mut response, PENDING_COOKIE, "", 0, "Lax");
        response
    }

    async fn oidc_start(&self) -> Response<ProxyBody> {
        let Some(oidc) = &self.oidc else {
            return self.render_bare(Outcome::problem(&not_found()));
        };
        match oidc.start().await {
            Ok((url, pending)) => {
                let Some(cookie) = self.signins.hold_pending(pending) else {
                    return self.sign_in_page(
                        Some("Too many sign-ins are in progress. Try again in a few minutes."),
                        None,
                    );
                };
                let mut response = redirect(&url);
                self.set_cookie(
                    &mut response,
                    PENDING_COOKIE,
                    &cookie,
                    signin::PENDING_TTL.as_secs(),
                    "Lax",
                );
                response
            }
            Err(error) => self.sign_in_page(Some(&error.to_string()), None),
        }
    }

    async fn oidc_callback(
        &self,
        query: Option<&str>,
        cookies: &std::collections::HashMap<String, String>,
    ) -> Response<ProxyBody> {
        let Some(oidc) = &self.oidc else {
            return self.render_bare(Outcome::problem(&not_found()));
        };
        let pending = cookies
            .get(PENDING_COOKIE)
            .and_then(|c| self.signins.take_pending(c));
        let Some(pending) = pending else {
            return self.sign_in_page(
                Some("That sign-in expired or was already used. Start again."),
                None,
            );
        };
        let person = match oidc.finish(&pending, query.unwrap_or("")).await {
            Ok(person) => person,
            Err(error) => return self.sign_in_page(Some(&error.to_string()), None),
        };
        let team_id = match &person.team {
            None => None,
            Some(name) => match self.store.team(name).await {
                Ok(Some(team)) => Some(team.id),
                Ok(None) => {
                    return self.sign_in_page(
                        Some(&format!(
                            "Your group maps to team '{name}', which does not exist in tollgate. \
                             Ask an admin to create it or fix [console.oidc] roles."
                        )),
                        None,
                    );
                }
                Err(error) => return self.render_bare(Outcome::problem(&store_error(error))),
            },
        };
        let actor = Actor {
            token_id: format!("oidc:{}", person.subject),
            name: person.display.clone(),
            role: person.role,
            team_id,
        };
        tracing::info!(subject = %person.subject, role = actor.role.as_str(), "console sign-in (OpenID Connect)");
        self.start_session(Credential::Oidc(actor), None)
    }
}

/// `next` stays on the console: a path under /console, never another site.
fn safe_next(next: &str) -> bool {
    let path = next.split(['?', '#']).next().unwrap_or("");
    is_console_path(path)
        && !next.contains("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && form::segments(path).is_some()
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        "not_found",
        "There is no console page here.",
    )
}

pub fn html_response(status: StatusCode, page: Markup) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(page.into_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    response
}

/// Every console response: nothing cached, no framing, no inline script, no foreign origin.
pub fn security_headers(headers: &mut http::HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    security_headers(response.headers_mut());
    response
}

/// Which page `/console` opens for a role.
pub fn home(who: &Who) -> String {
    match (who.role, &who.team) {
        (Role::TeamAdmin, Some((id, _))) => html::team_href(id),
        _ => "/console/overview".to_string(),
    }
}
