//! Every new field of the price file is validated, each problem named by its field, all at once.

use super::*;

fn assert_problems(text: &str, expected: &[(&str, &str)]) {
    let found = problems(text);
    for (field, message) in expected {
        assert!(
            found
                .iter()
                .any(|p| p.field == *field && p.message.contains(message)),
            "no problem `{field}: …{message}…` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
}

#[test]
fn every_malformed_unit_price_is_reported_at_once() {
    let text = r#"
[[model]]
name = "a"
effective_from = "2025-01-01"
input = "1"
image_input = "x"
image_output = 2.5
audio_input = "-1"
audio_output = "0.0000000001"
[[model]]
name = "b"
effective_from = "2025-01-01"
per_image = "0.04"
[[model]]
name = "c"
effective_from = "2025-01-01"
per_image = []
[[model]]
name = "d"
effective_from = "2025-01-01"
per_image = [
    "0.04",
    { quality = "hd", usd = "0.08" },
    { size = "", quality = "", usd = 0.04 },
    { size = "1024x1024", quality = 1, usd = "1.0000000001" },
    { size = "1024x1024", colour = "red" },
]
[[model]]
name = "e"
effective_from = "2025-01-01"
per_image = [
    { size = "256x256", usd = "0.016" },
    { size = "256x256", quality = "standard", usd = "0.017" },
    { size = "256x256", quality = "hd", usd = "0.02" },
]
[[model]]
name = "f"
effective_from = "2025-01-01"
per_1m_characters = "-15"
[[model]]
name = "g"
effective_from = "2025-01-01"
per_minute = "0.0000000001"
[[model]]
name = "h"
effective_from = "2025-01-01"
per_minute = 6
[[model]]
name = "i"
effective_from = "2025-01-01"
output = "1"
audio_output = "12"
"#;
    assert_problems(
        text,
        &[
            (
                "model[0] (a).image_input",
                "'x' is not a decimal number of USD per 1M tokens",
            ),
            ("model[0] (a).image_output", "floats are inexact"),
            ("model[0] (a).audio_input", "negative"),
            ("model[0] (a).audio_output", "10 decimals; at most 9"),
            ("model[1] (b).per_image", "must be an array of tables"),
            ("model[2] (c).per_image", "lists no image price"),
            ("model[3] (d).per_image[0]", "must be an array of tables"),
            ("model[3] (d).per_image[1].size", "missing"),
            ("model[3] (d).per_image[2].size", "non-empty string"),
            ("model[3] (d).per_image[2].quality", "non-empty string"),
            ("model[3] (d).per_image[2].usd", "floats are inexact"),
            ("model[3] (d).per_image[3].quality", "non-empty string"),
            (
                "model[3] (d).per_image[3].usd",
                "10 decimals; at most 9 (1 nano-USD per image)",
            ),
            ("model[3] (d).per_image[4].colour", "unknown field"),
            ("model[3] (d).per_image[4].usd", "missing"),
            (
                "model[4] (e).per_image[1]",
                "size '256x256' at quality 'standard' is listed twice",
            ),
            (
                "model[5] (f).per_1m_characters",
                "negative; a rate is zero or more USD per 1M characters",
            ),
            (
                "model[6] (g).per_minute",
                "at most 9 (1 nano-USD per minute)",
            ),
            (
                "model[7] (h).per_minute",
                "must be a quoted decimal string of USD per minute",
            ),
            (
                "model[8] (i).input",
                "only entries priced per_image, per_1m_characters or per_minute may omit it",
            ),
        ],
    );
}

#[test]
fn every_malformed_tool_is_reported_at_once() {
    let text = r#"
[[tool]]
effective_from = "2025-01-01"
per_call = "0.01"
[[tool]]
name = ""
effective_from = "2025-01-01"
per_call = "0.01"
[[tool]]
name = "web_search"
per_call = 0.01
price = "0.01"
[[tool]]
name = "web_search"
effective_from = "2025-13-01"
[[tool]]
name = "file_search"
effective_from = "2025-01-01"
per_call = "-0.0025"
models = []
[[tool]]
name = "file_search"
effective_from = "2025-01-01"
per_call = "0.0025"
models = "gpt-4o"
[[tool]]
name = "file_search"
effective_from = "2025-01-01"
per_call = "0.0025"
models = ["gpt-4o", "gpt-4o", "", 3]
"#;
    assert_problems(
        text,
        &[
            ("tool[0].name", "missing"),
            ("tool[1].name", "non-empty string"),
            ("tool[2] (web_search).effective_from", "missing"),
            ("tool[2] (web_search).per_call", "floats are inexact"),
            ("tool[2] (web_search).price", "unknown field"),
            (
                "tool[3] (web_search).effective_from",
                "not a day of the calendar",
            ),
            ("tool[3] (web_search).per_call", "missing"),
            (
                "tool[4] (file_search).per_call",
                "negative; a rate is zero or more USD per call",
            ),
            ("tool[4] (file_search).models", "lists no model"),
            (
                "tool[5] (file_search).models",
                "must be an array of model names",
            ),
            (
                "tool[6] (file_search).models[1]",
                "'gpt-4o' is listed twice",
            ),
            ("tool[6] (file_search).models[2]", "non-empty string"),
            ("tool[6] (file_search).models[3]", "non-empty string"),
        ],
    );
    assert_problems(
        "tool = 1\n",
        &[("tool", "must be an array of tables ([[tool]] … )")],
    );
    assert_problems("tool = [1]\n", &[("tool[0]", "must be a table ([[tool]])")]);
}

#[test]
fn two_tool_prices_that_could_both_apply_to_a_call_are_refused() {
    let entry = |models: &str, usd: &str| {
        format!(
            "[[tool]]\nname = \"web_search\"\neffective_from = \"2025-01-01\"\nper_call = \
             \"{usd}\"\n{models}\n"
        )
    };
    // Both for every model, or both listing gpt-4o, from the same day: ambiguous.
    let twice = entry("", "0.01") + &entry("", "0.02");
    assert_problems(
        &twice,
        &[(
            "tool[1] (web_search).effective_from",
            "'web_search' already has a price for every model from 2025-01-01",
        )],
    );
    let listed =
        entry("models = [\"o3\", \"gpt-4o\"]", "0.01") + &entry("models = [\"gpt-4o\"]", "0.025");
    assert_problems(
        &listed,
        &[(
            "tool[1] (web_search).effective_from",
            "'web_search' already has a price for 'gpt-4o' from 2025-01-01",
        )],
    );
    // Disjoint lists, a list beside an entry for every model, or another day: all fine.
    let fine = entry("models = [\"o3\"]", "0.01")
        + &entry("models = [\"gpt-4o\"]", "0.025")
        + &entry("", "0.01")
        + &entry("", "0.02").replace("2025-01-01", "2026-01-01");
    let t = table(&fine);
    assert_eq!(
        t.tool_price("web_search", "gpt-4o", now())
            .map(|p| p.per_call),
        Some(25_000_000)
    );
    assert_eq!(
        t.tool_price("web_search", "o3", now()).map(|p| p.per_call),
        Some(10_000_000)
    );
    assert_eq!(
        t.tool_price("web_search", "gpt-5", now())
            .map(|p| p.per_call),
        Some(20_000_000)
    );
}

#[test]
fn only_entries_priced_by_other_units_may_omit_the_input_rate() {
    let t = table(
        r#"
[[model]]
name = "speech"
effective_from = "2025-01-01"
per_1m_characters = "15.00"
[[model]]
name = "minutes"
effective_from = "2025-01-01"
per_minute = "0.006"
[[model]]
name = "both"
effective_from = "2025-01-01"
input = "1.00"
per_minute = "0.006"
"#,
    );
    assert_eq!(t.len(), 3);
    // Tokens on an entry without `input` bill nothing; its unit still bills.
    let entry = t.resolve("speech", now()).unwrap();
    assert_eq!((entry.input, entry.output), (0, None));
    // An entry with both bills both: 1,000,000 × 1e9 / 1e6 + 60,000 ms × 6e6 / 60,000.
    let units = Units {
        audio_ms: 60_000,
        ..Units::default()
    };
    let priced = t.price_call("both", now(), &usage(1_000_000, 0, 0, 0), &units, None);
    assert_eq!(priced.map(|p| p.cost), Some(Money(1_006_000_000)));
    // Without any such field, `input` stays required.
    assert_problems(
        "[[model]]\nname = \"m\"\neffective_from = \"2025-01-01\"\nimage_input = \"10\"\n",
        &[("model[0] (m).input", "missing (USD per 1M tokens")],
    );
}
