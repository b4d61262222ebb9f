//! Span fields for the JSON log lines, kept as one JSON object that grows by
//! appending.
//!
//! `tracing-subscriber`'s own JSON field formatter parses a span's fields
//! back into a map and writes them again on every `Span::record`; the call's
//! span records about ten fields as the call goes through the stages, and
//! that re-parsing was about 7 % of a core under load. Here a record appends
//! its members to the object instead. A field recorded twice then appears
//! twice in the text; the line's formatter reads the object with
//! `serde_json`, where the later value wins, as it would on the span.

use std::fmt;

use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{JsonVisitor, Writer};

/// The JSON layer's field formatter (see the module's documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendJsonFields;

fn object<R: RecordFields>(fields: R, out: &mut dyn fmt::Write) -> fmt::Result {
    let mut visitor = JsonVisitor::new(out);
    fields.record(&mut visitor);
    visitor.finish()
}

/// Appends the members of the JSON object `new` to the object `current`.
fn append_members(current: &mut String, new: &str) {
    let Some(members) = new
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|members| !members.is_empty())
    else {
        return;
    };
    if !current.ends_with('}') {
        current.clear();
        current.push('{');
        current.push_str(members);
        current.push('}');
        return;
    }
    current.pop();
    if current.len() > 1 {
        current.push(',');
    }
    current.push_str(members);
    current.push('}');
}

impl<'writer> FormatFields<'writer> for AppendJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        object(fields, &mut writer)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut new = String::new();
        object(fields, &mut new)?;
        append_members(&mut current.fields, &new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_members_to_the_object() {
        let mut current = String::new();
        append_members(&mut current, r#"{"a":1}"#);
        assert_eq!(current, r#"{"a":1}"#);
        append_members(&mut current, "{}");
        assert_eq!(current, r#"{"a":1}"#);
        append_members(&mut current, r#"{"b":"x","c":true}"#);
        assert_eq!(current, r#"{"a":1,"b":"x","c":true}"#);
        let mut empty_object = "{}".to_owned();
        append_members(&mut empty_object, r#"{"a":1}"#);
        assert_eq!(empty_object, r#"{"a":1}"#);
        let parsed: serde_json::Value = serde_json::from_str(&current).unwrap();
        assert_eq!(parsed["b"], "x");
    }

    #[test]
    fn a_field_recorded_again_reads_as_its_last_value() {
        let mut current = r#"{"a":1}"#.to_owned();
        append_members(&mut current, r#"{"a":2}"#);
        let parsed: serde_json::Value = serde_json::from_str(&current).unwrap();
        assert_eq!(parsed["a"], 2);
    }

    /// The log line of an event in a span that recorded fields in three
    /// steps carries all of them, as JSON.
    #[test]
    fn log_lines_carry_every_recorded_span_field() {
        let buffer = crate::telemetry::CapturedLog::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .fmt_fields(AppendJsonFields)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "call",
                a = 1,
                b = tracing::field::Empty,
                c = tracing::field::Empty
            );
            span.record("b", "two \"quoted\"");
            span.record("c", true);
            span.record("a", 3);
            span.in_scope(|| tracing::info!(x = 1, "inside"));
        });
        let text = buffer.text();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let span = &line["spans"][0];
        assert_eq!(span["a"], 3, "{text}");
        assert_eq!(span["b"], "two \"quoted\"", "{text}");
        assert_eq!(span["c"], true, "{text}");
        assert_eq!(line["x"], 1, "{text}");
    }
}
