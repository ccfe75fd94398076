//! What authenticating a request costs: `KeyCache::authenticate` with 10,000 keys cached
//! (parse, one map lookup, SHA-256 of the token, a constant-time compare), for a valid key and
//! for misses. Run with `cargo bench -p tollgate-core`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tollgate_core::keys::NewSecret;
use tollgate_core::{KeyCache, KeyRecord, SecretKind, TeamInfo};

const KEYS: usize = 10_000;

fn cache_with_keys(n: usize) -> (KeyCache, Vec<String>) {
    let cache = KeyCache::new();
    let team = Arc::new(TeamInfo {
        id: "team-bench".into(),
        name: "bench".into(),
        cost_centre: Some("CC-1".into()),
        disabled: false,
        allowed_models: None,
    });
    let tokens = (0..n)
        .map(|_| {
            let secret = NewSecret::generate(SecretKind::TeamKey);
            cache.upsert(KeyRecord {
                id: secret.id.clone(),
                name: "bench".into(),
                hash: secret.hash,
                team: Arc::clone(&team),
                expires_at_ms: None,
                revoked_at_ms: None,
                allowed_models: None,
            });
            secret.token
        })
        .collect();
    (cache, tokens)
}

fn key_lookup(c: &mut Criterion) {
    let (cache, tokens) = cache_with_keys(KEYS);
    let now = 1_800_000_000_000;
    let hit = format!("Bearer {}", tokens[KEYS / 2]);
    assert!(cache.authenticate(Some(&hit), now).is_ok());
    // Well-formed, but its id is not cached: the cheapest refusal after parsing.
    let unknown = format!("Bearer {}", NewSecret::generate(SecretKind::TeamKey).token);
    // A cached id with the wrong secret: the whole hash-and-compare path, then a refusal.
    let mut wrong_secret = tokens[KEYS / 3].clone();
    let last = if wrong_secret.ends_with('a') {
        "b"
    } else {
        "a"
    };
    wrong_secret.replace_range(wrong_secret.len() - 1.., last);
    let wrong_secret = format!("Bearer {wrong_secret}");
    assert!(cache.authenticate(Some(&unknown), now).is_err());
    assert!(cache.authenticate(Some(&wrong_secret), now).is_err());

    let mut group = c.benchmark_group("key_cache_authenticate_10k_keys");
    group.bench_function("valid_key", |b| {
        b.iter(|| cache.authenticate(black_box(Some(hit.as_str())), now))
    });
    group.bench_function("miss_unknown_id", |b| {
        b.iter(|| cache.authenticate(black_box(Some(unknown.as_str())), now))
    });
    group.bench_function("miss_wrong_secret", |b| {
        b.iter(|| cache.authenticate(black_box(Some(wrong_secret.as_str())), now))
    });
    group.finish();
}

criterion_group!(benches, key_lookup);
criterion_main!(benches);
