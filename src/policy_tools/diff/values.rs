//! The values of a counterexample as the solver writes them in JSON:
//! extension calls (`ip("…")`, `datetime("…")`, `offset(…, duration("…"))`)
//! read back as Rust values.

use serde_json::Value;

/// The argument of an extension value (`{"__extn": {"fn", "arg"}}`).
pub(super) fn extension_arg(value: &Value) -> Option<&str> {
    value.get("__extn")?.get("arg")?.as_str()
}

/// A datetime value of the counterexample: `datetime("…")`, or
/// `offset(datetime("…"), duration("…"))` as the solver writes it.
pub(super) fn datetime_value(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let extension = value.get("__extn")?;
    match extension.get("fn")?.as_str()? {
        "datetime" => parse_datetime(extension.get("arg")?.as_str()?),
        "offset" => {
            let args = extension.get("args")?.as_array()?;
            let base = datetime_value(args.first()?)?;
            let duration = args.get(1)?.get("__extn")?;
            if duration.get("fn")?.as_str()? != "duration" {
                return None;
            }
            let ms = parse_duration_ms(duration.get("arg")?.as_str()?)?;
            base.checked_add_signed(chrono::TimeDelta::try_milliseconds(ms)?)
        }
        _ => None,
    }
}

/// Cedar's duration literal (`-1d2h3m4s5ms`) in milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            (
                match rest.as_bytes().first()? {
                    b'd' => 86_400_000,
                    b'h' => 3_600_000,
                    b'm' => 60_000,
                    b's' => 1_000,
                    _ => return None,
                },
                1,
            )
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    total.checked_mul(sign)
}

/// Cedar's datetime literal: `2024-01-01`, or with a time and an offset.
fn parse_datetime(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}
