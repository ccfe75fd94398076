//! Hand-computed prices. Rates are nano-USD per 1M tokens, so every cost below is
//! Σ tokens × rate / 1_000_000, with the multipliers written out where they apply.

use super::units::{PER_1M_TOKENS, Ratio, parse_day, parse_usd, strip_snapshot_suffix};
mod units;
mod validation;

use super::*;
use crate::config::ConfigProblem;
use crate::usage::{ImageCount, ToolUse, Units};

const SHIPPED: &str = include_str!("../../../../config/prices.toml");

fn shipped() -> PriceTable {
    PriceTable::from_toml(SHIPPED).unwrap_or_else(|problems| panic!("{problems:#?}"))
}

fn table(text: &str) -> PriceTable {
    PriceTable::from_toml(text).unwrap_or_else(|problems| panic!("{problems:#?}"))
}

fn usage(input: u64, cached_input: u64, output: u64, reasoning: u64) -> Usage {
    Usage {
        input,
        cached_input,
        output,
        reasoning,
    }
}

fn parse_rate(text: &str) -> Result<u64, String> {
    parse_usd(text, PER_1M_TOKENS)
}

fn ms(day: &str) -> i64 {
    parse_day(day).unwrap()
}

/// When the rates were gathered: every shipped entry is in force.
fn now() -> i64 {
    ms("2026-11-24")
}

fn nanos(t: &PriceTable, model: &str, u: &Usage, tier: Option<&str>) -> i64 {
    t.price(model, now(), u, tier)
        .unwrap_or_else(|| panic!("{model} unpriced"))
        .cost
        .nanos()
}

/// A Codex turn: 40,000 input of which 35,000 cached, 1,200 output of which 800 reasoning.
fn codex_turn() -> Usage {
    usage(40_000, 35_000, 1_200, 800)
}

#[test]
fn codex_turn_on_gpt_5_5_costs_exactly_78_5_million_nanos() {
    // uncached  5,000 × 5_000_000_000 / 1e6 = 25,000,000
    // cached   35,000 ×   500_000_000 / 1e6 = 17,500,000
    // output    1,200 × 30_000_000_000 / 1e6 = 36,000,000 (reasoning is inside the 1,200)
    let priced = shipped()
        .price("gpt-5.5", now(), &codex_turn(), None)
        .unwrap();
    assert_eq!(priced.cost, Money(78_500_000));
    assert_eq!(priced.cost.to_usd_string(), "0.0785");
    assert_eq!(priced.price_id, "gpt-5.5@2025-01-01");
    assert!(!priced.long_context);
    // Reasoning is never billed on top of output.
    let no_reasoning = usage(40_000, 35_000, 1_200, 0);
    assert_eq!(
        nanos(&shipped(), "gpt-5.5", &no_reasoning, None),
        78_500_000
    );
}

#[test]
fn long_context_applies_above_272k_input_tokens_to_the_whole_request() {
    let t = shipped();
    // 272,000 × 2_500_000_000 / 1e6 = 680,000,000; 1,000 × 15_000_000_000 / 1e6 = 15,000,000.
    let at_threshold = t.price("gpt-5.4", now(), &usage(272_000, 0, 1_000, 0), None);
    let at_threshold = at_threshold.unwrap();
    assert_eq!(at_threshold.cost, Money(695_000_000));
    assert!(!at_threshold.long_context);
    // 272,001 × 2_500_000_000 × 2/1 / 1e6 = 1,360,005,000; 1,000 × 15_000_000_000 × 3/2 / 1e6
    // = 22,500,000; total 1,382,505,000.
    let above = t
        .price("gpt-5.4", now(), &usage(272_001, 0, 1_000, 0), None)
        .unwrap();
    assert_eq!(above.cost, Money(1_382_505_000));
    assert!(above.long_context);
    // Cached input is doubled too: (72,001 × 2_500_000_000 + 200,000 × 250_000_000) × 2 / 1e6
    // = 460,005,000; plus 22,500,000 output = 482,505,000.
    let cached = usage(272_001, 200_000, 1_000, 0);
    assert_eq!(nanos(&t, "gpt-5.4", &cached, None), 482_505_000);
    // Stacks with flex: 1,382,505,000 / 2.
    let flex = usage(272_001, 0, 1_000, 0);
    assert_eq!(nanos(&t, "gpt-5.4", &flex, Some("flex")), 691_252_500);
    // gpt-5.4-pro: 300,000 × 30_000_000_000 × 2 / 1e6 = 18,000,000,000 ($18).
    let pro = usage(300_000, 0, 0, 0);
    assert_eq!(nanos(&t, "gpt-5.4-pro", &pro, None), 18_000_000_000);
    // No other model has the rule.
    assert_eq!(
        nanos(&t, "gpt-5.5", &usage(300_000, 0, 0, 0), None),
        1_500_000_000
    );
}

#[test]
fn flex_and_batch_halve_priority_doubles_anything_else_bills_at_one() {
    let t = shipped();
    let u = codex_turn();
    assert_eq!(nanos(&t, "gpt-5.5", &u, Some("flex")), 39_250_000);
    assert_eq!(nanos(&t, "gpt-5.5", &u, Some("batch")), 39_250_000);
    assert_eq!(nanos(&t, "gpt-5.5", &u, Some("priority")), 157_000_000);
    for tier in [None, Some("default"), Some("auto"), Some("scale"), Some("")] {
        assert_eq!(nanos(&t, "gpt-5.5", &u, tier), 78_500_000, "{tier:?}");
    }
    // Configured tiers override the defaults and add new ones.
    let custom = table(
        "[service_tiers]\nflex = \"3/5\"\nregional = \"11/10\"\n\
         [[model]]\nname = \"m\"\neffective_from = \"2025-01-01\"\ninput = \"1.00\"\n",
    );
    let million = usage(1_000_000, 0, 0, 0); // $1.00 = 1,000,000,000 nanos at tier 1
    assert_eq!(nanos(&custom, "m", &million, Some("flex")), 600_000_000);
    assert_eq!(
        nanos(&custom, "m", &million, Some("regional")),
        1_100_000_000
    );
    assert_eq!(
        nanos(&custom, "m", &million, Some("priority")),
        2_000_000_000
    );
}

#[test]
fn embeddings_bill_input_only() {
    let t = shipped();
    // 12,345 × 20_000_000 / 1e6 = 246,900; output has no rate and bills nothing.
    assert_eq!(
        nanos(&t, "text-embedding-3-small", &usage(12_345, 0, 0, 0), None),
        246_900
    );
    assert_eq!(
        nanos(&t, "text-embedding-3-small", &usage(12_345, 0, 7, 0), None),
        246_900
    );
    // 1,000,000 × 130_000_000 / 1e6 = 130,000,000 ($0.13).
    let million = usage(1_000_000, 0, 0, 0);
    assert_eq!(
        nanos(&t, "text-embedding-3-large", &million, None),
        130_000_000
    );
}

#[test]
fn rounds_half_up_once_per_request() {
    // gpt-5-nano, flex, 1 cached token: 1 × 5_000_000 × 1/2 / 1e6 = 2.5 → 3.
    assert_eq!(
        nanos(&shipped(), "gpt-5-nano", &usage(1, 1, 0, 0), Some("flex")),
        3
    );
    let t = table(
        "[[model]]\nname = \"tiny\"\neffective_from = \"2025-01-01\"\ninput = \"0.001\"\noutput = \"0.001\"\n\
         [[model]]\nname = \"sub\"\neffective_from = \"2025-01-01\"\ninput = \"0.0001\"\n",
    );
    // tiny at flex: 1 input = 1_000_000 / 2e6 = 0.5 → 1.
    assert_eq!(nanos(&t, "tiny", &usage(1, 0, 0, 0), Some("flex")), 1);
    // 0.5 input + 0.5 output = exactly 1: divided once, not rounded per kind (which gives 2).
    assert_eq!(nanos(&t, "tiny", &usage(1, 0, 1, 0), Some("flex")), 1);
    // sub: 100_000 per 1M tokens = 0.1 nano per token.
    assert_eq!(nanos(&t, "sub", &usage(4, 0, 0, 0), None), 0); // 0.4
    assert_eq!(nanos(&t, "sub", &usage(5, 0, 0, 0), None), 1); // 0.5
    assert_eq!(nanos(&t, "sub", &usage(14, 0, 0, 0), None), 1); // 1.4
    assert_eq!(nanos(&t, "sub", &usage(15, 0, 0, 0), None), 2); // 1.5
}

#[test]
fn dated_snapshots_bill_as_their_family_unless_listed() {
    let t = shipped();
    let id = |m: &str| t.resolve(m, now()).map(PriceEntry::id);
    assert_eq!(id("gpt-5-2025-08-07").as_deref(), Some("gpt-5@2025-01-01"));
    assert_eq!(
        id("gpt-4o-2024-08-06").as_deref(),
        Some("gpt-4o@2025-01-01")
    );
    assert_eq!(
        id("gpt-5.1-codex-2025-11-13").as_deref(),
        Some("gpt-5@2025-01-01")
    );
    assert_eq!(
        id("gpt-4o-2024-05-13").as_deref(),
        Some("gpt-4o-2024-05-13@2025-01-01")
    );
    assert_eq!(id("  gpt-5.5 ").as_deref(), Some("gpt-5.5@2025-01-01"));
    for unknown in [
        "GPT-5",
        "gpt-5-2025-08",
        "gpt-5-20250807",
        "2025-08-07",
        "gpt-6",
    ] {
        assert_eq!(id(unknown), None, "{unknown}");
    }
    assert_eq!(strip_snapshot_suffix("-2025-08-07"), None);
    assert_eq!(strip_snapshot_suffix("o3-2025-04-16"), Some("o3"));
}

#[test]
fn effective_from_switches_price_at_utc_midnight() {
    // The newer entry comes first: order in the file does not matter.
    let t = table(
        "[[model]]\nname = \"m\"\neffective_from = \"2026-06-01\"\ninput = \"1.50\"\ncached_input = \"0.15\"\noutput = \"3.00\"\n\
         [[model]]\nname = \"m\"\naliases = [\"m-alias\"]\neffective_from = 2025-01-01\ninput = \"1.00\"\noutput = \"2.00\"\n",
    );
    let u = usage(1_000, 400, 100, 0);
    let switch = ms("2026-06-01");
    assert_eq!(switch, 1_780_272_000_000);
    // Before: (600 + 400) × 1_000_000_000 + 100 × 2_000_000_000 = 1.2e12 → 1,200,000.
    let before = t.price("m", switch - 1, &u, None).unwrap();
    assert_eq!(
        (before.cost, before.price_id.as_str()),
        (Money(1_200_000), "m@2025-01-01")
    );
    // From midnight: 600 × 1.5e9 + 400 × 0.15e9 + 100 × 3e9 = 1.26e12 → 1,260,000.
    let after = t.price("m", switch, &u, None).unwrap();
    assert_eq!(
        (after.cost, after.price_id.as_str()),
        (Money(1_260_000), "m@2026-06-01")
    );
    // Before the first entry nothing is in force.
    assert_eq!(t.price("m", ms("2025-01-01") - 1, &u, None), None);
    // Each name keeps its own timeline: the newer entry does not list the alias.
    let alias = t.price("m-alias", switch, &u, None).unwrap();
    assert_eq!(alias.price_id, "m@2025-01-01");
    assert_eq!(t.len(), 2);
}

#[test]
fn unknown_models_are_none_and_fallback_prices_them() {
    let t = shipped();
    assert_eq!(t.price("claude-x", now(), &codex_turn(), None), None);
    assert_eq!(t.unpriced_policy(), UnpricedPolicy::Reject);
    assert_eq!(t.price_unpriced(&codex_turn(), None), None);

    let fallback = table(
        "[unpriced]\npolicy = \"fallback\"\ninput = \"30.00\"\ncached_input = \"3.00\"\noutput = \"180.00\"\n",
    );
    assert!(fallback.is_empty());
    assert_eq!(fallback.unpriced_policy(), UnpricedPolicy::Fallback);
    assert_eq!(fallback.price("gpt-5.5", now(), &codex_turn(), None), None);
    // 500 × 30e9 + 500 × 3e9 + 100 × 180e9 = 3.45e13 → 34,500,000; priority doubles.
    let u = usage(1_000, 500, 100, 0);
    let priced = fallback.price_unpriced(&u, None).unwrap();
    assert_eq!(priced.cost, Money(34_500_000));
    assert_eq!(priced.price_id, UNPRICED_FALLBACK_ID);
    let priority = fallback.price_unpriced(&u, Some("priority")).unwrap();
    assert_eq!(priority.cost, Money(69_000_000));
}

fn problems(text: &str) -> Vec<ConfigProblem> {
    match PriceTable::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(problems) => problems,
    }
}

#[test]
fn every_malformed_field_is_reported_at_once() {
    let text = r#"
bogus = 1
[service_tiers]
flex = "3/0"
[unpriced]
policy = "fallback"
[[model]]
name = "a"
effective_from = "2025-02-30"
input = "1.2.3"
cached_input = "0.0000000001"
output = "-1"
colour = "red"
[[model]]
name = "b"
effective_from = "2025-01-01"
input = 2.5
long_context = { above_input_tokens = 10, input = "2/1", output = "x", when = 1 }
[[model]]
name = "c"
effective_from = "2025-01-01"
input = "1"
[[model]]
effective_from = "20250101"
[[model]]
name = "d"
aliases = ["c", "d"]
effective_from = "2025-01-01"
input = "1"
[[model]]
name = "c"
effective_from = "2025-01-01"
input = "2"
"#;
    let found = problems(text);
    let expected = [
        ("bogus", "unknown field"),
        ("service_tiers.flex", "'3/0' is not a ratio"),
        ("unpriced.input", "missing"),
        ("unpriced.output", "missing"),
        ("model[0] (a).effective_from", "not a day of the calendar"),
        ("model[0] (a).input", "'1.2.3' is not a decimal number"),
        ("model[0] (a).cached_input", "10 decimals; at most 9"),
        ("model[0] (a).output", "negative"),
        ("model[0] (a).colour", "unknown field"),
        ("model[1] (b).input", "floats are inexact"),
        ("model[1] (b).long_context.output", "'x' is not a ratio"),
        ("model[1] (b).long_context.when", "unknown field"),
        ("model[3].name", "missing"),
        ("model[3].effective_from", "not a date like"),
        ("model[3].input", "missing"),
        ("model[4] (d).aliases[1]", "the entry's own name"),
        (
            "model[4] (d).aliases[0]",
            "'c' already has a price from 2025-01-01 (c@2025-01-01)",
        ),
        (
            "model[5] (c).effective_from",
            "'c' already has a price from 2025-01-01",
        ),
    ];
    for (field, message) in expected {
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(message)),
            "no problem `{field}: …{message}…` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn toml_syntax_errors_name_line_and_column() {
    let found = problems("[[model]]\nname = \"a\"\ninput = \n");
    assert_eq!(found.len(), 1);
    assert!(found[0].field.contains("line 3"), "{found:?}");
}

#[test]
fn rates_ratios_and_days_parse_exactly() {
    assert_eq!(parse_rate("0.005"), Ok(5_000_000));
    assert_eq!(parse_rate("5.00"), Ok(5_000_000_000));
    assert_eq!(parse_rate("30"), Ok(30_000_000_000));
    assert_eq!(parse_rate("0.000000001"), Ok(1));
    assert_eq!(parse_rate(" 2.5 "), Ok(2_500_000_000));
    for bad in [
        "",
        ".5",
        "5.",
        "1e3",
        "+1",
        "-0.5",
        "0.0000000001",
        "abc",
        "99999999999",
    ] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
    assert_eq!(Ratio::parse("3/2").map(|r| r.to_string()), Ok("3/2".into()));
    assert_eq!(Ratio::parse("2"), Ok(Ratio::new(2, 1).unwrap()));
    for bad in ["3/0", "0/1", "-1/2", "1/2/3", "1000001/1", "1.5", "/2"] {
        assert!(Ratio::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_day("1970-01-01"), Ok(0));
    assert_eq!(parse_day("2000-03-01"), Ok(951_868_800_000));
    assert_eq!(parse_day("2024-02-29"), Ok(1_709_164_800_000));
    assert!(parse_day("2000-02-29").is_ok());
    for bad in [
        "2025-02-29",
        "2100-02-29",
        "2025-1-01",
        "1969-12-31",
        "2025-00-10",
        "2025/01/01",
    ] {
        assert!(parse_day(bad).is_err(), "{bad}");
    }
}

#[test]
fn absurd_token_counts_saturate_instead_of_panicking() {
    let t = shipped();
    let huge = usage(u64::MAX, 0, u64::MAX, 0);
    assert_eq!(nanos(&t, "gpt-5.4-pro", &huge, Some("priority")), i64::MAX);
    // Cached beyond input is capped at the input: 100 × 500_000_000 / 1e6 = 50,000.
    assert_eq!(nanos(&t, "gpt-5.5", &usage(100, 500, 0, 0), None), 50_000);
}

#[test]
fn shipped_price_file_parses_and_prices_the_codex_models() {
    let t = shipped();
    // gpt-5 rates via an alias and via a snapshot:
    // 2,000 × 1_250_000_000 + 8,000 × 125_000_000 + 500 × 10_000_000_000 = 8.5e12 → 8,500,000.
    let u = usage(10_000, 8_000, 500, 200);
    for model in [
        "gpt-5-codex",
        "gpt-5-2025-08-07",
        "gpt-5.1",
        "gpt-5.1-codex",
    ] {
        let priced = t.price(model, now(), &u, None).unwrap();
        assert_eq!(priced.cost, Money(8_500_000), "{model}");
        assert_eq!(priced.price_id, "gpt-5@2025-01-01", "{model}");
    }
    assert_eq!(nanos(&t, "gpt-5.5", &codex_turn(), None), 78_500_000);
    assert_eq!(
        nanos(&t, "text-embedding-3-small", &usage(12_345, 0, 0, 0), None),
        246_900
    );
    // Pro models have no cached discount: 1,000 cached × 30_000_000_000 / 1e6 = 30,000,000.
    assert_eq!(
        nanos(&t, "gpt-5.5-pro", &usage(1_000, 1_000, 0, 0), None),
        30_000_000
    );

    let expected = [
        "gpt-5.5",
        "gpt-5.5-pro",
        "gpt-5.4",
        "gpt-5.4-mini",
        "gpt-5.4-nano",
        "gpt-5.4-pro",
        "gpt-5.2",
        "gpt-5.2-pro",
        "gpt-5",
        "gpt-5.1",
        "gpt-5-codex",
        "gpt-5.1-codex",
        "gpt-5-mini",
        "gpt-5.1-codex-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
        "gpt-3.5-turbo-instruct",
    ];
    for model in expected {
        assert!(t.resolve(model, now()).is_some(), "{model} missing");
    }
    for e in t.entries() {
        if e.name.ends_with("-pro") {
            assert_eq!(e.cached_input, None, "{}", e.name);
        }
        assert_eq!(
            e.long_context.is_some(),
            e.name == "gpt-5.4" || e.name == "gpt-5.4-pro",
            "{}",
            e.name
        );
    }
    assert_eq!(t.unpriced_policy(), UnpricedPolicy::Reject);
}
