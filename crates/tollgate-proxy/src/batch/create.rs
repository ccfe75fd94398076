//! `POST /v1/batches`: the batch's upper-bound cost reserved from its input file before the
//! upstream sees the creation, and the batch recorded before the client sees the answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response};
use serde::Deserialize;

use tollgate_core::batch::BatchRecord;
use tollgate_core::{ApiError, CallOutcome, Money};
use tollgate_telemetry::RequestSpan;

use crate::admission::{Admitted, Refused};
use crate::attribution::Started;
use crate::auth::Authed;
use crate::batch::Creating;
use crate::batch::lines::{Lines, LinesError};
use crate::body::read_limited;
use crate::forward::{self, UpstreamStream};
use crate::inspect::{Inspected, Peek};
use crate::meter::observe::Observed;
use crate::meter::{Reading, Settle};
use crate::response::ProxyBody;
use crate::route::Endpoint;
use crate::settle::{Asked, Pending};
use crate::upstream::UpstreamBody;
use crate::{Gateway, SettleIfDropped};

/// Largest batch object read back from the upstream (a few KB in practice).
const MAX_BATCH_OBJECT: u64 = 1024 * 1024;

/// The fields of a creation tollgate acts on.
#[derive(Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
}

/// One request line of a batch's input file.
#[derive(Deserialize)]
struct InputLine {
    custom_id: Option<String>,
    url: Option<String>,
    body: Option<Peek>,
}

/// What a batch's input file comes to.
struct Scanned {
    lines: u64,
    bound: Money,
}

impl Gateway {
    /// Creates a batch. `what` is the inspected creation call, `admitted` its own (free)
    /// admission: rate limits and the budget check that refuses before anything is fetched.
    pub(crate) async fn create_batch(
        &self,
        who: Authed,
        what: Inspected,
        admitted: Admitted,
        started: &Started,
        span: RequestSpan,
    ) -> Result<Response<ProxyBody>, ApiError> {
        let telemetry = self.settler.telemetry.as_ref();
        let create = match parse_create(&what) {
            Ok(create) => create,
            Err(refused) => return Err(refused.record(telemetry, started, &who, None, span)),
        };
        let scanned = match self.scan_input(&who, &create, started.at_ms).await {
            Ok(scanned) => scanned,
            Err(refused) => return Err(refused.record(telemetry, started, &who, None, span)),
        };
        let key = &who.key;
        let session = who.attribution.session_id.as_deref();
        let reservation = match self
            .admission
            .reserve_batch(key, session, scanned.bound, admitted.rate.as_ref())
            .await
        {
            Ok(reservation) => reservation,
            Err(refused) => return Err(refused.record(telemetry, started, &who, None, span)),
        };
        tracing::info!(request_id = %started.request_id, lines = scanned.lines, reserved = %scanned.bound, "batch admitted");
        let batches = &self.batches;
        let record = BatchRecord {
            request_id: started.request_id.clone(),
            batch_id: None,
            team_id: key.team.id.clone(),
            key_id: key.id.clone(),
            cost_centre: key.team.cost_centre.clone(),
            user: who.attribution.user.clone(),
            session_id: who.attribution.session_id.clone(),
            input_file_id: create.input_file_id,
            endpoint: create.endpoint,
            reserved: scanned.bound,
            created_at_ms: started.at_ms,
        };
        // Recorded before the upstream sees it: a process that dies before the answer is
        // stored leaves this intent for the next start to reconcile.
        let _creating = Creating::new(batches, &started.request_id);
        if let Err(error) = batches.book.record(record).await {
            tracing::error!(%error, "cannot record a batch; refusing to create it unmetered");
            return Err(ApiError::new(
                503,
                "server_error",
                "batch_not_recorded",
                "tollgate cannot record the batch right now, so it did not create it (it could not be metered). Retry shortly.",
            ));
        }
        // Until its row is written, a client that leaves still leaves one (at cost 0).
        let mut pending = SettleIfDropped(Some(Pending {
            started: started.clone(),
            who,
            model_requested: None,
            request_body: None,
            settler: Arc::clone(&self.settler),
            admitted,
            span,
            asked: Asked::default(),
        }));
        let Inspected { parts, body, .. } = what;
        let forwarded = forward::forward(&self.upstream, parts, body).await;
        let request_id = started.request_id.clone();
        let answer = match forwarded {
            Ok(answer) => answer,
            Err(unanswered) => {
                let (status, outcome) = (unanswered.error.status, unanswered.outcome);
                take(&mut pending)?.settle_unanswered(status, outcome, unanswered.reached_upstream);
                // A creation that never reached the upstream made no batch; one that did may
                // have, so its intent stays for the follower to reconcile.
                if !unanswered.reached_upstream {
                    abandon(batches, &request_id).await;
                }
                return Err(unanswered.error);
            }
        };
        let (parts, body) = answer.into_parts();
        let status = parts.status.as_u16();
        let body = match read_answer(body).await {
            Ok(body) => body,
            Err(error) => {
                take(&mut pending)?.settle(reading(status, None, CallOutcome::UpstreamCut));
                return Err(error);
            }
        };
        let batch_id = if (200..300).contains(&status) {
            batch_id(&body)
        } else {
            abandon(batches, &request_id).await;
            None
        };
        if let Some(batch_id) = &batch_id {
            match batches
                .book
                .created(request_id.clone(), batch_id.clone())
                .await
            {
                Ok(true) => {}
                Ok(false) => tracing::warn!(%request_id, %batch_id, "batch already recorded"),
                // The intent stays: the next start reconciles it from the upstream's list.
                Err(error) => {
                    tracing::error!(%request_id, %batch_id, %error, "cannot record a created batch")
                }
            }
            // This process holds the batch's reservation from now on (the follower renews it).
            let held = batches.book.hold(batch_id.clone()).await.unwrap_or(true);
            batches.hold(batch_id, reservation.filter(|_| held));
        } else if (200..300).contains(&status) {
            tracing::error!(%request_id, "the upstream created a batch without an id; its intent is left for reconciliation");
        }
        let mut parts = parts;
        let mut pending = take(&mut pending)?;
        let rate_headers = pending.admitted.rate.as_mut().map(|r| r.headers.drain(..));
        for (name, value) in rate_headers.into_iter().flatten() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers.insert(name, value);
            }
        }
        pending.settle(reading(status, batch_id, CallOutcome::Complete));
        Ok(Response::from_parts(parts, ProxyBody::full(body)))
    }

    /// Streams the batch's input file from the upstream and checks and bounds every line.
    async fn scan_input(
        &self,
        who: &Authed,
        create: &CreateBatch,
        now_ms: i64,
    ) -> Result<Scanned, Refused> {
        let file = &create.input_file_id;
        let path = format!("/v1/files/{file}/content");
        let uri = self.upstream.uri_for(&path).map_err(input_refused)?;
        let mut request = Request::new(UpstreamBody::empty());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        let response = self
            .upstream
            .send(request, 0)
            .await
            .map_err(|unanswered| input_refused(unanswered.error))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let (code, status) = if status == 404 {
                ("input_file_not_found", 400)
            } else {
                ("input_file_unreadable", 502)
            };
            let kind = if status == 400 {
                "invalid_request_error"
            } else {
                "upstream_error"
            };
            let message = format!(
                "tollgate could not read the batch's input file '{file}' (the upstream answered {}), so it cannot price the batch.",
                response.status()
            );
            return Err(Refused::new(
                ApiError::new(status, kind, code, message).with_param("input_file_id"),
                "batch_input",
            ));
        }
        let body = crate::body::DeadlineBody::upstream(
            response.into_body(),
            self.upstream.stream_idle_timeout(),
        );
        let max = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
        let mut lines = Lines::new(body, max);
        let prices = &self.settler.prices;
        let mut scanned = Scanned {
            lines: 0,
            bound: Money::ZERO,
        };
        loop {
            let (number, line) = match lines.next().await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(LinesError::TooLong { line, max }) => {
                    let message = format!(
                        "Line {line} of the batch's input file '{file}' is longer than {max} bytes, the largest request tollgate accepts."
                    );
                    return Err(line_refused("batch_line_too_large", message));
                }
                Err(LinesError::Body(error)) => {
                    let error = ApiError::upstream_unavailable(format!(
                        "reading the batch's input file '{file}' broke off ({error})"
                    ));
                    return Err(input_refused(error));
                }
            };
            let bound = self.check_line(who, create, number, &line, prices, now_ms)?;
            scanned.lines += 1;
            scanned.bound = scanned.bound.saturating_add(bound);
        }
        if scanned.lines == 0 {
            let message = format!("The batch's input file '{file}' has no request lines.");
            return Err(line_refused("batch_input_empty", message));
        }
        Ok(scanned)
    }

    /// One line: well formed, for the batch's endpoint, its model allowed and priced. Any
    /// problem is a 400 naming the line and its `custom_id`.
    fn check_line(
        &self,
        who: &Authed,
        create: &CreateBatch,
        number: u64,
        line: &Bytes,
        prices: &tollgate_core::PriceTable,
        now_ms: i64,
    ) -> Result<Money, Refused> {
        let file = &create.input_file_id;
        let parsed: InputLine = serde_json::from_slice(line).map_err(|e| {
            let message = format!(
                "Line {number} of the batch's input file '{file}' is not a JSON request line ({e})."
            );
            line_refused("invalid_batch_line", message)
        })?;
        let custom_id = parsed.custom_id.as_deref().unwrap_or("");
        let at =
            format!("Line {number} (custom_id '{custom_id}') of the batch's input file '{file}'");
        let url = parsed.url.as_deref().unwrap_or("");
        let endpoint = Endpoint::classify(&Method::POST, url)
            .ok()
            .filter(|e| e.is_priced() && url == create.endpoint);
        let (Some(endpoint), Some(body)) = (endpoint, parsed.body) else {
            let message = format!(
                "{at} must be a request to the batch's endpoint '{}' with a JSON body; tollgate meters batches of /v1/responses, /v1/chat/completions, /v1/completions and /v1/embeddings.",
                create.endpoint
            );
            return Err(line_refused("invalid_batch_line", message));
        };
        self.admission
            .batch_line(&who.key, endpoint, &body, line, prices, now_ms)
            .map_err(|mut refused| {
                refused.error.message = format!("{at}: {}", refused.error.message);
                refused
            })
    }
}

fn take(pending: &mut SettleIfDropped) -> Result<Pending, ApiError> {
    pending
        .0
        .take()
        .ok_or_else(|| ApiError::internal("a call was settled twice"))
}

fn parse_create(what: &Inspected) -> Result<CreateBatch, Refused> {
    let body = what.read_body().map_or(&b""[..], |b| &b[..]);
    let invalid = |message: String| {
        let error = ApiError::new(400, "invalid_request_error", "invalid_batch", message);
        Refused::new(error, "batch_input")
    };
    let create: CreateBatch = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "A batch needs an input_file_id and an endpoint ({e})."
        ))
    })?;
    // The id goes into the path of the file tollgate fetches: nothing that could leave it.
    let id = &create.input_file_id;
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(format!("'{id}' is not a file id.")));
    }
    Ok(create)
}

fn line_refused(code: &'static str, message: String) -> Refused {
    let error = ApiError::new(400, "invalid_request_error", code, message);
    Refused::new(error.with_param("input_file_id"), "batch_line")
}

fn input_refused(error: ApiError) -> Refused {
    Refused::new(error, "batch_input")
}

async fn abandon(batches: &super::Batches, request_id: &str) {
    if let Err(error) = batches.book.abandon(request_id.to_string()).await {
        tracing::warn!(%request_id, %error, "cannot mark a batch intent abandoned");
    }
}

async fn read_answer(body: UpstreamStream) -> Result<Bytes, ApiError> {
    read_limited(body, MAX_BATCH_OBJECT).await.map_err(|e| {
        ApiError::upstream_unavailable(format!("the batch's answer broke off ({})", e.message))
    })
}

/// The `id` of a batch object.
fn batch_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Batch {
        id: String,
    }
    serde_json::from_slice::<Batch>(body).ok().map(|b| b.id)
}

fn reading(status: u16, batch_id: Option<String>, outcome: CallOutcome) -> Reading {
    Reading {
        status,
        seen: Observed {
            response_id: batch_id,
            ..Observed::default()
        },
        ttfb: None,
        outcome,
    }
}
