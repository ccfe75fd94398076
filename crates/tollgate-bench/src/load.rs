//! The two load shapes.
//!
//! Open loop: requests start on a fixed timetable whatever the target does, and latency runs
//! from each request's *scheduled* start, so a stall shows up in the percentiles instead of
//! quietly slowing the generator down (no coordinated omission).
//! Closed loop: C workers send back to back, to find the request rate a target saturates at.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Done, Failure, HttpClient, Prepared, exchange};
use crate::error::BenchError;
use crate::stats::Recorder;

/// Sends `rate` requests per second for `duration`, then waits for every one to finish.
///
/// The timetable is kept by a plain OS thread sleeping to each slot (sub-millisecond precise,
/// where tokio's timer wheel would round every start up to the next millisecond and add that
/// lag to every latency); it hands each request to the runtime as its slot comes.
pub async fn open_loop(
    client: &HttpClient,
    prepared: &Arc<Prepared>,
    rate: u32,
    duration: Duration,
    timeout: Duration,
) -> Result<Recorder, BenchError> {
    let mut recorder = Recorder::new()?;
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    if total == 0 {
        return Ok(recorder);
    }
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let runtime = tokio::runtime::Handle::current();
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Done, Failure>>();
    let (client, prepared) = (client.clone(), Arc::clone(prepared));
    let scheduler = std::thread::Builder::new()
        .name("open-loop".into())
        .spawn(move || {
            let t0 = std::time::Instant::now() + Duration::from_millis(2);
            for i in 0..total {
                let slot = t0 + interval.mul_f64(i as f64);
                let now = std::time::Instant::now();
                if slot > now {
                    std::thread::sleep(slot - now);
                }
                let (client, prepared, tx) = (client.clone(), Arc::clone(&prepared), tx.clone());
                let scheduled = Instant::from_std(slot);
                runtime.spawn(async move {
                    let outcome = exchange(&client, &prepared, scheduled, timeout, || ()).await;
                    let _ = tx.send(outcome);
                });
            }
        })?;
    // The channel closes when the scheduler and every request it started are done.
    let mut received = 0u64;
    while let Some(outcome) = rx.recv().await {
        recorder.record(&outcome);
        received += 1;
    }
    let _ = scheduler.join();
    for _ in received..total {
        recorder.record(&Err(Failure::Transport("request task vanished".into())));
    }
    Ok(recorder)
}

/// `workers` concurrent loops for `duration`; counts exchanges that finished inside it.
/// Returns the recorder and completed requests per second.
pub async fn closed_loop(
    client: &HttpClient,
    prepared: &Arc<Prepared>,
    workers: usize,
    duration: Duration,
    timeout: Duration,
) -> Result<(Recorder, f64), BenchError> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let client = client.clone();
        let prepared = Arc::clone(prepared);
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            while Instant::now() < deadline {
                let began = Instant::now();
                let outcome = exchange(&client, &prepared, began, timeout, || ()).await;
                if Instant::now() <= deadline {
                    outcomes.push(outcome);
                }
            }
            outcomes
        });
    }
    let mut recorder = Recorder::new()?;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcomes) => outcomes.iter().for_each(|o| recorder.record(o)),
            Err(e) => recorder.record(&Err(Failure::Transport(format!("worker failed: {e}")))),
        }
    }
    let rps = recorder.ok as f64 / duration.as_secs_f64().max(1e-9);
    Ok((recorder, rps))
}
