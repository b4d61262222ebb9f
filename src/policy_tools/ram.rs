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

/// Letters at most in a `StringEqualsIgnoreCase` value (2^10 variants).
const MAX_CASE_LETTERS: u32 = 10;

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

/// The case variants of `value` (ASCII letters; other letters are refused).
fn case_variants(value: &str) -> Result<Vec<String>, String> {
    if value
        .chars()
        .any(|c| !c.is_ascii() && c.to_lowercase().ne(c.to_uppercase()))
    {
        return Err(format!(
            "{value:?}: StringEqualsIgnoreCase on non-ASCII letters is not supported (their case folding has no exact list of spellings)"
        ));
    }
    let letters = value.chars().filter(char::is_ascii_alphabetic).count();
    if letters > MAX_CASE_LETTERS as usize {
        return Err(format!(
            "{value:?}: StringEqualsIgnoreCase on a value with more than {MAX_CASE_LETTERS} letters is not supported (Cedar compares case-sensitively; each letter doubles the exact variants)"
        ));
    }
    let mut variants = vec![String::new()];
    for c in value.chars() {
        let options: Vec<String> = if c.is_ascii_alphabetic() {
            vec![
                c.to_ascii_lowercase().to_string(),
                c.to_ascii_uppercase().to_string(),
            ]
        } else {
            vec![c.to_string()]
        };
        variants = variants
            .iter()
            .flat_map(|v| options.iter().map(move |o| format!("{v}{o}")))
            .collect();
    }
    variants.sort();
    variants.dedup();
    Ok(variants)
}

/// A RAM `acs:CurrentTime` value as a Cedar datetime literal, in UTC. Only
/// whole seconds with an explicit offset (`Z` or `+08:00`): the context's
/// time is to the second, and a value without an offset has no single
/// meaning.
fn cedar_datetime(value: &str) -> Result<String, String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
        format!(
            "{value:?} is not an ISO 8601 time with an offset, such as 2026-12-01T08:00:00+08:00"
        )
    })?;
    if parsed.timestamp_subsec_nanos() != 0 {
        return Err(format!(
            "{value:?}: fractions of a second are not supported (acs:CurrentTime is to the second)"
        ));
    }
    let utc = parsed.with_timezone(&chrono::Utc);
    Ok(format!(
        "datetime({})",
        cedar_string(&utc.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    ))
}

fn ip_literal(value: &str) -> Result<String, String> {
    let ok = value.parse::<std::net::IpAddr>().is_ok()
        || value.split_once('/').is_some_and(|(ip, prefix)| {
            let max = match ip.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => 32,
                Ok(std::net::IpAddr::V6(_)) => 128,
                Err(_) => return false,
            };
            prefix.parse::<u8>().is_ok_and(|p| p <= max)
                && prefix.bytes().all(|b| b.is_ascii_digit())
                && (prefix == "0" || !prefix.starts_with('0'))
        });
    // Cedar's ip() refuses an IPv4 address written inside an IPv6 one.
    let ok = ok && !(value.contains(':') && value.contains('.'));
    if ok {
        Ok(format!("ip({})", cedar_string(value)))
    } else {
        Err(format!("{value:?} is not an IP address or CIDR block"))
    }
}

/// One condition's Cedar, by what it reads.
enum Conjunct {
    /// The request's keys, or the instance's in a form already fail-closed
    /// for the statement's effect: used as it is.
    Settled(String),
    /// The instance's tags: guarded with `resource.known` by the statement,
    /// together with its other tag conditions.
    Tags(String),
}

/// `ecs:AssociatePublicIpAddress` is the instance's real value: the gateway
/// knows the instance (and decides from its billing facts), or the caller
/// asked for a public IP (true whatever the instance). Otherwise a true may
/// really be false; a false is always real: the gateway counts an unknown
/// instance as one ECS gives a public IP by itself (see
/// `decide::allocates_public_ip`).
const ASSOCIATE_IS_REAL: &str = "(resource.known || (context.request has allocate_public_ip && context.request.allocate_public_ip))";

/// The Cedar expression of one operator over one key, in a statement that
/// allows (`allow`) or denies.
fn condition(
    operator: &str,
    key: &str,
    values: &[String],
    allow: bool,
) -> Result<Conjunct, String> {
    let negated = matches!(
        operator,
        "StringNotEquals"
            | "StringNotEqualsIgnoreCase"
            | "StringNotLike"
            | "NotIpAddress"
            | "DateNotEquals"
    );
    let wrap = |alternatives: Vec<String>| {
        let any = any_of(alternatives);
        if negated { not(&any) } else { any }
    };
    let lower_key = key.to_ascii_lowercase();
    if operator.contains(':') || operator.ends_with("IfExists") {
        return Err(format!(
            "operator {operator:?}: qualifiers (ForAnyValue:, ForAllValues:, …IfExists) are not supported"
        ));
    }
    if operator.starts_with("Numeric") {
        return Err(format!(
            "operator {operator:?}: no numeric condition key applies to the actions the gateway authorizes"
        ));
    }
    if let Some(tag) = key
        .get(..16)
        .filter(|p| p.eq_ignore_ascii_case("acs:ResourceTag/"))
        .map(|_| &key[16..])
    {
        if tag.is_empty() {
            return Err(format!("condition key {key:?}: the tag key is empty"));
        }
        let get = format!("resource.getTag({})", cedar_string(tag));
        let alternatives: Vec<String> = match operator {
            "StringEquals" | "StringNotEquals" => values
                .iter()
                .map(|v| format!("{get} == {}", cedar_string(v)))
                .collect(),
            "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
                let mut all = Vec::new();
                for v in values {
                    all.extend(
                        case_variants(v)?
                            .into_iter()
                            .map(|variant| format!("{get} == {}", cedar_string(&variant))),
                    );
                }
                all
            }
            "StringLike" | "StringNotLike" => {
                let mut all = Vec::new();
                for v in values {
                    if v.contains('?') {
                        return Err(format!(
                            "{operator} value {v:?}: `?` cannot be expressed exactly in Cedar over a tag's open alphabet"
                        ));
                    }
                    all.push(format!("{get} like {}", cedar_string(v)));
                }
                all
            }
            _ => {
                return Err(format!(
                    "operator {operator:?} does not apply to {key:?} (a string)"
                ));
            }
        };
        // Without the tag: no positive operator matches, every negated one
        // does.
        let matched = format!(
            "(resource.hasTag({}) && {})",
            cedar_string(tag),
            any_of(alternatives)
        );
        return Ok(Conjunct::Tags(if negated {
            not(&matched)
        } else {
            matched
        }));
    }
    let expr = match lower_key.as_str() {
        "acs:sourceip" => match operator {
            "IpAddress" | "NotIpAddress" => Ok(wrap(
                values
                    .iter()
                    .map(|v| {
                        Ok(format!(
                            "context[\"acs:SourceIp\"].isInRange({})",
                            ip_literal(v)?
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            )),
            _ => Err(format!(
                "operator {operator:?} does not apply to acs:SourceIp (use IpAddress or NotIpAddress)"
            )),
        },
        "acs:currenttime" => {
            let cmp = match operator {
                "DateEquals" | "DateNotEquals" => "==",
                "DateLessThan" => "<",
                "DateLessThanEquals" => "<=",
                "DateGreaterThan" => ">",
                "DateGreaterThanEquals" => ">=",
                _ => {
                    return Err(format!(
                        "operator {operator:?} does not apply to acs:CurrentTime (use a Date operator)"
                    ));
                }
            };
            Ok(wrap(
                values
                    .iter()
                    .map(|v| {
                        Ok(format!(
                            "context[\"acs:CurrentTime\"] {cmp} {}",
                            cedar_datetime(v)?
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ))
        }
        "acs:securetransport" | "acs:mfapresent" | "ecs:associatepublicipaddress" => {
            let name = match lower_key.as_str() {
                "acs:securetransport" => "acs:SecureTransport",
                "acs:mfapresent" => "acs:MFAPresent",
                _ => "ecs:AssociatePublicIpAddress",
            };
            if operator != "Bool" {
                return Err(format!(
                    "operator {operator:?} does not apply to {name} (use Bool)"
                ));
            }
            let mut wanted = (false, false);
            let expr = any_of(
                values
                    .iter()
                    .map(|v| match v.to_ascii_lowercase().as_str() {
                        "true" => {
                            wanted.0 = true;
                            Ok(format!("context[{}]", cedar_string(name)))
                        }
                        "false" => {
                            wanted.1 = true;
                            Ok(format!("!context[{}]", cedar_string(name)))
                        }
                        _ => Err(format!("Bool value {v:?}: expected true or false")),
                    })
                    .collect::<Result<_, String>>()?,
            );
            // Of these keys only ecs:AssociatePublicIpAddress reads the
            // instance: for an unknown one its true may really be false. A
            // test of both values holds either way; a `Deny` on false alone
            // must then apply, an `Allow` on true alone must not.
            Ok(match wanted {
                (true, false) if name == "ecs:AssociatePublicIpAddress" && allow => {
                    format!("({expr} && {ASSOCIATE_IS_REAL})")
                }
                (false, true) if name == "ecs:AssociatePublicIpAddress" && !allow => {
                    format!("({expr} || !{ASSOCIATE_IS_REAL})")
                }
                _ => expr,
            })
        }
        _ => Err(format!(
            "condition key {key:?} is not known to the gateway (known: acs:SourceIp, acs:CurrentTime, acs:SecureTransport, acs:MFAPresent, ecs:AssociatePublicIpAddress, acs:ResourceTag/<key>)"
        )),
    };
    expr.map(Conjunct::Settled)
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
    // Patterns that are "*" or exactly one of the schema's action groups
    // stay groups, so that a future action of the catalogue in that group is
    // covered as RAM would cover it; other patterns are resolved against the
    // catalogue as it is now.
    let mut scope: Option<String> = None;
    let mut conditions = Vec::new();
    // The conditions on the instance's tags, guarded together at the end.
    let mut tags = Vec::new();
    let actions: Vec<&'static str> = match (fields.get("Action"), fields.get("NotAction")) {
        (Some(patterns), None) => {
            let patterns = strings(patterns, "Action")?;
            check_action_patterns(&patterns, "Action")?;
            let groups: Vec<&'static str> = catalogue::ACTIONS
                .iter()
                .flat_map(|a| a.wildcards.iter().copied())
                .collect();
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
            catalogue::ACTIONS
                .iter()
                .filter(|a| patterns.iter().any(|p| action_matches(p, a.name)))
                .map(|a| a.name)
                .collect()
        }
        (None, Some(patterns)) => {
            let patterns = strings(patterns, "NotAction")?;
            check_action_patterns(&patterns, "NotAction")?;
            // Every action but those the patterns name, as a condition on
            // any action: an action added to the catalogue later that the
            // patterns do not name is covered, as RAM would cover it (a
            // list of today's other actions would leave it out, and a Deny
            // would fail open for it). Patterns naming a group exclude the
            // group, future members included.
            let groups: Vec<&'static str> = catalogue::ACTIONS
                .iter()
                .flat_map(|a| a.wildcards.iter().copied())
                .collect();
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
            scope = Some("action".to_owned());
            if !excluded.is_empty() {
                conditions.push(format!("!({})", action_in(&excluded)));
            }
            catalogue::ACTIONS
                .iter()
                .filter(|a| !patterns.iter().any(|p| action_matches(p, a.name)))
                .map(|a| a.name)
                .collect()
        }
        _ => return Err("exactly one of Action and NotAction is required".into()),
    };
    match (fields.get("Resource"), fields.get("NotResource")) {
        (Some(patterns), None) => {
            let parts: Option<Vec<String>> = strings(patterns, "Resource")?
                .iter()
                .map(|p| resource_pattern(p))
                .collect::<Result<_, _>>()?;
            // A `*` among the patterns matches every resource.
            if let Some(parts) = parts {
                conditions.push(any_of(parts));
            }
        }
        (None, Some(patterns)) => {
            let parts: Option<Vec<String>> = strings(patterns, "NotResource")?
                .iter()
                .map(|p| resource_pattern(p))
                .collect::<Result<_, _>>()?;
            match parts {
                Some(parts) => conditions.push(not(&any_of(parts))),
                // NotResource "*": no resource.
                None => conditions.push("false".into()),
            }
        }
        _ => return Err("exactly one of Resource and NotResource is required".into()),
    }
    if let Some(condition_block) = fields.get("Condition") {
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
    }
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
