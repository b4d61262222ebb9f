//! The JSON log line, written straight into the line's buffer.
//!
//! The same line `tracing-subscriber`'s JSON format writes (flattened
//! event, no current span, the span list; `timestamp`, `level`, the event's
//! fields, `target`, `spans`), without its detours: that format gathers an
//! event's fields into a map of `serde_json` values before writing them,
//! and parses every span's fields back from their JSON text on every line.
//! Here the fields are written as they are visited, and the spans' fields,
//! kept as one JSON object per span by [`AppendJsonFields`], are copied
//! into the line as they are. `tests` below holds the two formats equal.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The span fields' formatter: each span's fields as one JSON object that
/// grows as fields are recorded. The call's span records about ten fields
/// as the call goes through the stages; a record appends its members
/// instead of re-writing the object. A field recorded again replaces its
/// value (rare: the object is then parsed and written again).
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendJsonFields;

/// The event formatter (see the module's documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

/// Writes `value` as a JSON string. Besides what JSON requires (`"`, `\\`
/// and the C0 controls), the characters some readers take for line ends
/// (U+0085, U+2028, U+2029) and those that reorder what a human reads
/// (the C1 controls, the bidirectional overrides and isolates) are written
/// as `\uXXXX`: a caller's identity or token cannot split an audit line
/// or make it display as something else. The value read back is the same.
fn string(out: &mut String, value: &str) {
    out.reserve(value.len() + 2);
    out.push('"');
    let mut plain = 0;
    for (i, c) in value.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\0'..='\u{1f}'
            | '\u{80}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => "",
            _ => continue,
        };
        out.push_str(&value[plain..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escaped);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&value[plain..]);
    out.push('"');
}

/// A visitor writing each field as a JSON member (`"name":value`), comma
/// separated, into `out`.
struct Members<'a> {
    out: &'a mut String,
    /// No member written yet.
    first: bool,
    /// Scratch for `Debug` values.
    scratch: String,
}

impl<'a> Members<'a> {
    fn new(out: &'a mut String) -> Self {
        Self {
            out,
            first: true,
            scratch: String::new(),
        }
    }

    fn name(&mut self, field: &Field) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for Members<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        let _ = write!(self.out, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        let _ = write!(self.out, "{value}");
    }

    // 128-bit integers as strings, as tracing-subscriber writes them (many
    // JSON readers lose digits beyond 64 bits).
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.name(field);
        let _ = write!(self.out, "\"{value}\"");
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.name(field);
        let _ = write!(self.out, "\"{value}\"");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        string(self.out, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        self.scratch.clear();
        let _ = write!(self.scratch, "{value:?}");
        string(self.out, &self.scratch);
    }
}

/// The fields as one JSON object.
fn object<R: RecordFields>(fields: R) -> String {
    let mut out = String::from("{");
    let mut members = Members::new(&mut out);
    fields.record(&mut members);
    out.push('}');
    out
}

/// Whether the object `current` may hold a member named like one of
/// `fields`: a match in a value's text only costs the slow path.
fn may_repeat(current: &str, fields: &tracing::span::Record<'_>) -> bool {
    struct Names<'a>(&'a str, bool);
    impl Visit for Names<'_> {
        fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
            let name = field.name();
            self.1 |= self.0.match_indices(name).any(|(at, _)| {
                self.0[..at].ends_with('"') && self.0[at + name.len()..].starts_with("\":")
            });
        }
    }
    let mut names = Names(current, false);
    fields.record(&mut names);
    names.1
}

impl<'writer> FormatFields<'writer> for AppendJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        writer.write_str(&object(fields))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let new = object(fields);
        if new.len() <= 2 {
            return Ok(());
        }
        let current = &mut current.fields;
        if !current.starts_with('{') || !current.ends_with('}') {
            *current = new;
        } else if may_repeat(current, fields) {
            // A field recorded again: its new value replaces the old one.
            let mut merged: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(current).map_err(|_| fmt::Error)?;
            let added: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&new).map_err(|_| fmt::Error)?;
            merged.extend(added);
            *current = serde_json::Value::Object(merged).to_string();
        } else {
            current.pop();
            if current.len() > 1 {
                current.push(',');
            }
            current.push_str(&new[1..]);
        }
        Ok(())
    }
}

impl<S> FormatEvent<S, AppendJsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, AppendJsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` crate record (rustls's warnings, say) names its own
        // target and level, as tracing-subscriber's format shows them.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut line = String::with_capacity(1024);
        line.push_str("{\"timestamp\":\"");
        line.push_str(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",");
        let mut members = Members::new(&mut line);
        event.record(&mut members);
        if !members.first {
            line.push(',');
        }
        line.push_str("\"target\":");
        string(&mut line, meta.target());
        if let Some(leaf) = ctx.lookup_current() {
            line.push_str(",\"spans\":[");
            for (n, span) in leaf.scope().from_root().enumerate() {
                if n > 0 {
                    line.push(',');
                }
                let extensions = span.extensions();
                let fields = extensions
                    .get::<FormattedFields<AppendJsonFields>>()
                    .map_or("{}", |f| f.fields.as_str());
                let members = fields
                    .strip_prefix('{')
                    .and_then(|f| f.strip_suffix('}'))
                    .unwrap_or("");
                line.push('{');
                line.push_str(members);
                if !members.is_empty() {
                    line.push(',');
                }
                line.push_str("\"name\":");
                string(&mut line, span.name());
                line.push('}');
            }
            line.push(']');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::CapturedLog;
    use proptest::prelude::*;

    /// Every kind of field, strings that need escaping, spans nested and
    /// recorded in steps (one field twice), and an event outside any span.
    fn events() {
        let outer = tracing::info_span!(
            "call \"outer\"",
            rpc = "ecsgateway.v1/Modify",
            a = tracing::field::Empty,
            b = tracing::field::Empty,
        );
        outer.record("a", 1);
        outer.record("b", "two \"quoted\"\n\u{1}é");
        outer.record("a", -3);
        let inner = tracing::info_span!(parent: &outer, "inner", flag = true);
        inner.in_scope(|| {
            tracing::info!(
                target: "decision",
                decision = "Allow",
                count = 7u64,
                negative = -7i64,
                ratio = 0.25,
                infinite = f64::INFINITY,
                big = u128::MAX,
                yes = false,
                shown = %"display\tvalue",
                debugged = ?vec!["a", "b"],
                "a message with \"quotes\" and \\ backslash"
            );
        });
        outer.in_scope(|| tracing::warn!("no fields but the message"));
        tracing::error!(code = "X", "outside any span");
    }

    fn lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn writes_the_line_tracing_subscribers_json_format_writes() {
        let ours = CapturedLog::default();
        let writer = ours.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(AppendJsonFields)
            .event_format(JsonLine)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let theirs = CapturedLog::default();
        let writer = theirs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);

        let text = ours.text();
        // The field recorded twice is written once, with its last value.
        let first = text.lines().next().unwrap_or_default();
        assert_eq!(first.matches("\"a\":").count(), 1, "{first}");
        let (mut ours, mut theirs) = (lines(&text), lines(&theirs.text()));
        assert_eq!(ours.len(), 3);
        for line in ours.iter_mut().chain(theirs.iter_mut()) {
            let timestamp = line["timestamp"].as_str().unwrap().to_owned();
            assert!(
                chrono::DateTime::parse_from_rfc3339(&timestamp).is_ok(),
                "{timestamp}"
            );
            line["timestamp"] = serde_json::Value::Null;
        }
        assert_eq!(ours, theirs);
        assert_eq!(ours[0]["spans"][0]["a"], -3);
        assert!(ours[2].get("spans").is_none());
    }

    #[test]
    fn line_ends_and_reordering_characters_are_escaped() {
        let mut out = String::new();
        string(&mut out, "a\u{2028}b\u{85}c\u{202e}d\u{2067}é\"\n");
        assert_eq!(out, r#""a\u2028b\u0085c\u202ed\u2067é\"\n""#);
        assert_eq!(
            serde_json::from_str::<String>(&out).unwrap(),
            "a\u{2028}b\u{85}c\u{202e}d\u{2067}é\"\n"
        );
    }

    proptest! {
        #[test]
        fn strings_read_back_as_written(value in any::<String>()) {
            let mut out = String::new();
            string(&mut out, &value);
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), value);
        }
    }
}
