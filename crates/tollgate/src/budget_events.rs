//! Budget events (a soft threshold crossed, a limit reached): logged, counted, and POSTed as
//! JSON to `[budgets] webhook_url` when one is set. Each fires once per budget window across all
//! replicas (the budget sync claims it in the database first).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio_util::task::TaskTracker;

use tollgate_core::budget::{BudgetEvent, Calendar};
use tollgate_store::Store;

/// Counts of events emitted by this process, by kind (for `/metrics`).
#[derive(Default)]
pub struct EventCounts {
    pub soft: AtomicU64,
    pub hard: AtomicU64,
}

/// The webhook's JSON body.
#[derive(Serialize)]
struct Payload<'a> {
    event: String,
    budget_id: &'a str,
    team_id: &'a str,
    team: Option<String>,
    key_id: Option<&'a str>,
    period: &'a str,
    limit_usd: String,
    spent_usd: String,
    soft_threshold_usd: String,
    window_start_ms: i64,
    resets_at: Option<i64>,
    message: String,
}

type WebhookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the handler the budget sync calls.
pub fn handler(
    store: Store,
    calendar: Calendar,
    webhook_url: Option<String>,
    tasks: TaskTracker,
    counts: Arc<EventCounts>,
    telemetry: tollgate_telemetry::Telemetry,
) -> Arc<dyn Fn(BudgetEvent) + Send + Sync> {
    let client = webhook_url.as_ref().and_then(|_| match client() {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "cannot set up the budget webhook client; events will only be logged");
            None
        }
    });
    Arc::new(move |event: BudgetEvent| {
        let counter = if event.kind == "soft" {
            &counts.soft
        } else {
            &counts.hard
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let b = &event.budget;
        let what = if event.kind == "soft" {
            format!(
                "passed its soft threshold ({} of ${})",
                ppm_percent(b.soft_ppm),
                b.limit.to_usd_string()
            )
        } else {
            format!("reached its limit of ${}", b.limit.to_usd_string())
        };
        let resets = event
            .window
            .resets_at_ms
            .map_or("never resets".to_string(), |at| {
                format!("resets at {}", calendar.describe(at))
            });
        let message = format!(
            "budget {} ({} {} budget) {what}: ${} spent; it {resets}",
            b.id,
            b.scope(),
            b.period.as_str(),
            event.spent.to_usd_string()
        );
        tracing::warn!(budget = %b.id, team = %b.team_id, kind = event.kind, "{message}");
        // The metric's labels and the webhook want the team's name, the event has its id: one
        // lookup, off the sync loop.
        let (store, telemetry) = (store.clone(), telemetry.clone());
        let webhook = webhook_url.clone().zip(client.clone());
        tasks.spawn(async move {
            let team = store.team(&event.budget.team_id).await.ok().flatten();
            if let Some(team) = &team {
                let cost_centre = team.cost_centre.as_deref().unwrap_or("");
                telemetry.budget_event(&team.name, cost_centre, event.kind);
            }
            let Some((url, client)) = webhook else {
                return;
            };
            let team = team.map(|t| t.name);
            let b = &event.budget;
            let payload = Payload {
                event: format!("budget.{}", event.kind),
                budget_id: &b.id,
                team_id: &b.team_id,
                team,
                key_id: b.key_id.as_deref(),
                period: b.period.as_str(),
                limit_usd: b.limit.to_usd_string(),
                spent_usd: event.spent.to_usd_string(),
                soft_threshold_usd: b.soft_limit().to_usd_string(),
                window_start_ms: event.window.start_ms,
                resets_at: event.window.resets_at_ms.map(|ms| ms / 1000),
                message,
            };
            post(&client, &url, &payload).await;
        });
    })
}

fn ppm_percent(ppm: u32) -> String {
    // parts per million → percent: the same digits with the decimal point four places left
    format!("{}%", crate::control::budgets::ppm_decimal(ppm * 100))
}

fn client() -> Result<WebhookClient, String> {
    let tls = tollgate_proxy::upstream::tls_client_config(None).map_err(|e| e.to_string())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Delivers one event, retrying a few times; a webhook that stays down is logged, not fatal.
async fn post(client: &WebhookClient, url: &str, payload: &Payload<'_>) {
    let Ok(body) = serde_json::to_vec(payload) else {
        return;
    };
    let body = Bytes::from(body);
    for attempt in 1..=3u32 {
        let request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "tollgate-budget-webhook")
            .body(Full::new(body.clone()));
        let Ok(request) = request else {
            tracing::error!(url, "budget webhook URL is not a valid URI");
            return;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => return,
            Ok(Ok(response)) => {
                tracing::warn!(url, status = %response.status(), attempt, "budget webhook refused the event");
            }
            Ok(Err(error)) => tracing::warn!(url, %error, attempt, "budget webhook unreachable"),
            Err(_) => tracing::warn!(url, attempt, "budget webhook timed out"),
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
    tracing::error!(url, event = %payload.event, budget = payload.budget_id, "budget webhook gave up on an event");
}
