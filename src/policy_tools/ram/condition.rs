//! One RAM condition (an operator over a key and its values) as Cedar: the
//! request's keys exactly, the instance's tags and
//! `ecs:AssociatePublicIpAddress` fail-closed for an instance the gateway
//! does not know.

use super::{any_of, cedar_string, not};

/// Letters at most in a `StringEqualsIgnoreCase` value (2^10 variants).
const MAX_CASE_LETTERS: u32 = 10;

/// The case variants of `value` (ASCII letters; other letters are refused).
pub(super) fn case_variants(value: &str) -> Result<Vec<String>, String> {
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
pub(super) fn cedar_datetime(value: &str) -> Result<String, String> {
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

pub(super) fn ip_literal(value: &str) -> Result<String, String> {
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
pub(super) enum Conjunct {
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
pub(super) const ASSOCIATE_IS_REAL: &str = "(resource.known || (context.request has allocate_public_ip && context.request.allocate_public_ip))";

/// The Cedar expression of one operator over one key, in a statement that
/// allows (`allow`) or denies.
pub(super) fn condition(
    operator: &str,
    key: &str,
    values: &[String],
    allow: bool,
) -> Result<Conjunct, String> {
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
        return tag_condition(operator, key, tag, values).map(Conjunct::Tags);
    }
    let negated = is_negated(operator);
    let wrap = |alternatives: Vec<String>| {
        let any = any_of(alternatives);
        if negated { not(&any) } else { any }
    };
    let lower_key = key.to_ascii_lowercase();
    let expr = match lower_key.as_str() {
        "acs:sourceip" => source_ip(operator, values).map(wrap),
        "acs:currenttime" => current_time(operator, values).map(wrap),
        "acs:securetransport" | "acs:mfapresent" | "ecs:associatepublicipaddress" => {
            boolean_key(&lower_key, operator, values, allow)
        }
        _ => Err(format!(
            "condition key {key:?} is not known to the gateway (known: acs:SourceIp, acs:CurrentTime, acs:SecureTransport, acs:MFAPresent, ecs:AssociatePublicIpAddress, acs:ResourceTag/<key>)"
        )),
    };
    expr.map(Conjunct::Settled)
}

/// Whether the operator is a negated one (`…Not…`).
fn is_negated(operator: &str) -> bool {
    matches!(
        operator,
        "StringNotEquals"
            | "StringNotEqualsIgnoreCase"
            | "StringNotLike"
            | "NotIpAddress"
            | "DateNotEquals"
    )
}

/// A condition on the instance's tag `tag` (key `acs:ResourceTag/<tag>`).
fn tag_condition(
    operator: &str,
    key: &str,
    tag: &str,
    values: &[String],
) -> Result<String, String> {
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
    Ok(if is_negated(operator) {
        not(&matched)
    } else {
        matched
    })
}

/// `acs:SourceIp`'s alternatives.
fn source_ip(operator: &str, values: &[String]) -> Result<Vec<String>, String> {
    match operator {
        "IpAddress" | "NotIpAddress" => values
            .iter()
            .map(|v| {
                Ok(format!(
                    "context[\"acs:SourceIp\"].isInRange({})",
                    ip_literal(v)?
                ))
            })
            .collect(),
        _ => Err(format!(
            "operator {operator:?} does not apply to acs:SourceIp (use IpAddress or NotIpAddress)"
        )),
    }
}

/// `acs:CurrentTime`'s alternatives.
fn current_time(operator: &str, values: &[String]) -> Result<Vec<String>, String> {
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
    values
        .iter()
        .map(|v| {
            Ok(format!(
                "context[\"acs:CurrentTime\"] {cmp} {}",
                cedar_datetime(v)?
            ))
        })
        .collect()
}

/// A Bool key (`lower_key` in lower case): `acs:SecureTransport`,
/// `acs:MFAPresent` or `ecs:AssociatePublicIpAddress`.
fn boolean_key(
    lower_key: &str,
    operator: &str,
    values: &[String],
    allow: bool,
) -> Result<String, String> {
    let name = match lower_key {
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
