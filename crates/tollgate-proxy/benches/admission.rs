//! What budget and rate-limit admission add per call on the hot path: `Admission::reserve` plus
//! settling the reservation and the rate charge, for the recorded ~38 KB Codex request, with no
//! limit configured, with a team rate limit, and with a team budget and rate limit.
//!
//! The lease store here grants every claim from memory: the bench measures the in-process path
//! (a claim happens once per lease slice, not per call); claims against a real database are
//! covered by the race tests. Run with `cargo bench -p tollgate-proxy --bench admission`.
#![allow(
    clippy::panic,
    reason = "a bench whose setup fails has nothing to measure"
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::budget::{
    BudgetDef, Budgets, BudgetsOptions, Calendar, ClaimReply, ClaimRequest, FailPolicy, LeaseStore,
    Period,
};
use tollgate_core::config::BudgetsConfig;
use tollgate_core::pricing::PriceTable;
use tollgate_core::ratelimit::{RateLimitDef, RateLimits};
use tollgate_core::{KeyRecord, Money, TeamInfo};
use tollgate_proxy::Admission;
use tollgate_proxy::admission::Call;
use tollgate_proxy::inspect;
use tollgate_proxy::inspect::media::MediaAsk;
use tollgate_proxy::route::Endpoint;

const CODEX_BODY: &[u8] = include_bytes!("../../../tests/fixtures/codex/turn-request-1.json");
const PRICES: &str = include_str!("../../../config/prices.toml");

/// Grants whatever is asked.
struct Generous;

impl LeaseStore for Generous {
    fn claim(
        &self,
        request: ClaimRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ClaimReply, String>> + Send>> {
        Box::pin(async move {
            Ok(ClaimReply {
                applied: request.delta,
                spent: 0,
                others: 0,
            })
        })
    }
}

fn admission(budget: bool, rate: bool) -> Admission {
    let budgets = Budgets::new(
        BudgetsOptions {
            calendar: Calendar::default(),
            replica_id: "bench".into(),
            lease_ttl_ms: 10_000,
            max_slice: Money(20_000_000_000),
            slice_divisor: 8,
            fail_policy: FailPolicy::Closed,
        },
        Arc::new(Generous),
    );
    if budget {
        budgets.set_budgets(vec![BudgetDef {
            id: "bud_1".into(),
            team_id: "tm_1".into(),
            key_id: None,
            period: Period::Month,
            limit: Money(1_000_000 * 1_000_000_000),
            soft_ppm: 800_000,
            session_cap: None,
            reset_at_ms: 0,
        }]);
    }
    let rates = RateLimits::new(None);
    if rate {
        rates.set_limits(&[RateLimitDef {
            team_id: "tm_1".into(),
            key_id: None,
            // Tokens are left out: at millions of calls a second any token rate runs dry and
            // the bench would measure refusals. A tokens check costs the same as this one.
            requests_per_minute: Some(u32::MAX / 2),
            tokens_per_minute: None,
        }]);
    }
    Admission {
        budgets: Arc::new(budgets),
        rates: Arc::new(rates),
        config: BudgetsConfig::default(),
    }
}

fn key() -> KeyRecord {
    KeyRecord {
        id: "k1".into(),
        name: "bench".into(),
        hash: tollgate_core::KeyHash::of("tg-bench"),
        team: Arc::new(TeamInfo {
            id: "tm_1".into(),
            name: "bench".into(),
            cost_centre: None,
            disabled: false,
            allowed_models: None,
        }),
        expires_at_ms: None,
        revoked_at_ms: None,
        allowed_models: None,
    }
}

fn admit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let prices = PriceTable::from_toml(PRICES).unwrap_or_else(|e| panic!("prices: {e:?}"));
    let body = Bytes::from_static(CODEX_BODY);
    let inspected =
        inspect::inspect(body.clone(), None, 32 << 20).unwrap_or_else(|e| panic!("inspect: {e:?}"));
    let key = key();
    let mut group = c.benchmark_group("admission_codex_request");
    for (name, budget, rate) in [
        ("no_limits", false, false),
        ("rate_limit", false, true),
        ("budget_and_rate_limit", true, true),
    ] {
        let admission = admission(budget, rate);
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let call = Call {
                        key: &key,
                        endpoint: Endpoint::Responses,
                        peek: &inspected.peek,
                        media: &MediaAsk::default(),
                        body: &inspected.body,
                        session_id: Some("sess-1"),
                        now_ms: tollgate_core::time::now_ms(),
                        held_input: None,
                    };
                    let admitted = admission
                        .reserve(call, &prices)
                        .await
                        .unwrap_or_else(|e| panic!("refused: {e:?}"));
                    if let Some(r) = admitted.reservation {
                        r.settle(Money(1_000));
                    }
                    if let Some(r) = admitted.rate {
                        r.settle(1_000);
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, admit);
criterion_main!(benches);
