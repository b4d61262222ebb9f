//! `ecs-gateway policy import-ram`: a RAM policy document as Cedar policies
//! that, attached to a group or a principal, decide as RAM decides the
//! document — or a refusal naming the statement and the construct, never an
//! approximation.
//!
//! Each statement becomes one policy (`permit` for `Allow`, `forbid` for
//! `Deny`; inside a layer Cedar's rule is RAM's: an explicit deny wins,
//! nothing allowed is an implicit deny):
//!
//! - `Action`/`NotAction`: RAM matches actions case-insensitively with `*`
//!   and `?`. The gateway only ever authorizes the actions of its catalogue,
//!   so the patterns are resolved here, exactly, to the catalogue actions
//!   they match: `action in [...]`. A statement that matches none is
//!   written as a comment, since it can never take part in a decision.
//! - `Resource`/`NotResource`: `resource.arn like "…"`, with `*` as Cedar's
//!   `*`. Cedar's `like` has no `?`: a `?` matches exactly one character of
//!   an ARN, and an ARN the gateway builds holds only `a`–`z`, `0`–`9`, `-`,
//!   `:` and `/` (validated region and instance IDs, a numeric account), so a
//!   pattern with one `?` becomes the 39 patterns with that character in its
//!   place, OR-ed. Two or more `?` in one pattern are refused (1,521
//!   patterns and more).
//! - `Condition`: operators AND, the values of one key OR (a negated
//!   operator: none may match). Keys: `acs:SourceIp` (`IpAddress`,
//!   `NotIpAddress`), `acs:CurrentTime` (`Date*`, compared to the second,
//!   the context's precision), `acs:SecureTransport`, `acs:MFAPresent`,
//!   `ecs:AssociatePublicIpAddress` (`Bool`) and `acs:ResourceTag/<key>`
//!   (`String*`). When the instance has no such tag, the positive operators
//!   do not match and the negated ones do. `StringEqualsIgnoreCase` lists
//!   the value's case variants (at most 10 letters); `StringLike` with `?`
//!   is refused (a tag's alphabet is open). No numeric key applies to the
//!   catalogue's actions, so `Numeric*` is refused, as are unknown keys,
//!   operators, elements and qualifiers (`ForAnyValue:`, `…IfExists`).
//!
//! An instance the gateway does not know (not in `entities.json`, not looked
//! up: `resource.known` is false) has no tags and no billing facts for the
//! policies, while RAM sees the real ones. So a condition that reads them
//! fails closed there: a `Deny` applies as if it held, an `Allow` as if it
//! did not. Two keys read the instance:
//!
//! - `acs:ResourceTag/<key>`: the tag conditions of a statement are guarded
//!   together, `(!resource.known || <tags>)` in a `forbid`,
//!   `(resource.known && <tags>)` in a `permit`. The statement's other
//!   conditions stay as they are, so a `Deny` still needs them: only what
//!   the gateway cannot know is assumed.
//! - `ecs:AssociatePublicIpAddress`: for an unknown instance the gateway
//!   says true whenever the instance might be one ECS gives a public IP by
//!   itself (see `decide::allocates_public_ip`), so its true may really be
//!   false, unless the caller asked for a public IP. A `Bool` on `false`
//!   in a `Deny` also applies then, and on `true` in an `Allow` does not.
//!
//! Every other key reads the request alone, and `Resource` the ARN, which
//! the gateway builds from the request for every instance.

use std::fmt::Write as _;

use serde_json::Value;

use crate::policy::catalogue;
use condition::{Conjunct, condition};

mod condition;

/// A JSON value whose objects may not repeat a key: serde_json would keep
/// the last one silently, while a reader of the document sees the first.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Strict;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Strict, A::Error> {
                let mut items = Vec::new();
                while let Some(Strict(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Strict(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Strict, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some((key, Strict(value))) = map.next_entry::<String, Strict>()? {
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "the key {key:?} appears twice in one object"
                        )));
                    }
                    object.insert(key, value);
                }
                Ok(Strict(Value::Object(object)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Whom the imported policies are attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `principal in Ram::Group::"<name>"`.
    Group(String),
    /// `principal == Ram::User::"<arn>"` or `Ram::Role::"<arn>"`.
    Principal(String),
}

/// Why a document cannot be imported exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The characters of any ARN the gateway builds.
const ARN_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789-:/";

fn cedar_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RAM's wildcard match: `*` any sequence, `?` one character.
pub fn wildcard_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether RAM's action pattern matches `action` (case-insensitively; the
/// importer refuses non-ASCII patterns, whose case folding RAM does not
/// document).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase().chars().collect::<Vec<char>>();
    wildcard_match(&lower(pattern), &lower(action))
}

fn check_action_patterns(patterns: &[String], element: &str) -> Result<(), String> {
    for pattern in patterns {
        if pattern.is_empty() {
            return Err(format!(
                "{element}: an empty pattern matches nothing in RAM: remove it"
            ));
        }
        if !pattern.is_ascii() {
            return Err(format!(
                "{element} {pattern:?}: non-ASCII characters in an action pattern are not supported (RAM's case folding for them is not documented)"
            ));
        }
    }
    Ok(())
}

/// One string or an array of strings (or of scalars, for conditions).
fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{what}: expected a string, found {other}")),
    };
    match value {
        Value::Array(items) if items.is_empty() => Err(format!("{what}: an empty list")),
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// `resource.arn like …` for one RAM resource pattern.
fn resource_pattern(pattern: &str) -> Result<Option<String>, String> {
    if pattern.is_empty() {
        return Err("an empty Resource pattern matches nothing in RAM: remove it".into());
    }
    if pattern.chars().all(|c| c == '*') {
        return Ok(None);
    }
    let questions = pattern.matches('?').count();
    if questions > 1 {
        return Err(format!(
            "Resource {pattern:?}: more than one `?` in a pattern is not supported (each `?` becomes {} exact patterns)",
            ARN_ALPHABET.len()
        ));
    }
    let like = |p: &str| format!("resource.arn like {}", cedar_string(p));
    if questions == 0 {
        return Ok(Some(like(pattern)));
    }
    let alternatives: Vec<String> = ARN_ALPHABET
        .chars()
        .map(|c| like(&pattern.replacen('?', &c.to_string(), 1)))
        .collect();
    Ok(Some(any_of(alternatives)))
}

/// `!(expr)`: `!` binds tighter than `==`, `<` and `like`.
fn not(expr: &str) -> String {
    format!("!({expr})")
}

/// The disjunction of `parts`, as a balanced tree: Cedar evaluates `a || b
/// || c …` as a chain nested to its length, and refuses to go deeper than
/// its recursion limit (39 ARN patterns, or a value's case variants, reach it).
fn any_of(parts: Vec<String>) -> String {
    fn balanced(parts: &[String]) -> String {
        match parts {
            [] => "false".to_owned(),
            [one] => one.clone(),
            [a, b] => format!("({a} || {b})"),
            _ => {
                let (left, right) = parts.split_at(parts.len() / 2);
                format!("({} || {})", balanced(left), balanced(right))
            }
        }
    }
    balanced(&parts)
}

/// `action in [Action::"…", …]`.
fn action_in(names: &[&str]) -> String {
    let names: Vec<String> = names
        .iter()
        .map(|name| format!("Action::{}", cedar_string(name)))
        .collect();
    format!("action in [{}]", names.join(", "))
}

/// One statement as Cedar, or `None` when it matches no catalogue action.
fn statement(value: &Value, principal: &str) -> Result<(bool, Option<String>), String> {
    let Value::Object(fields) = value else {
        return Err("a statement must be a JSON object".into());
    };
    for key in fields.keys() {
        if !matches!(
            key.as_str(),
            "Sid" | "Effect" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition"
        ) {
            return Err(format!(
                "element {key:?} is not supported in an identity policy (known: Sid, Effect, Action, NotAction, Resource, NotResource, Condition)"
            ));
        }
    }
    let allow = match fields.get("Effect").and_then(Value::as_str) {
        Some("Allow") => true,
        Some("Deny") => false,
        _ => return Err("Effect must be \"Allow\" or \"Deny\"".into()),
    };
    let Actions {
        names: actions,
        scope,
        excluded,
    } = match (fields.get("Action"), fields.get("NotAction")) {
        (Some(patterns), None) => actions(&strings(patterns, "Action")?)?,
        (None, Some(patterns)) => not_actions(&strings(patterns, "NotAction")?)?,
        _ => return Err("exactly one of Action and NotAction is required".into()),
    };
    let mut conditions: Vec<String> = excluded.into_iter().collect();
    conditions.extend(resources(fields)?);
    let tags = condition_block(fields, allow, &mut conditions)?;
    // An unknown instance has no tags for the policies, but real ones for
    // RAM: a Deny reading them applies, an Allow does not (fail closed).
    // Only the tag conditions are guarded, so a Deny still needs its other
    // conditions to hold.
    if !tags.is_empty() {
        let tags = match tags.as_slice() {
            [one] => one.clone(),
            all => format!("({})", all.join(" && ")),
        };
        conditions.push(if allow {
            format!("(resource.known && {tags})")
        } else {
            format!("(!resource.known || {tags})")
        });
    }
    if actions.is_empty() {
        return Ok((allow, None));
    }
    let action = scope.unwrap_or_else(|| action_in(&actions));
    let mut text = format!(
        "{} (\n  {principal},\n  {action},\n  resource\n)",
        if allow { "permit" } else { "forbid" }
    );
    if !conditions.is_empty() {
        let _ = write!(text, "\nwhen {{ {} }}", conditions.join(" && "));
    }
    text.push_str(";\n");
    Ok((allow, Some(text)))
}

/// The catalogue actions a statement names, and how its scope says so.
struct Actions {
    /// The catalogue's actions it covers today.
    names: Vec<&'static str>,
    /// The action scope, when not a list of `names`: `action` (any), or
    /// the schema's groups.
    scope: Option<String>,
    /// A condition excluding actions (NotAction).
    excluded: Option<String>,
}

/// The schema's action groups (`ecs:*`, …).
fn action_groups() -> Vec<&'static str> {
    catalogue::ACTIONS
        .iter()
        .flat_map(|a| a.wildcards.iter().copied())
        .collect()
}

/// An `Action` element. Patterns that are "*" or exactly one of the
/// schema's action groups stay groups, so that a future action of the
/// catalogue in that group is covered as RAM would cover it; other patterns
/// are resolved against the catalogue as it is now.
fn actions(patterns: &[String]) -> Result<Actions, String> {
    check_action_patterns(patterns, "Action")?;
    let groups = action_groups();
    let mut scope = None;
    if patterns.iter().any(|p| p == "*") {
        scope = Some("action".to_owned());
    } else if let Some(named) = patterns
        .iter()
        .map(|p| groups.iter().find(|g| g.eq_ignore_ascii_case(p)).copied())
        .collect::<Option<Vec<&str>>>()
    {
        let mut named = named;
        named.sort_unstable();
        named.dedup();
        scope = Some(action_in(&named));
    }
    let names = catalogue::ACTIONS
        .iter()
        .filter(|a| patterns.iter().any(|p| action_matches(p, a.name)))
        .map(|a| a.name)
        .collect();
    Ok(Actions {
        names,
        scope,
        excluded: None,
    })
}

/// A `NotAction` element: every action but those the patterns name, as a
/// condition on any action: an action added to the catalogue later that
/// the patterns do not name is covered, as RAM would cover it (a list of
/// today's other actions would leave it out, and a Deny would fail open
/// for it). Patterns naming a group exclude the group, future members
/// included.
fn not_actions(patterns: &[String]) -> Result<Actions, String> {
    check_action_patterns(patterns, "NotAction")?;
    let groups = action_groups();
    let mut excluded: Vec<&str> = patterns
        .iter()
        .filter_map(|p| groups.iter().find(|g| g.eq_ignore_ascii_case(p)).copied())
        .chain(
            catalogue::ACTIONS
                .iter()
                .filter(|a| patterns.iter().any(|p| action_matches(p, a.name)))
                .map(|a| a.name),
        )
        .collect();
    excluded.sort_unstable();
    excluded.dedup();
    let names = catalogue::ACTIONS
        .iter()
        .filter(|a| !patterns.iter().any(|p| action_matches(p, a.name)))
        .map(|a| a.name)
        .collect();
    Ok(Actions {
        names,
        scope: Some("action".to_owned()),
        excluded: (!excluded.is_empty()).then(|| format!("!({})", action_in(&excluded))),
    })
}

/// The `Resource` or `NotResource` element as a condition (`None`: every
/// resource).
fn resources(fields: &serde_json::Map<String, Value>) -> Result<Option<String>, String> {
    let patterns = |value: &Value, element: &str| -> Result<Option<Vec<String>>, String> {
        strings(value, element)?
            .iter()
            .map(|p| resource_pattern(p))
            .collect::<Result<_, _>>()
    };
    match (fields.get("Resource"), fields.get("NotResource")) {
        // A `*` among the patterns matches every resource.
        (Some(value), None) => Ok(patterns(value, "Resource")?.map(any_of)),
        (None, Some(value)) => Ok(Some(match patterns(value, "NotResource")? {
            Some(parts) => not(&any_of(parts)),
            // NotResource "*": no resource.
            None => "false".into(),
        })),
        _ => Err("exactly one of Resource and NotResource is required".into()),
    }
}

/// The `Condition` element: its settled conditions added to `conditions`,
/// its conditions on the instance's tags returned (to be guarded together).
fn condition_block(
    fields: &serde_json::Map<String, Value>,
    allow: bool,
    conditions: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    let mut tags = Vec::new();
    let Some(condition_block) = fields.get("Condition") else {
        return Ok(tags);
    };
    let Value::Object(operators) = condition_block else {
        return Err("Condition must be an object of operators".into());
    };
    for (operator, keys) in operators {
        let Value::Object(keys) = keys else {
            return Err(format!("Condition {operator:?} must be an object of keys"));
        };
        if keys.is_empty() {
            return Err(format!("Condition {operator:?} has no key"));
        }
        for (key, values) in keys {
            let values = strings(values, &format!("Condition {operator:?} {key:?}"))?;
            match condition(operator, key, &values, allow)? {
                Conjunct::Settled(expr) => conditions.push(expr),
                Conjunct::Tags(expr) => tags.push(expr),
            }
        }
    }
    Ok(tags)
}

/// The Cedar policies of a RAM policy document.
///
/// # Errors
///
/// A [`Refusal`] naming the statement (index and `Sid`) and the construct
/// that cannot be imported exactly.
pub fn import(document: &str, target: &Target, id_prefix: &str) -> Result<String, Refusal> {
    let refuse = |message: String| Refusal(message);
    let doc: Value = serde_json::from_str::<Strict>(document)
        .map_err(|e| refuse(format!("not a JSON document: {e}")))?
        .0;
    let Value::Object(top) = &doc else {
        return Err(refuse("a policy document must be a JSON object".into()));
    };
    for key in top.keys() {
        if key != "Version" && key != "Statement" {
            return Err(refuse(format!(
                "element {key:?} is not supported (a policy document has Version and Statement)"
            )));
        }
    }
    if top.get("Version").and_then(Value::as_str) != Some("1") {
        return Err(refuse("Version must be \"1\"".into()));
    }
    let statements: Vec<&Value> = match top.get("Statement") {
        Some(Value::Array(items)) if !items.is_empty() => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => {
            return Err(refuse(
                "Statement must be a statement or a non-empty list of them".into(),
            ));
        }
    };
    let principal = match target {
        Target::Group(name) => format!("principal in Ram::Group::{}", cedar_string(name)),
        Target::Principal(arn) => {
            let kind = crate::policy::store::principal_type(arn)
                .map(|(kind, _)| kind)
                .ok_or_else(|| {
                    refuse(format!(
                        "{arn:?} is not a RAM user or role ARN (acs:ram::<account>:role/<name>)"
                    ))
                })?;
            format!("principal == {kind}::{}", cedar_string(arn))
        }
    };
    let mut out = String::new();
    for (index, value) in statements.iter().enumerate() {
        let n = index + 1;
        let sid = value.get("Sid").and_then(Value::as_str);
        let name = match sid {
            Some(sid) => format!("statement {n} (Sid {sid:?})"),
            None => format!("statement {n}"),
        };
        let (_, text) = statement(value, &principal).map_err(|e| refuse(format!("{name}: {e}")))?;
        let quoted = serde_json::to_string(value).unwrap_or_default();
        let _ = writeln!(out, "// RAM {name}: {}", quoted.replace('\n', " "));
        match text {
            Some(text) => {
                let _ = write!(
                    out,
                    "@id({})\n{text}\n",
                    cedar_string(&format!("{id_prefix}.{n}"))
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "// matches no action the gateway authorizes: it can take no part in a decision\n"
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::condition::{ASSOCIATE_IS_REAL, case_variants, cedar_datetime, ip_literal};
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn wildcards_match_as_ram_does() {
        for (pattern, text, expected) in [
            ("ecs:*", "ecs:ModifyInstanceNetworkSpec", true),
            ("ecs:Modify*", "ecs:ModifyInstanceNetworkSpec", true),
            ("ecs:?odify*", "ecs:ModifyInstanceNetworkSpec", true),
            ("ecs:??odify*", "ecs:ModifyInstanceNetworkSpec", false),
            ("*Spec", "ecs:ModifyInstanceNetworkSpec", true),
            ("*a*b*", "xaxxbx", true),
            ("*a*b", "xaxxbx", false),
            ("", "", true),
            ("?", "", false),
        ] {
            assert_eq!(
                wildcard_match(&chars(pattern), &chars(text)),
                expected,
                "{pattern} {text}"
            );
        }
        assert!(action_matches(
            "ECS:modify*",
            "ecs:ModifyInstanceNetworkSpec"
        ));
    }

    #[test]
    fn case_variants_are_every_spelling() {
        assert_eq!(case_variants("a1B").unwrap(), ["A1B", "A1b", "a1B", "a1b"]);
        assert!(case_variants("abcdefghijk").is_err());
    }

    #[test]
    fn times_become_utc_datetimes() {
        assert_eq!(
            cedar_datetime("2026-12-01T08:00:00+08:00").unwrap(),
            "datetime(\"2026-12-01T00:00:00Z\")"
        );
        for refused in [
            "yesterday",
            "2026-12-01",
            "2026-12-01T08:00:00",
            "2026-12-01T08:00:00.5Z",
        ] {
            assert!(cedar_datetime(refused).is_err(), "{refused}");
        }
    }

    /// An unknown instance fails closed on the conditions that read it, and
    /// only on those: the request's conditions keep their meaning.
    #[test]
    fn only_conditions_on_the_instance_are_guarded() {
        let cedar = |effect: &str, condition: serde_json::Value| {
            let value = serde_json::json!({
                "Effect": effect, "Action": "ecs:*", "Resource": "*", "Condition": condition
            });
            statement(&value, "principal").unwrap().1.unwrap()
        };
        // Written in the order a sorted map keeps them.
        let condition = serde_json::json!({
            "IpAddress": {"acs:SourceIp": "10.0.0.0/8"},
            "StringEquals": {"acs:ResourceTag/env": "production"},
            "StringNotLike": {"acs:ResourceTag/team": "a*"}
        });
        let tags = r#"((resource.hasTag("env") && resource.getTag("env") == "production") && !((resource.hasTag("team") && resource.getTag("team") like "a*")))"#;
        let ip = r#"context["acs:SourceIp"].isInRange(ip("10.0.0.0/8"))"#;
        assert!(
            cedar("Deny", condition.clone())
                .contains(&format!("when {{ {ip} && (!resource.known || {tags}) }};")),
            "{}",
            cedar("Deny", condition.clone())
        );
        assert!(
            cedar("Allow", condition.clone())
                .contains(&format!("when {{ {ip} && (resource.known && {tags}) }};")),
            "{}",
            cedar("Allow", condition)
        );
        let associate =
            |value: bool| serde_json::json!({"Bool": {"ecs:AssociatePublicIpAddress": value}});
        let key = r#"context["ecs:AssociatePublicIpAddress"]"#;
        assert!(cedar("Deny", associate(true)).contains(&format!("when {{ {key} }};")));
        assert!(
            cedar("Deny", associate(false))
                .contains(&format!("when {{ (!{key} || !{ASSOCIATE_IS_REAL}) }};"))
        );
        assert!(
            cedar("Allow", associate(true))
                .contains(&format!("when {{ ({key} && {ASSOCIATE_IS_REAL}) }};"))
        );
        assert!(cedar("Allow", associate(false)).contains(&format!("when {{ !{key} }};")));
        let secure = serde_json::json!({"Bool": {"acs:SecureTransport": true}});
        assert!(cedar("Allow", secure).contains(r#"when { context["acs:SecureTransport"] };"#));
    }

    #[test]
    fn ip_values_are_those_cedar_accepts() {
        for ok in [
            "10.0.0.0/8",
            "10.0.0.1",
            "::1",
            "2001:db8::/32",
            "0.0.0.0/0",
        ] {
            assert!(ip_literal(ok).is_ok(), "{ok}");
        }
        for refused in [
            "10.0.0.0/08",
            "10.0.0.0/33",
            "::ffff:10.0.0.0/104",
            "10.0.0.0/+8",
            "x",
        ] {
            assert!(ip_literal(refused).is_err(), "{refused}");
        }
    }
}
