//! Cedar expressions in the JSON form of the policy format (Cedar's EST),
//! built from parts.

use serde_json::{Value, json};

pub(super) fn var(name: &str) -> Value {
    json!({ "Var": name })
}

pub(super) fn boolean(value: bool) -> Value {
    json!({ "Value": value })
}

pub(super) fn string(value: &str) -> Value {
    json!({ "Value": value })
}

pub(super) fn long(value: i64) -> Value {
    json!({ "Value": value })
}

pub(super) fn binary(op: &str, left: Value, right: Value) -> Value {
    json!({ op: { "left": left, "right": right } })
}

pub(super) fn not(arg: Value) -> Value {
    json!({ "!": { "arg": arg } })
}

pub(super) fn ite(cond: Value, then: Value, otherwise: Value) -> Value {
    json!({ "if-then-else": { "if": cond, "then": then, "else": otherwise } })
}

pub(super) fn attr(left: Value, name: &str) -> Value {
    json!({ ".": { "left": left, "attr": name } })
}

pub(super) fn has(left: Value, name: &str) -> Value {
    json!({ "has": { "left": left, "attr": name } })
}

/// `a && b && …`, `true` when empty.
pub(super) fn all(terms: Vec<Value>) -> Value {
    balanced("&&", terms).unwrap_or_else(|| boolean(true))
}

/// `a || b || …`, `false` when empty.
pub(super) fn any(terms: Vec<Value>) -> Value {
    balanced("||", terms).unwrap_or_else(|| boolean(false))
}

/// The terms joined by `op` as a balanced tree, keeping their order (which
/// Cedar's short-circuit evaluation follows): a chain of hundreds of
/// policies would be as deep as it is long, and Cedar's recursive parser
/// and evaluator would run out of stack.
pub(super) fn balanced(op: &str, mut terms: Vec<Value>) -> Option<Value> {
    match terms.len() {
        0 => None,
        1 => terms.pop(),
        n => {
            let right = terms.split_off(n / 2);
            Some(binary(op, balanced(op, terms)?, balanced(op, right)?))
        }
    }
}

pub(super) fn entity(uid: &Value) -> Value {
    json!({ "Value": { "__entity": uid } })
}

pub(super) fn extension(name: &str, arg: &str) -> Value {
    json!({ name: [ { "Value": arg } ] })
}

pub(super) fn method(receiver: Value, name: &str, args: Vec<Value>) -> Value {
    let mut all = vec![receiver];
    all.extend(args);
    json!({ name: all })
}

/// `from` ≤ `time` < `until` (dates).
pub(super) fn between(time: Value, from: &str, until: &str) -> Value {
    binary(
        "&&",
        binary(">=", time.clone(), extension("datetime", from)),
        binary("<", time, extension("datetime", until)),
    )
}
