//! The follower: a background task that polls every batch tollgate created until it ends,
//! then settles it once from its output file — in this process or, after a restart, the next.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use tollgate_core::Money;
use tollgate_core::batch::{BatchRecord, BatchSettlement};
use tollgate_core::budget::Budgets;

use super::Batches;
use super::lines::Lines;
use super::output::line_event;
use crate::body::{DeadlineBody, read_limited};
use crate::settle::Settler;
use crate::upstream::{Upstream, UpstreamBody};

/// An intent older than this with no batch id is reconciled: its creation is long over.
const INTENT_AGE_MS: i64 = 60_000;
/// Largest batch object or batch list read from the upstream.
const MAX_OBJECT: u64 = 8 * 1024 * 1024;

/// Polls and settles batches; spawned once per process.
pub struct Follower {
    pub upstream: Upstream,
    pub batches: Arc<Batches>,
    pub budgets: Arc<Budgets>,
    /// Prices and the ledger sink.
    pub settler: Arc<Settler>,
    pub poll_interval: Duration,
    /// Longest output line read (the gateway's body limit).
    pub max_line_bytes: usize,
}

/// A batch object, as far as settling goes.
#[derive(Debug, Deserialize)]
struct Batch {
    id: String,
    status: String,
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    created_at: Option<i64>,
    #[serde(default)]
    completed_at: Option<i64>,
    #[serde(default)]
    cancelled_at: Option<i64>,
    #[serde(default)]
    expired_at: Option<i64>,
    #[serde(default)]
    failed_at: Option<i64>,
}

#[derive(Deserialize)]
struct BatchList {
    data: Vec<Batch>,
}

/// Why one batch could not be settled on this tick (it is retried on the next).
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("store: {0}")]
    Book(String),
    #[error("{0}")]
    Output(String),
}

impl Follower {
    /// Polls every `poll_interval` until `cancel`: first the intents a creation left behind
    /// (a process that died, or an answer that never came), then every unsettled batch. The
    /// first poll runs at once, so a restarted gateway picks up where the last one stopped.
    pub async fn run(self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(self.poll_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = cancel.cancelled() => return,
            }
            let poll = async {
                // A failed reconciliation is logged and retried on the next poll.
                let _ = self.reconcile().await;
                self.follow_once().await
            };
            tokio::select! {
                _ = poll => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Gives each intent older than a minute (and not being created in this process) the batch
    /// the upstream made of its input file after it was written, or marks it abandoned when
    /// there is none. An abandoned intent whose creation answers after all comes back.
    pub async fn reconcile(&self) -> Result<(), ()> {
        let now = tollgate_core::time::now_ms();
        let intents = match self.batches.book.intents(now - INTENT_AGE_MS).await {
            Ok(intents) => intents,
            Err(error) => {
                tracing::warn!(%error, "cannot load batch intents; retrying on the next poll");
                return Err(());
            }
        };
        let creating: Vec<String> = self.batches.creating().iter().cloned().collect();
        let intents: Vec<BatchRecord> = intents
            .into_iter()
            .filter(|i| !creating.contains(&i.request_id))
            .collect();
        if intents.is_empty() {
            return Ok(());
        }
        let listed = match self.get_json::<BatchList>("/v1/batches?limit=100").await {
            Ok(list) => list.data,
            Err(error) => {
                tracing::warn!(%error, "cannot list batches to reconcile intents; retrying on the next poll");
                return Err(());
            }
        };
        for intent in intents {
            let after_s = intent.created_at_ms.div_euclid(1000);
            let mut candidates: Vec<&Batch> = listed
                .iter()
                .filter(|b| b.input_file_id.as_deref() == Some(intent.input_file_id.as_str()))
                .filter(|b| b.created_at.is_some_and(|at| at >= after_s))
                .collect();
            candidates.sort_by_key(|b| b.created_at);
            let mut found = None;
            for candidate in candidates {
                let book = &self.batches.book;
                match book
                    .created(intent.request_id.clone(), candidate.id.clone())
                    .await
                {
                    Ok(true) => {
                        found = Some(candidate.id.clone());
                        break;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot record a reconciled batch");
                        return Err(());
                    }
                }
            }
            match found {
                Some(batch_id) => {
                    tracing::info!(request_id = %intent.request_id, %batch_id, "batch intent reconciled")
                }
                None => {
                    tracing::warn!(request_id = %intent.request_id, input_file_id = %intent.input_file_id, "batch intent matches no upstream batch; abandoned");
                    if let Err(error) = self.batches.book.abandon(intent.request_id).await {
                        tracing::warn!(%error, "cannot mark a batch intent abandoned");
                    }
                }
            }
        }
        Ok(())
    }

    /// One poll of every unsettled batch; returns how many it settled.
    pub async fn follow_once(&self) -> usize {
        let unsettled = match self.batches.book.unsettled().await {
            Ok(unsettled) => unsettled,
            Err(error) => {
                tracing::warn!(%error, "cannot load unsettled batches; retrying on the next poll");
                return 0;
            }
        };
        let ids: HashSet<&str> = unsettled
            .iter()
            .filter_map(|b| b.batch_id.as_deref())
            .collect();
        self.batches.forget_all_but(&ids);
        let mut settled = 0;
        for batch in &unsettled {
            let Some(batch_id) = batch.batch_id.as_deref() else {
                continue;
            };
            self.hold_again(batch, batch_id).await;
            match self.follow(batch, batch_id).await {
                Ok(true) => settled += 1,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%batch_id, %error, "cannot settle a batch yet; retrying on the next poll");
                }
            }
        }
        settled
    }

    /// Holds the batch's reservation here while this process holds the batch: renewed on every
    /// poll; taken over (reserved again) from a process that stopped renewing it, such as the
    /// one that created it before a restart — best effort, since the batch runs upstream
    /// whatever the budget says now; and let go when another process holds it.
    async fn hold_again(&self, batch: &BatchRecord, batch_id: &str) {
        let held = self.batches.is_held(batch_id);
        let mine = match self.batches.book.hold(batch_id.to_string()).await {
            Ok(mine) => mine,
            Err(error) => {
                tracing::warn!(%batch_id, %error, "cannot renew a batch's hold; keeping things as they are");
                held
            }
        };
        if !mine {
            if held {
                self.batches.release(batch_id, Money::ZERO);
            }
            return;
        }
        if held {
            return;
        }
        let session = batch.session_id.as_deref();
        let reservation = match self
            .budgets
            .reserve(&batch.team_id, &batch.key_id, session, batch.reserved)
            .await
        {
            Ok(reservation) => reservation,
            Err(refusal) => {
                tracing::warn!(%batch_id, team = %batch.team_id, reason = refusal.reason(), "a running batch's reservation no longer fits its budget; it is followed and charged anyway");
                None
            }
        };
        self.batches.hold(batch_id, reservation);
    }

    /// Settles the batch if it has ended. `Ok(true)`: this process settled it.
    async fn follow(&self, batch: &BatchRecord, batch_id: &str) -> Result<bool, FollowError> {
        let state: Batch = self
            .get_json(&format!("/v1/batches/{batch_id}"))
            .await
            .map_err(FollowError::Upstream)?;
        let ended_at = match state.status.as_str() {
            "completed" => state.completed_at,
            "cancelled" => state.cancelled_at,
            "expired" => state.expired_at,
            "failed" => state.failed_at,
            _ => return Ok(false),
        };
        // Seconds to ms; a batch that names no end time settles at its creation's time (the
        // same on every replica, which is what keeps a second settlement a no-op).
        let ended_at_ms = ended_at.map_or(batch.created_at_ms, |s| s.saturating_mul(1000));
        let events = match (&state.status[..], &state.output_file_id) {
            // Validation failed: nothing ran, nothing is billed.
            ("failed", _) | (_, None) => Vec::new(),
            (_, Some(file)) => self.read_output(batch, batch_id, file, ended_at_ms).await?,
        };
        let lines = events.len() as u64;
        let cost: Money = events.iter().map(|e| e.cost).sum();
        for event in events {
            self.settler.sink.record(event);
        }
        let settlement = BatchSettlement {
            lines,
            cost,
            settled_at_ms: tollgate_core::time::now_ms(),
        };
        let mine = self
            .batches
            .book
            .settle(batch_id.to_string(), settlement)
            .await
            .map_err(FollowError::Book)?;
        // Another replica's settlement charged the rows there; this one only lets go.
        self.batches
            .release(batch_id, if mine { cost } else { Money::ZERO });
        if mine {
            tracing::info!(%batch_id, status = %state.status, lines, cost = %cost, reserved = %batch.reserved, "batch settled");
        }
        Ok(mine)
    }

    /// Every billed line of the output file, read to its end: a file that breaks off settles
    /// nothing (the next poll reads it again).
    async fn read_output(
        &self,
        batch: &BatchRecord,
        batch_id: &str,
        file: &str,
        ended_at_ms: i64,
    ) -> Result<Vec<tollgate_core::LedgerEvent>, FollowError> {
        let response = self
            .get(&format!("/v1/files/{file}/content"))
            .await
            .map_err(FollowError::Upstream)?;
        let body = DeadlineBody::upstream(response, self.upstream.stream_idle_timeout());
        let mut lines = Lines::new(body, self.max_line_bytes);
        let prices = &self.settler.prices;
        let mut events = Vec::new();
        while let Some((number, line)) = lines
            .next()
            .await
            .map_err(|e| FollowError::Output(format!("output file {file}: {e}")))?
        {
            let event = line_event(batch, batch_id, ended_at_ms, number, &line, prices)
                .map_err(|e| FollowError::Output(format!("output file {file}: {e}")))?;
            events.extend(event);
        }
        Ok(events)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let body = self.get(path).await?;
        let body = DeadlineBody::upstream(body, self.upstream.stream_idle_timeout());
        let bytes: Bytes = read_limited(body, MAX_OBJECT)
            .await
            .map_err(|e| format!("GET {path}: {}", e.message))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {path}: {e}"))
    }

    /// `GET path` upstream with tollgate's key; a 2xx response's body.
    async fn get(&self, path: &str) -> Result<crate::upstream::PooledBody, String> {
        let uri = self.upstream.uri_for(path).map_err(|e| e.message)?;
        let mut request = Request::new(UpstreamBody::empty());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        let response = self
            .upstream
            .send(request, 0)
            .await
            .map_err(|u| format!("GET {path}: {}", u.error.message))?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: {}", response.status()));
        }
        Ok(response.into_body())
    }
}
