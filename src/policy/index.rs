//! Which of a layer's policies can apply to a request, found without
//! evaluating them, so that a decision costs what the policies that concern
//! the call cost, not what the whole directory costs.
//!
//! A policy is left out only when Cedar would find it not satisfied without
//! an error, so leaving it out changes no decision, no determining policy and
//! no evaluation error (a test compares indexed and full evaluation on
//! generated policies and requests). What the index reads:
//!
//! - the principal scope: `principal == P` and `principal in G` apply only to
//!   P, or to members of G (the schema gives groups no parents, so a
//!   principal's ancestors are exactly its groups);
//! - the action scope, against the catalogue's actions and their groups;
//! - the resource scope `resource == Ecs::Instance::"i-…"`;
//! - guards at the head of the first condition, when it is a `when`: the
//!   conjuncts Cedar evaluates first, as long as each is one of
//!   `resource.arn like "…"`, `resource.arn == "…"`, `resource.region == "…"`
//!   and `context.request.region_id == "…"` (either side of `==`). These read
//!   attributes the schema requires and cannot fail, so when one is false
//!   the policy is not satisfied and raised no error.
//!
//! Lookups go by the most selective key a policy has: its instance, else a
//! literal its ARN pattern requires (all such literals are found in one pass
//! over the ARN by an Aho-Corasick automaton), else its region; policies
//! without a key are always candidates. Every candidate is then checked
//! against all of its guards. The policy set of each distinct candidate list
//! is built once and kept (a bounded cache, emptied when full).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use aho_corasick::AhoCorasick;
use cedar_policy::{
    ActionConstraint, Entities, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint,
};
use serde_json::Value;

use super::catalogue;

/// Distinct candidate lists kept with their policy set, per layer.
const CACHE_ENTRIES: usize = 4096;

/// What a request offers to the guards.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The principal and its groups.
    pub member_of: &'a [EntityUid],
    /// The catalogue index of the action.
    pub action: usize,
    /// The resource's instance id.
    pub instance_id: &'a str,
    /// The resource's `arn` attribute.
    pub arn: &'a str,
    /// The resource's `region` attribute.
    pub region: &'a str,
    /// `context.request.region_id`.
    pub request_region: &'a str,
}

/// A condition that must hold for a policy to be satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Guard {
    /// `resource == Ecs::Instance::"…"`.
    Instance(String),
    /// `resource.arn like "…"` (`None`: a wildcard) or `resource.arn == "…"`.
    Arn(Vec<Option<String>>),
    /// `resource.region == "…"`.
    Region(String),
    /// `context.request.region_id == "…"`.
    RequestRegion(String),
}

impl Guard {
    fn holds(&self, probe: &Probe<'_>) -> bool {
        match self {
            Self::Instance(id) => id == probe.instance_id,
            Self::Arn(pattern) => matches_pattern(pattern, probe.arn),
            Self::Region(region) => region == probe.region,
            Self::RequestRegion(region) => region == probe.request_region,
        }
    }

    /// The longest literal the guard requires in the ARN.
    fn needle(&self) -> Option<&str> {
        let Self::Arn(pattern) = self else {
            return None;
        };
        pattern
            .iter()
            .flatten()
            .map(String::as_str)
            .max_by_key(|s| s.len())
    }
}

/// Cedar's `like`: `None` matches any sequence of characters, a literal
/// itself. With `*` as the only wildcard, taking each middle literal at its
/// leftmost place is exact, so this is linear in the ARN.
fn matches_pattern(pattern: &[Option<String>], text: &str) -> bool {
    let mut rest = text;
    for (i, elem) in pattern.iter().enumerate() {
        let Some(literal) = elem else { continue };
        let after_wildcard = i > 0 && pattern[i - 1].is_none();
        let last = i + 1 == pattern.len();
        if !after_wildcard {
            let Some(tail) = rest.strip_prefix(literal.as_str()) else {
                return false;
            };
            rest = tail;
        } else if last {
            return rest.ends_with(literal.as_str());
        } else {
            let Some(at) = rest.find(literal.as_str()) else {
                return false;
            };
            rest = &rest[at + literal.len()..];
        }
    }
    pattern.last() == Some(&None) || rest.is_empty()
}

/// One policy and what it requires.
#[derive(Debug)]
struct Entry {
    policy: Policy,
    /// Bit `i`: the policy's action scope matches catalogue action `i`.
    actions: u64,
    guards: Vec<Guard>,
}

impl Entry {
    fn admits(&self, probe: &Probe<'_>) -> bool {
        self.actions & (1 << probe.action) != 0 && self.guards.iter().all(|g| g.holds(probe))
    }
}

/// The policies of one principal key, by their most selective guard.
#[derive(Debug, Default)]
struct Bucket {
    plain: Vec<u32>,
    by_instance: HashMap<String, Vec<u32>>,
    by_region: HashMap<String, Vec<u32>>,
    needles: Vec<String>,
    by_needle: Vec<Vec<u32>>,
    automaton: Option<AhoCorasick>,
}

impl Bucket {
    fn add(&mut self, index: u32, guards: &[Guard]) {
        if let Some(id) = guards.iter().find_map(|g| match g {
            Guard::Instance(id) => Some(id),
            _ => None,
        }) {
            self.by_instance.entry(id.clone()).or_default().push(index);
        } else if let Some(needle) = guards.iter().find_map(Guard::needle) {
            match self.needles.iter().position(|n| n == needle) {
                Some(at) => self.by_needle[at].push(index),
                None => {
                    self.needles.push(needle.to_owned());
                    self.by_needle.push(vec![index]);
                }
            }
        } else if let Some(region) = guards.iter().find_map(|g| match g {
            Guard::Region(r) | Guard::RequestRegion(r) => Some(r),
            _ => None,
        }) {
            self.by_region
                .entry(region.clone())
                .or_default()
                .push(index);
        } else {
            self.plain.push(index);
        }
    }

    fn finish(&mut self) {
        if !self.needles.is_empty() {
            self.automaton = AhoCorasick::new(&self.needles).ok();
        }
    }

    fn candidates(&self, probe: &Probe<'_>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.plain);
        if let Some(list) = self.by_instance.get(probe.instance_id) {
            out.extend_from_slice(list);
        }
        for region in [probe.region, probe.request_region] {
            if let Some(list) = self.by_region.get(region) {
                out.extend_from_slice(list);
            }
        }
        match &self.automaton {
            Some(automaton) => {
                for found in automaton.find_overlapping_iter(probe.arn) {
                    out.extend_from_slice(&self.by_needle[found.pattern().as_usize()]);
                }
            }
            // The automaton could not be built: every needle is a candidate.
            None => self.by_needle.iter().for_each(|l| out.extend_from_slice(l)),
        }
    }
}

/// A layer's policies, indexed.
pub struct LayerIndex {
    entries: Vec<Entry>,
    /// By principal key: `None` for policies scoped to every principal.
    buckets: HashMap<Option<EntityUid>, Bucket>,
    sets: Mutex<HashMap<Vec<u32>, Arc<PolicySet>>>,
}

impl std::fmt::Debug for LayerIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerIndex")
            .field("policies", &self.entries.len())
            .field("principal_keys", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

/// The catalogue actions an action scope matches, as bits.
fn action_bits(constraint: &ActionConstraint, hierarchy: &Entities) -> u64 {
    let all = (1u64 << catalogue::ACTIONS.len()) - 1;
    let matches = |targets: &[EntityUid], action: &EntityUid| {
        targets.contains(action)
            || hierarchy
                .ancestors(action)
                .is_some_and(|mut up| up.any(|a| targets.contains(a)))
    };
    let targets = match constraint {
        ActionConstraint::Any => return all,
        ActionConstraint::Eq(uid) => vec![uid.clone()],
        ActionConstraint::In(uids) => uids.clone(),
    };
    catalogue::ACTIONS
        .iter()
        .enumerate()
        .filter(|(_, a)| matches(&targets, &catalogue::action_uid(a.name)))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// `resource.<attr>` or `context.request.<attr>` in the EST.
fn attribute(expr: &Value) -> Option<(&str, &str)> {
    let get = expr.get(".")?;
    let attr = get.get("attr")?.as_str()?;
    let left = get.get("left")?;
    if left.get("Var").and_then(Value::as_str) == Some("resource") {
        return Some(("resource", attr));
    }
    let inner = left.get(".")?;
    (inner.get("attr")?.as_str()? == "request"
        && inner.get("left")?.get("Var")?.as_str()? == "context")
        .then_some(("context.request", attr))
}

fn string_value(expr: &Value) -> Option<&str> {
    expr.get("Value")?.as_str()
}

/// A conjunct that is a guard, read from the EST.
fn guard(expr: &Value) -> Option<Guard> {
    if let Some(like) = expr.get("like") {
        if attribute(like.get("left")?)? != ("resource", "arn") {
            return None;
        }
        let mut pattern: Vec<Option<String>> = Vec::new();
        for elem in like.get("pattern")?.as_array()? {
            match (elem.as_str(), elem.get("Literal").and_then(Value::as_str)) {
                (Some("Wildcard"), _) => {
                    if pattern.last() != Some(&None) {
                        pattern.push(None);
                    }
                }
                (_, Some(literal)) => match pattern.last_mut() {
                    Some(Some(last)) => last.push_str(literal),
                    _ => pattern.push(Some(literal.to_owned())),
                },
                _ => return None,
            }
        }
        return Some(Guard::Arn(pattern));
    }
    let eq = expr.get("==")?;
    let (left, right) = (eq.get("left")?, eq.get("right")?);
    let (attr, value) = match (attribute(left), string_value(right)) {
        (Some(attr), Some(value)) => (attr, value),
        _ => (attribute(right)?, string_value(left)?),
    };
    match attr {
        ("resource", "arn") => Some(Guard::Arn(vec![Some(value.to_owned())])),
        ("resource", "region") => Some(Guard::Region(value.to_owned())),
        ("context.request", "region_id") => Some(Guard::RequestRegion(value.to_owned())),
        _ => None,
    }
}

/// The conjuncts of `expr` in the order Cedar evaluates them.
fn conjuncts<'a>(expr: &'a Value, out: &mut Vec<&'a Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                conjuncts(left, out);
                conjuncts(right, out);
            } else {
                out.push(expr);
            }
        }
        None => out.push(expr),
    }
}

/// The guards of a policy: its resource scope, and the leading guards of
/// its first condition when that is a `when`.
fn guards(policy: &Policy) -> Vec<Guard> {
    let mut guards = Vec::new();
    if let ResourceConstraint::Eq(uid) = policy.resource_constraint()
        && uid.type_name().to_string() == "Ecs::Instance"
    {
        guards.push(Guard::Instance(uid.id().unescaped().to_owned()));
    }
    let Ok(est) = policy.to_json() else {
        return guards;
    };
    let first = est
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    if let Some(body) = first
        .filter(|c| c.get("kind").and_then(Value::as_str) == Some("when"))
        .and_then(|c| c.get("body"))
    {
        let mut all = Vec::new();
        conjuncts(body, &mut all);
        guards.extend(all.into_iter().map_while(guard));
    }
    guards
}

impl LayerIndex {
    /// Indexes `set`; `hierarchy` holds the action groups.
    pub fn new(set: &PolicySet, hierarchy: &Entities) -> Self {
        let mut entries = Vec::new();
        let mut buckets: HashMap<Option<EntityUid>, Bucket> = HashMap::new();
        let mut policies: Vec<&Policy> = set.policies().collect();
        // A stable order, so that candidate lists are comparable.
        policies.sort_by(|a, b| a.id().cmp(b.id()));
        for policy in policies {
            let key = match policy.principal_constraint() {
                PrincipalConstraint::Any | PrincipalConstraint::Is(_) => None,
                PrincipalConstraint::Eq(uid)
                | PrincipalConstraint::In(uid)
                | PrincipalConstraint::IsIn(_, uid) => Some(uid),
            };
            let guards = guards(policy);
            let index = u32::try_from(entries.len()).unwrap_or(u32::MAX);
            buckets.entry(key).or_default().add(index, &guards);
            entries.push(Entry {
                policy: policy.clone(),
                actions: action_bits(&policy.action_constraint(), hierarchy),
                guards,
            });
        }
        buckets.values_mut().for_each(Bucket::finish);
        Self {
            entries,
            buckets,
            sets: Mutex::new(HashMap::new()),
        }
    }

    /// The policies that can apply to `probe`, as a policy set.
    pub fn policies_for(&self, probe: &Probe<'_>) -> Arc<PolicySet> {
        let mut found = Vec::new();
        let keys = std::iter::once(None).chain(probe.member_of.iter().map(Some));
        let mut seen: HashSet<Option<&EntityUid>> = HashSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            if let Some(bucket) = self.buckets.get(&key.cloned()) {
                bucket.candidates(probe, &mut found);
            }
        }
        found.retain(|&i| self.entries[i as usize].admits(probe));
        found.sort_unstable();
        found.dedup();
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = sets.get(&found) {
            return Arc::clone(set);
        }
        let set = Arc::new(
            PolicySet::from_policies(
                found
                    .iter()
                    .map(|&i| self.entries[i as usize].policy.clone()),
            )
            .unwrap_or_else(|_| unreachable!("a subset of a valid policy set is valid")),
        );
        if sets.len() >= CACHE_ENTRIES {
            sets.clear();
        }
        sets.insert(found, Arc::clone(&set));
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(parts: &[&str]) -> Vec<Option<String>> {
        parts
            .iter()
            .map(|p| (*p != "*").then(|| (*p).to_owned()))
            .collect()
    }

    #[test]
    fn matches_like_patterns_as_cedar_does() {
        let arn = "acs:ecs:cn-hangzhou:123:instance/i-team7-1";
        for (parts, expected) in [
            (vec!["acs:ecs:", "*", ":instance/i-team7-", "*"], true),
            (vec!["acs:ecs:", "*", ":instance/i-team1-", "*"], false),
            (vec!["*"], true),
            (vec!["*", "i-team7-1"], true),
            (vec!["*", "i-team7-"], false),
            (vec!["acs:ecs:cn-hangzhou:123:instance/i-team7-1"], true),
            (vec!["acs:ecs:cn-hangzhou:123:instance/i-team7-"], false),
            (vec!["*", ":", "*", ":", "*"], true),
            (vec!["*", "7", "*", "7", "*"], false),
        ] {
            assert_eq!(
                matches_pattern(&pattern(&parts), arn),
                expected,
                "{parts:?}"
            );
        }
        assert!(matches_pattern(&[], ""));
        assert!(!matches_pattern(&[], "x"));
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(None, text).unwrap()
    }

    #[test]
    fn reads_the_leading_guards_of_the_first_when() {
        let p = policy(
            r#"permit (principal, action, resource == Ecs::Instance::"i-1")
               when { "cn-shanghai" == resource.region && resource.arn like "acs:ecs:*:instance/i-*"
                      && context.request.region_id == "cn-shanghai" && context.request.auto_pay
                      && resource.arn == "x" };"#,
        );
        assert_eq!(
            guards(&p),
            vec![
                Guard::Instance("i-1".into()),
                Guard::Region("cn-shanghai".into()),
                Guard::Arn(pattern(&["acs:ecs:", "*", ":instance/i-", "*"])),
                Guard::RequestRegion("cn-shanghai".into()),
            ],
            "guards after the first other conjunct are not read: it may fail"
        );
        let unless_first = policy(
            r#"forbid (principal, action, resource) unless { context.request.auto_pay }
               when { resource.region == "cn-hangzhou" };"#,
        );
        assert_eq!(guards(&unless_first), vec![]);
        let disjunction = policy(
            r#"forbid (principal, action, resource)
               when { resource.region == "a" || resource.region == "b" };"#,
        );
        assert_eq!(guards(&disjunction), vec![]);
    }

    #[test]
    fn needles_are_the_longest_literal_of_the_pattern() {
        let guard = Guard::Arn(pattern(&["acs:ecs:", "*", ":instance/i-team7-", "*"]));
        assert_eq!(guard.needle(), Some(":instance/i-team7-"));
        assert_eq!(Guard::Arn(pattern(&["*"])).needle(), None);
        assert_eq!(Guard::Region("x".into()).needle(), None);
    }
}
