//! What pricing one call costs: resolving the model (exact name and a dated snapshot) in the
//! shipped price table and computing the exact integer cost. Run with
//! `cargo bench -p tollgate-core --bench pricing`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::Usage;
use tollgate_core::pricing::PriceTable;

const PRICES: &str = include_str!("../../../config/prices.toml");

fn bench(c: &mut Criterion) {
    let Ok(table) = PriceTable::from_toml(PRICES) else {
        return;
    };
    let usage = Usage {
        input: 40_000,
        cached_input: 35_000,
        output: 1_200,
        reasoning: 800,
    };
    let now = 1_795_000_000_000;
    c.bench_function("pricing/gpt-5.5", |b| {
        b.iter(|| black_box(table.price(black_box("gpt-5.5"), now, &usage, Some("default"))))
    });
    c.bench_function("pricing/dated_snapshot_flex", |b| {
        b.iter(|| black_box(table.price(black_box("gpt-5-2025-08-07"), now, &usage, Some("flex"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
