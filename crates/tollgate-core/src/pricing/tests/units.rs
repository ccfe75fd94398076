//! Hand-computed prices of calls that bill more than text tokens. Token rates are nano-USD per
//! 1M tokens; per-image and per-call prices nano-USD each; characters nano-USD per 1M; minutes
//! nano-USD per 60,000 ms.

use super::*;

const TABLE: &str = r#"
[[model]]
name = "img"
effective_from = "2025-01-01"
input = "5.00"
cached_input = "1.25"
image_input = "10.00"
image_output = "40.00"

[[model]]
name = "aud"
effective_from = "2025-01-01"
input = "2.50"
output = "10.00"
audio_input = "40.00"
audio_output = "80.00"

[[model]]
name = "dalle"
effective_from = "2025-01-01"
per_image = [
    { size = "1024x1024", quality = "standard", usd = "0.04" },
    { size = "1024x1024", quality = "hd", usd = "0.08" },
]

[[model]]
name = "dalle2"
effective_from = "2025-01-01"
per_image = [ { size = "256x256", usd = "0.016" } ]

[[model]]
name = "tts"
effective_from = "2025-01-01"
per_1m_characters = "15.00"

[[model]]
name = "whisper"
effective_from = "2025-01-01"
per_minute = "0.006"

[[model]]
name = "chat"
effective_from = "2025-01-01"
input = "2.50"
output = "10.00"
long_context = { above_input_tokens = 10, input = "2/1", output = "3/2" }

[[model]]
name = "reasoner"
effective_from = "2025-01-01"
input = "2.00"
output = "8.00"

[[tool]]
name = "web_search_preview"
effective_from = "2025-01-01"
per_call = "0.01"

[[tool]]
name = "web_search_preview"
effective_from = "2025-01-01"
per_call = "0.025"
models = ["chat"]

[[tool]]
name = "web_search_preview"
effective_from = "2026-06-01"
per_call = "0.012"

[[tool]]
name = "file_search"
effective_from = "2025-01-01"
per_call = "0.0025"

[[tool]]
name = "code_interpreter"
effective_from = "2026-01-01"
per_call = "0.03"
"#;

fn t() -> PriceTable {
    table(TABLE)
}

fn call(t: &PriceTable, model: &str, u: &Usage, units: &Units, tier: Option<&str>) -> Option<i64> {
    t.price_call(model, now(), u, units, tier)
        .map(|p| p.cost.nanos())
}

fn images(count: u64, size: &str, quality: &str) -> Units {
    Units {
        images: Some(ImageCount {
            count,
            size: size.into(),
            quality: quality.into(),
        }),
        ..Units::default()
    }
}

fn tools(list: &[(&str, u64)]) -> Units {
    Units {
        tool_calls: list
            .iter()
            .map(|&(tool, calls)| ToolUse {
                tool: tool.into(),
                calls,
            })
            .collect(),
        ..Units::default()
    }
}

const NONE: Usage = Usage {
    input: 0,
    cached_input: 0,
    output: 0,
    reasoning: 0,
};

#[test]
fn image_tokens_bill_at_image_rates_and_cached_tokens_at_the_cached_rate() {
    let units = Units {
        input_image_tokens: 600,
        output_image_tokens: 2_000,
        ..Units::default()
    };
    // Input 1,000 of which 100 cached and 600 image:
    //   cached 100 × 1.25e9 = 1.25e11; image 600 × 10e9 = 6e12; text 300 × 5e9 = 1.5e12.
    // Output 2,000 image tokens × 40e9 = 8e13. Sum 8.7625e13 / 1e6 = 87,625,000.
    let u = usage(1_000, 100, 2_000, 0);
    assert_eq!(call(&t(), "img", &u, &units, None), Some(87_625_000));
    // The entry has no text output rate: 100 text output tokens beside the image bill nothing.
    let u = usage(1_000, 100, 2_100, 0);
    assert_eq!(call(&t(), "img", &u, &units, None), Some(87_625_000));
    // Image tokens are a subset of the input: more than the uncached input are capped at it.
    // 100 × 10e9 = 1e12 → 1,000,000.
    let over = Units {
        input_image_tokens: 1_000,
        ..Units::default()
    };
    let u = usage(100, 0, 0, 0);
    assert_eq!(call(&t(), "img", &u, &over, None), Some(1_000_000));
}

#[test]
fn audio_tokens_bill_at_audio_rates_or_at_the_text_rate_without_one() {
    let units = Units {
        input_audio_tokens: 400,
        output_audio_tokens: 300,
        ..Units::default()
    };
    let u = usage(1_000, 0, 500, 0);
    // In: 600 × 2.5e9 + 400 × 40e9 = 1.75e13; out: 200 × 10e9 + 300 × 80e9 = 2.6e13.
    // (1.75e13 + 2.6e13) / 1e6 = 43,500,000.
    assert_eq!(call(&t(), "aud", &u, &units, None), Some(43_500_000));
    // "reasoner" has no audio rates: audio tokens bill as text, exactly like `price`.
    // 1,000 × 2e9 + 500 × 8e9 = 6e12 → 6,000,000.
    assert_eq!(call(&t(), "reasoner", &u, &units, None), Some(6_000_000));
    assert_eq!(nanos(&t(), "reasoner", &u, None), 6_000_000);
}

#[test]
fn images_bill_per_image_by_size_and_quality() {
    let t = t();
    // 3 × 40,000,000.
    let standard = images(3, "1024x1024", "standard");
    assert_eq!(call(&t, "dalle", &NONE, &standard, None), Some(120_000_000));
    // An empty quality is "standard".
    let unnamed = images(3, "1024x1024", "");
    assert_eq!(call(&t, "dalle", &NONE, &unnamed, None), Some(120_000_000));
    let hd = images(2, "1024x1024", "hd");
    assert_eq!(call(&t, "dalle", &NONE, &hd, None), Some(160_000_000));
    // dall-e-2 style: quality omitted in the file means "standard". 16,000,000 each.
    for quality in ["", "standard"] {
        let small = images(1, "256x256", quality);
        assert_eq!(call(&t, "dalle2", &NONE, &small, None), Some(16_000_000));
    }
    // Sizes and qualities the entry does not list cannot be priced, nor images on a model
    // without per-image prices.
    for (model, units) in [
        ("dalle", images(1, "512x512", "standard")),
        ("dalle", images(1, "1024x1024", "ultra")),
        ("dalle2", images(1, "256x256", "hd")),
        ("chat", images(1, "1024x1024", "standard")),
    ] {
        assert_eq!(
            call(&t, model, &NONE, &units, None),
            None,
            "{model} {units:?}"
        );
        assert!(!t.can_price(model, now(), &units), "{model} {units:?}");
    }
    assert!(t.can_price("dalle", now(), &hd));
    // Zero images is nothing to price.
    assert!(t.can_price("chat", now(), &images(0, "1x1", "")));
    let entry = t.resolve("dalle", now()).unwrap();
    assert_eq!(entry.per_image("1024x1024", "hd"), Some(80_000_000));
    assert_eq!(entry.per_image(" 1024x1024 ", ""), Some(40_000_000));
    assert!(entry.bills_per_image() && !entry.bills_characters() && !entry.bills_minutes());
    // Per-image entries need no token rate: tokens bill nothing.
    assert_eq!(entry.input, 0);
    assert_eq!(
        call(&t, "dalle", &usage(500, 0, 0, 0), &hd, None),
        Some(160_000_000)
    );
}

#[test]
fn characters_bill_per_million_and_minutes_per_millisecond() {
    let t = t();
    // 1,234 × 15e9 / 1e6 = 18,510,000.
    let chars = Units {
        characters: 1_234,
        ..Units::default()
    };
    assert_eq!(call(&t, "tts", &NONE, &chars, None), Some(18_510_000));
    assert!(t.resolve("tts", now()).unwrap().bills_characters());
    // 90,500 ms × 6,000,000 / 60,000 = 9,050,000; one millisecond is 100 nano-USD.
    let audio = |audio_ms| Units {
        audio_ms,
        ..Units::default()
    };
    assert_eq!(
        call(&t, "whisper", &NONE, &audio(90_500), None),
        Some(9_050_000)
    );
    assert_eq!(call(&t, "whisper", &NONE, &audio(1), None), Some(100));
    assert!(t.resolve("whisper", now()).unwrap().bills_minutes());
    // Neither unit has a rate on a token model, nor on each other's model.
    for (model, units) in [("chat", &chars), ("whisper", &chars), ("tts", &audio(1))] {
        assert_eq!(call(&t, model, &NONE, units, None), None, "{model}");
        assert!(!t.can_price(model, now(), units), "{model}");
    }
}

#[test]
fn tool_calls_bill_per_call_and_a_model_list_wins_for_its_models() {
    let t = t();
    let searches = tools(&[("web_search_preview", 3)]);
    let at = |model: &str, day: &str, units: &Units| {
        t.price_call(model, ms(day), &NONE, units, None)
            .map(|p| p.cost.nanos())
    };
    // "chat" is listed: 3 × 25,000,000. "reasoner" is not: 3 × 10,000,000.
    assert_eq!(at("chat", "2026-01-01", &searches), Some(75_000_000));
    assert_eq!(at("reasoner", "2026-01-01", &searches), Some(30_000_000));
    // A dated snapshot is priced by the "chat" entry, so the list applies to it too.
    assert_eq!(
        at("chat-2025-03-01", "2026-01-01", &searches),
        Some(75_000_000)
    );
    // From 2026-06-01 unlisted models pay 12,000,000 a call; the listed entry still wins.
    assert_eq!(at("reasoner", "2026-06-01", &searches), Some(36_000_000));
    assert_eq!(at("chat", "2026-06-01", &searches), Some(75_000_000));
    let id = |model, day| {
        t.tool_price("web_search_preview", model, ms(day))
            .map(ToolPrice::id)
    };
    assert_eq!(
        id("reasoner", "2026-06-01").as_deref(),
        Some("web_search_preview@2026-06-01")
    );
    assert_eq!(
        id("chat", "2026-06-01").as_deref(),
        Some("web_search_preview@2025-01-01")
    );
    // A tool with no entry, or none in force yet, cannot be priced; zero calls need no entry.
    let code = tools(&[("code_interpreter", 1)]);
    assert_eq!(at("chat", "2025-12-31", &code), None);
    assert!(!t.can_price("chat", ms("2025-12-31"), &code));
    assert_eq!(at("chat", "2026-01-01", &code), Some(30_000_000));
    assert!(t.can_price("chat", ms("2026-01-01"), &code));
    assert!(!t.can_price("chat", now(), &tools(&[("web_search", 1)])));
    assert!(t.can_price("chat", now(), &tools(&[("web_search", 0)])));
    // Tool names match exactly.
    assert!(!t.can_price("chat", now(), &tools(&[("Web_Search_Preview", 1)])));
}

#[test]
fn a_mixed_call_sums_every_part_and_the_tier_applies_to_all_of_it() {
    let t = t();
    let units = tools(&[("web_search_preview", 2), ("file_search", 1)]);
    // Tokens: 10 × 2.5e9 + 200 × 10e9 = 2.025e12 → 2,025,000.
    // Tools: 2 × 25,000,000 + 2,500,000 = 52,500,000. Total 54,525,000.
    let u = usage(10, 0, 200, 0);
    assert_eq!(call(&t, "chat", &u, &units, None), Some(54_525_000));
    assert_eq!(call(&t, "chat", &u, &units, Some("flex")), Some(27_262_500));
    assert_eq!(
        call(&t, "chat", &u, &units, Some("priority")),
        Some(109_050_000)
    );
    // Batch halves per-image prices too: 40,000,000 / 2.
    let one = images(1, "1024x1024", "standard");
    assert_eq!(
        call(&t, "dalle", &NONE, &one, Some("batch")),
        Some(20_000_000)
    );
    // And minutes: 1 ms = 100 / 2.
    let ms1 = Units {
        audio_ms: 1,
        ..Units::default()
    };
    assert_eq!(call(&t, "whisper", &NONE, &ms1, Some("flex")), Some(50));
}

#[test]
fn long_context_multiplies_tokens_only() {
    let t = t();
    let units = tools(&[("web_search_preview", 1)]);
    // 11 input tokens exceed 10: 11 × 2.5e9 × 2 = 5.5e10; 10 output × 10e9 × 3/2 = 1.5e11.
    // (5.5e10 + 1.5e11) / 1e6 = 205,000; plus one search at 25,000,000, not multiplied.
    let u = usage(11, 0, 10, 0);
    let priced = t.price_call("chat", now(), &u, &units, None).unwrap();
    assert_eq!(priced.cost, Money(25_205_000));
    assert!(priced.long_context);
    // Flex halves the whole: 12,602,500.
    assert_eq!(call(&t, "chat", &u, &units, Some("flex")), Some(12_602_500));
}

#[test]
fn units_round_once_with_the_tokens_half_up() {
    let t = table(
        r#"
[[model]]
name = "tiny"
effective_from = "2025-01-01"
input = "0.0005"
per_1m_characters = "0.0005"
per_minute = "0.000000001"
per_image = [ { size = "1x1", usd = "0.000000001" } ]
"#,
    );
    let chars = |characters| Units {
        characters,
        ..Units::default()
    };
    let minutes = |audio_ms| Units {
        audio_ms,
        ..Units::default()
    };
    // Half a nano-USD rounds up; just under half rounds down.
    assert_eq!(call(&t, "tiny", &NONE, &chars(1), None), Some(1)); // 0.5
    assert_eq!(call(&t, "tiny", &NONE, &minutes(30_000), None), Some(1)); // 0.5
    assert_eq!(call(&t, "tiny", &NONE, &minutes(29_999), None), Some(0)); // 0.49998
    assert_eq!(call(&t, "tiny", &NONE, &minutes(89_999), None), Some(1)); // 1.49998
    // One image at flex: 0.5 → 1.
    let one = images(1, "1x1", "");
    assert_eq!(call(&t, "tiny", &NONE, &one, Some("flex")), Some(1));
    // 0.5 from a token + 0.5 from a character = exactly 1: one rounding, not two (which gives 2).
    let u = usage(1, 0, 0, 0);
    assert_eq!(call(&t, "tiny", &u, &chars(1), None), Some(1));
    // 0.5 + 0.5 + 0.5 (30,000 ms) = 1.5 → 2.
    let all = Units {
        characters: 1,
        audio_ms: 30_000,
        ..Units::default()
    };
    assert_eq!(call(&t, "tiny", &u, &all, None), Some(2));
}

#[test]
fn absurd_unit_counts_saturate_instead_of_panicking() {
    let t = t();
    let many = images(u64::MAX, "1024x1024", "hd");
    assert_eq!(call(&t, "dalle", &NONE, &many, None), Some(i64::MAX));
    let calls = tools(&[("web_search_preview", u64::MAX), ("file_search", u64::MAX)]);
    assert_eq!(
        call(&t, "chat", &NONE, &calls, Some("priority")),
        Some(i64::MAX)
    );
    let chars = Units {
        characters: u64::MAX,
        ..Units::default()
    };
    assert_eq!(call(&t, "tts", &NONE, &chars, None), Some(i64::MAX));
    let minutes = Units {
        audio_ms: u64::MAX,
        ..Units::default()
    };
    assert_eq!(call(&t, "whisper", &NONE, &minutes, None), Some(i64::MAX));
    let audio = Units {
        input_audio_tokens: u64::MAX,
        output_audio_tokens: u64::MAX,
        ..Units::default()
    };
    let huge = usage(u64::MAX, 0, u64::MAX, 0);
    assert_eq!(call(&t, "aud", &huge, &audio, None), Some(i64::MAX));
    // Just representable: 230 images at $40,000,000 would be 9.2e18 nanos, under i64::MAX.
    let big = table(
        "[[model]]\nname = \"x\"\neffective_from = \"2025-01-01\"\n\
         per_image = [ { size = \"s\", usd = \"40000000\" } ]\n",
    );
    assert_eq!(
        call(&big, "x", &NONE, &images(230, "s", ""), None),
        Some(9_200_000_000_000_000_000)
    );
    assert_eq!(
        call(&big, "x", &NONE, &images(231, "s", ""), None),
        Some(i64::MAX)
    );
}

#[test]
fn price_is_price_call_without_units_and_the_fallback_prices_tokens_only() {
    let t = shipped();
    let u = codex_turn();
    for e in t.entries() {
        for tier in [None, Some("flex"), Some("priority")] {
            assert_eq!(
                t.price(&e.name, now(), &u, tier),
                t.price_call(&e.name, now(), &u, &Units::default(), tier),
                "{}",
                e.name
            );
        }
    }
    // Unknown model: None whatever the units, and can_price says so.
    assert_eq!(
        t.price_call("gpt-9", now(), &u, &Units::default(), None),
        None
    );
    assert!(!t.can_price("gpt-9", now(), &Units::default()));
    assert!(t.can_price("gpt-5.5", now(), &Units::default()));
}

#[test]
fn units_serialize_only_what_is_billed() {
    assert!(Units::default().is_empty());
    assert_eq!(serde_json::to_string(&Units::default()).unwrap(), "{}");
    assert!(images(0, "1024x1024", "hd").is_empty());
    assert!(tools(&[("web_search", 0)]).is_empty());
    assert!(!tools(&[("web_search", 1)]).is_empty());
    let units = Units {
        output_image_tokens: 4_160,
        images: Some(ImageCount {
            count: 1,
            size: "1024x1024".into(),
            quality: "hd".into(),
        }),
        tool_calls: vec![ToolUse {
            tool: "web_search".into(),
            calls: 2,
        }],
        ..Units::default()
    };
    assert!(!units.is_empty());
    let json = serde_json::to_string(&units).unwrap();
    assert_eq!(
        json,
        r#"{"output_image_tokens":4160,"images":{"count":1,"size":"1024x1024","quality":"hd"},"tool_calls":[{"tool":"web_search","calls":2}]}"#
    );
    assert_eq!(serde_json::from_str::<Units>(&json).unwrap(), units);
}

#[test]
fn shipped_price_file_prices_images_speech_transcription_and_tools() {
    let t = shipped();
    let price = |model: &str, u: &Usage, units: &Units| {
        t.price_call(model, now(), u, units, None)
            .unwrap_or_else(|| panic!("{model} {units:?} unpriced"))
            .cost
            .nanos()
    };
    // gpt-image-1, a high-quality square image: 100 text tokens × 5e9 + 4,160 image output
    // tokens × 40e9 = 1.669e14 → 166,900,000.
    let image_out = Units {
        output_image_tokens: 4_160,
        ..Units::default()
    };
    assert_eq!(
        price("gpt-image-1", &usage(100, 0, 4_160, 0), &image_out),
        166_900_000
    );
    // DALL·E per image.
    for (model, size, quality, nanos) in [
        ("dall-e-3", "1024x1024", "standard", 40_000_000),
        ("dall-e-3", "1024x1792", "standard", 80_000_000),
        ("dall-e-3", "1792x1024", "hd", 120_000_000),
        ("dall-e-2", "512x512", "", 18_000_000),
        ("dall-e-2", "1024x1024", "standard", 20_000_000),
    ] {
        assert_eq!(
            price(model, &NONE, &images(1, size, quality)),
            nanos,
            "{model} {size}"
        );
    }
    assert!(!t.can_price("dall-e-2", now(), &images(1, "1024x1024", "hd")));
    // Speech: 1,000 characters × 15e9 / 1e6; tts-1-hd doubles it.
    let chars = Units {
        characters: 1_000,
        ..Units::default()
    };
    assert_eq!(price("tts-1", &NONE, &chars), 15_000_000);
    assert_eq!(price("tts-1-hd", &NONE, &chars), 30_000_000);
    // gpt-4o-mini-tts: 100 × 0.6e9 + 1,000 audio output × 12e9 = 1.206e13 → 12,060,000.
    let audio_out = Units {
        output_audio_tokens: 1_000,
        ..Units::default()
    };
    assert_eq!(
        price("gpt-4o-mini-tts", &usage(100, 0, 1_000, 0), &audio_out),
        12_060_000
    );
    // Transcription: a minute of whisper-1 is $0.006; gpt-4o-transcribe bills 1,000 audio
    // input tokens × 6e9 + 100 output × 10e9 = 7e12 → 7,000,000.
    let minute = Units {
        audio_ms: 60_000,
        ..Units::default()
    };
    assert_eq!(price("whisper-1", &NONE, &minute), 6_000_000);
    let audio_in = Units {
        input_audio_tokens: 1_000,
        ..Units::default()
    };
    assert_eq!(
        price("gpt-4o-transcribe", &usage(1_000, 0, 100, 0), &audio_in),
        7_000_000
    );
    // Moderation is priced, at zero.
    let u = usage(5_000, 0, 10, 0);
    assert_eq!(price("omni-moderation-latest", &u, &Units::default()), 0);
    assert_eq!(price("text-moderation-latest", &u, &Units::default()), 0);
    // Tools: web_search_preview is $25 / 1K calls on non-reasoning models (snapshots included),
    // $10 / 1K on the rest.
    let preview = tools(&[("web_search_preview", 1)]);
    for model in [
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "gpt-4o-2024-05-13",
        "gpt-4.1-nano",
    ] {
        assert_eq!(price(model, &NONE, &preview), 25_000_000, "{model}");
    }
    for model in ["o3", "gpt-5", "gpt-5.5"] {
        assert_eq!(price(model, &NONE, &preview), 10_000_000, "{model}");
    }
    let others = tools(&[
        ("web_search", 1),
        ("file_search", 1),
        ("code_interpreter", 1),
    ]);
    // 10,000,000 + 2,500,000 + 30,000,000.
    assert_eq!(price("gpt-5.5", &NONE, &others), 42_500_000);
}
