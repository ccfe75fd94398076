//! `/admin/v1/budgets` and `/admin/v1/rate-limits`: define, change, reset and inspect budgets
//! and rate limits. Money is a decimal string in USD (`"25.00"`) with the integer nano-USD beside
//! it; a budget's status (committed, reserved, remaining, window, reset) is read from the
//! database, so every process answers the same.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use tollgate_core::budget::{BudgetDef, Calendar, Period};
use tollgate_core::ratelimit::RateLimitDef;
use tollgate_core::{ApiError, Money};
use tollgate_store::{BudgetSpec, BudgetStatus, Store};

use crate::validate::FieldErrors;

/// `POST /admin/v1/budgets`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBudget {
    pub team: Option<String>,
    pub key: Option<String>,
    pub period: Option<String>,
    pub limit_usd: Option<String>,
    pub soft_ratio: Option<serde_json::Number>,
    pub session_cap_usd: Option<String>,
}

/// `PATCH /admin/v1/budgets/{id}`: absent fields keep their value; `session_cap_usd: null`
/// removes the cap; `reset: true` starts a new window now.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBudget {
    pub period: Option<String>,
    pub limit_usd: Option<String>,
    pub soft_ratio: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "present")]
    pub session_cap_usd: Option<Option<String>>,
    #[serde(default)]
    pub reset: bool,
}

/// `PUT /admin/v1/rate-limits`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRateLimit {
    pub team: Option<String>,
    pub key: Option<String>,
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub tokens_per_minute: Option<u32>,
}

/// Distinguishes an explicit `null` (Some(None)) from an absent field (None).
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A ratio like `0.8` → parts per million, exactly (from the number's decimal text, no float).
pub fn ratio_ppm(text: &str) -> Option<u32> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 6 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = format!("{frac:0<6}").parse().ok()?;
    let ppm = whole.checked_mul(1_000_000)?.checked_add(frac)?;
    (ppm <= 1_000_000).then_some(ppm)
}

/// Any JSON number from 0 to 1 as parts per million: exact for up to six decimals, otherwise
/// rounded to the nearest ppm (`1e-7`, `0.12345678`). A ratio is not money: rounding it is
/// harmless, and refusing what the OpenAPI document calls a valid number would not be.
pub fn number_ppm(number: &serde_json::Number) -> Option<u32> {
    if let Some(ppm) = ratio_ppm(&number.to_string()) {
        return Some(ppm);
    }
    let ratio = number.as_f64()?;
    if !(0.0..=1.0).contains(&ratio) {
        return None;
    }
    // In range, so the product is within 0..=1e6 and the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((ratio * 1e6).round() as u32)
}

/// Amounts as the OpenAPI document states them: 1-9 digits, optionally a point and 1-9 more
/// (no sign, no spaces, no exponent). Nine whole digits keep every amount far inside `Money`.
fn usd_text(text: &str) -> bool {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| (1..=9).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && frac.is_none_or(digits)
}

fn positive_usd(errors: &mut FieldErrors, field: &'static str, text: &str) -> Option<Money> {
    match Money::parse_usd(text) {
        Some(m) if m.nanos() > 0 && usd_text(text) => Some(m),
        _ => {
            errors.push(
                field,
                format!("'{text}' is not a positive amount in USD like \"25.00\""),
            );
            None
        }
    }
}

fn period(errors: &mut FieldErrors, text: &str) -> Option<Period> {
    let p = Period::parse(text);
    if p.is_none() {
        errors.push("period", "must be day, week, month or total");
    }
    p
}

fn soft(errors: &mut FieldErrors, number: &serde_json::Number) -> Option<u32> {
    let ppm = number_ppm(number);
    if ppm.is_none() {
        errors.push("soft_ratio", "must be a number from 0 to 1 (e.g. 0.8)");
    }
    ppm
}

/// Validates a new budget; `team_id`/`key_id` were resolved by the caller.
pub fn create_spec(
    body: &CreateBudget,
    team_id: &str,
    key_id: Option<&str>,
) -> Result<BudgetSpec, ApiError> {
    let mut errors = FieldErrors::default();
    let period = match body.period.as_deref() {
        Some(p) => period(&mut errors, p),
        None => {
            errors.push("period", "is required (day, week, month or total)");
            None
        }
    };
    let limit = match body.limit_usd.as_deref() {
        Some(l) => positive_usd(&mut errors, "limit_usd", l),
        None => {
            errors.push("limit_usd", "is required (a decimal string in USD)");
            None
        }
    };
    let soft_ppm = match &body.soft_ratio {
        Some(n) => soft(&mut errors, n),
        None => Some(800_000),
    };
    let session_cap = body
        .session_cap_usd
        .as_deref()
        .and_then(|c| positive_usd(&mut errors, "session_cap_usd", c));
    if session_cap.is_some() && key_id.is_some() {
        errors.push(
            "session_cap_usd",
            "is a team budget setting (leave key out to set it)",
        );
    }
    errors.into_result()?;
    Ok(BudgetSpec {
        team_id: team_id.to_string(),
        key_id: key_id.map(str::to_string),
        period: period.unwrap_or(Period::Month),
        limit: limit.unwrap_or_default(),
        soft_ppm: soft_ppm.unwrap_or(800_000),
        session_cap,
    })
}

/// Applies a PATCH to a budget's current definition.
pub fn update_spec(current: &BudgetDef, body: &UpdateBudget) -> Result<BudgetSpec, ApiError> {
    let mut errors = FieldErrors::default();
    let mut spec = BudgetSpec {
        team_id: current.team_id.clone(),
        key_id: current.key_id.clone(),
        period: current.period,
        limit: current.limit,
        soft_ppm: current.soft_ppm,
        session_cap: current.session_cap,
    };
    if let Some(p) = body.period.as_deref().and_then(|p| period(&mut errors, p)) {
        spec.period = p;
    }
    if let Some(l) = body
        .limit_usd
        .as_deref()
        .and_then(|l| positive_usd(&mut errors, "limit_usd", l))
    {
        spec.limit = l;
    }
    if let Some(ppm) = body.soft_ratio.as_ref().and_then(|n| soft(&mut errors, n)) {
        spec.soft_ppm = ppm;
    }
    match &body.session_cap_usd {
        None => {}
        Some(None) => spec.session_cap = None,
        Some(Some(c)) => {
            if current.key_id.is_some() {
                errors.push(
                    "session_cap_usd",
                    "is a team budget setting (this is a key budget)",
                );
            }
            spec.session_cap = positive_usd(&mut errors, "session_cap_usd", c);
        }
    }
    errors.into_result()?;
    Ok(spec)
}

/// Checks a rate limit's body; `None` rates remove that limit.
pub fn rate_limit_def(
    body: &SetRateLimit,
    team_id: &str,
    key_id: Option<&str>,
) -> Result<RateLimitDef, ApiError> {
    let mut errors = FieldErrors::default();
    for (field, value) in [
        ("requests_per_minute", body.requests_per_minute),
        ("tokens_per_minute", body.tokens_per_minute),
    ] {
        if value == Some(0) {
            errors.push(field, "must be at least 1 (leave it out for no limit)");
        }
    }
    errors.into_result()?;
    Ok(RateLimitDef {
        team_id: team_id.to_string(),
        key_id: key_id.map(str::to_string),
        requests_per_minute: body.requests_per_minute,
        tokens_per_minute: body.tokens_per_minute,
    })
}

/// Parts per million as an exact decimal ratio: 800000 → "0.8", 1000000 → "1".
pub fn ppm_decimal(ppm: u32) -> String {
    let (whole, frac) = (ppm / 1_000_000, ppm % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn usd(m: Money) -> Value {
    Value::String(m.to_usd_string())
}

/// A budget with its current window's status, as the API and the CLI show it.
pub fn view(budget: &BudgetDef, status: &BudgetStatus, calendar: Calendar) -> Value {
    json!({
        "object": "budget",
        "id": budget.id,
        "team_id": budget.team_id,
        "key_id": budget.key_id,
        "scope": budget.scope(),
        "period": budget.period.as_str(),
        "timezone": calendar.zone(),
        "limit_usd": usd(budget.limit),
        "limit_nano_usd": budget.limit.nanos(),
        "soft_ratio": ppm_decimal(budget.soft_ppm),
        "soft_limit_usd": usd(status.soft_limit),
        "session_cap_usd": budget.session_cap.map(usd),
        "committed_usd": usd(status.committed),
        "committed_nano_usd": status.committed.nanos(),
        "reserved_usd": usd(status.reserved),
        "reserved_nano_usd": status.reserved.nanos(),
        "remaining_usd": usd(status.remaining),
        "remaining_nano_usd": status.remaining.nanos(),
        "soft_crossed": status.soft_crossed,
        "window_start": status.window_start_ms.div_euclid(1000),
        "window_start_ms": status.window_start_ms,
        "resets_at": status.resets_at_ms.map(|ms| ms.div_euclid(1000)),
        "resets_at_ms": status.resets_at_ms,
    })
}

/// A budget's definition without its live status: what the audit log records.
pub fn definition(budget: &BudgetDef) -> Value {
    json!({
        "object": "budget",
        "id": budget.id,
        "team_id": budget.team_id,
        "key_id": budget.key_id,
        "period": budget.period.as_str(),
        "limit_usd": usd(budget.limit),
        "soft_ratio": ppm_decimal(budget.soft_ppm),
        "session_cap_usd": budget.session_cap.map(usd),
        "reset_at_ms": budget.reset_at_ms,
    })
}

/// Reads a budget's status and renders it.
pub async fn show(
    store: &Store,
    budget: &BudgetDef,
    calendar: Calendar,
) -> Result<Value, tollgate_store::StoreError> {
    let status = store
        .budget_status(budget, calendar, tollgate_core::time::now_ms())
        .await?;
    Ok(view(budget, &status, calendar))
}

pub fn rate_limit_view(def: &RateLimitDef) -> Value {
    json!({
        "object": "rate_limit",
        "team_id": def.team_id,
        "key_id": def.key_id,
        "scope": if def.key_id.is_some() { "key" } else { "team" },
        "requests_per_minute": def.requests_per_minute,
        "tokens_per_minute": def.tokens_per_minute,
        "enforced": "per gateway process",
    })
}

pub const CREATED: StatusCode = StatusCode::CREATED;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_reads_back_as_the_same_decimal() {
        assert_eq!(ppm_decimal(800_000), "0.8");
        assert_eq!(ppm_decimal(1_000_000), "1");
        assert_eq!(ppm_decimal(123_456), "0.123456");
        assert_eq!(ppm_decimal(5), "0.000005");
        for ppm in [0, 1, 5, 800_000, 999_999, 1_000_000] {
            assert_eq!(ratio_ppm(&ppm_decimal(ppm)), Some(ppm));
        }
    }

    #[test]
    fn ratios_become_exact_ppm() {
        assert_eq!(ratio_ppm("0.8"), Some(800_000));
        assert_eq!(ratio_ppm("1"), Some(1_000_000));
        assert_eq!(ratio_ppm("0.123456"), Some(123_456));
        assert_eq!(ratio_ppm("0.1234567"), None);
        assert_eq!(ratio_ppm("1.5"), None);
        assert_eq!(ratio_ppm("-0.5"), None);
        let n = |t: &str| number_ppm(&t.parse().unwrap());
        assert_eq!(n("0.1234567"), Some(123_457));
        assert_eq!(n("1e-7"), Some(0));
        assert_eq!(n("1.5"), None);
        assert_eq!(n("-0.5"), None);
    }

    #[test]
    fn amounts_follow_the_documented_pattern() {
        for good in ["25", "0.5", "999999999.999999999", "1.0"] {
            assert!(usd_text(good), "{good}");
        }
        for bad in [
            "",
            "5.",
            ".5",
            " 5",
            "-1",
            "1e3",
            "1000000000",
            "1.0000000001",
        ] {
            assert!(!usd_text(bad), "{bad}");
        }
    }
}
