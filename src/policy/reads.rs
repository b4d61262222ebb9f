//! Which policies read what only ECS can tell about an instance: its
//! looked-up attributes and tags, and `ecs:AssociatePublicIpAddress` (which
//! depends on the instance's billing and public IP). A denial resting on a
//! policy that reads none of these holds whatever `DescribeInstances` would
//! answer, so the gateway denies without asking ECS
//! ([`super::Authorizer::deny_before_lookup`]).
//!
//! The analysis walks each policy's conditions in Cedar's JSON form and errs
//! on the side of "reads": `resource.arn`, `resource.region` and
//! `resource.account` (and `has` of them) come from the request, any other
//! use of `resource` in a condition counts as reading the instance, and so
//! does any `Ecs::Instance` entity written as a literal (its attributes and
//! tags are the same facts); any use of `context` other than a named key
//! counts as reading every key. Scopes are not walked: they read the
//! resource's identity and parents, which the gateway builds from the
//! request alone (an `Ecs::Instance` has no parents from a lookup).

use std::collections::HashSet;

use cedar_policy::{Policy, PolicySet};
use serde_json::Value;

/// Resource attributes the gateway builds from the request alone.
const FROM_REQUEST: [&str; 3] = ["arn", "region", "account"];

/// The entity type whose attributes and tags a lookup gives.
const INSTANCE: &str = "Ecs::Instance";

/// The context key that depends on the instance.
const ASSOCIATE: &str = "ecs:AssociatePublicIpAddress";

/// What one policy reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    /// Looked-up attributes or tags of the resource.
    pub instance: bool,
    /// `ecs:AssociatePublicIpAddress`.
    pub associate: bool,
}

impl Reads {
    /// Whether the policy's result can change with the instance, given
    /// whether `ecs:AssociatePublicIpAddress` is the same for every instance.
    pub fn depends(self, associate_fixed: bool) -> bool {
        self.instance || (self.associate && !associate_fixed)
    }

    fn merge(&mut self, other: Self) {
        self.instance |= other.instance;
        self.associate |= other.associate;
    }
}

/// The analysis of one layer's policies.
#[derive(Debug, Default)]
pub struct LayerReads {
    /// Policies that read anything instance-dependent, by id.
    reading: std::collections::HashMap<String, Reads>,
    /// What the layer's permits read, together.
    permits: Reads,
}

impl LayerReads {
    /// Analyses `set`.
    pub fn new(set: &PolicySet) -> Self {
        let mut layer = Self::default();
        for policy in set.policies() {
            let reads = of(policy);
            if policy.effect() == cedar_policy::Effect::Permit {
                layer.permits.merge(reads);
            }
            if reads != Reads::default() {
                layer.reading.insert(policy.id().to_string(), reads);
            }
        }
        layer
    }

    /// What the policy `id` reads (nothing, for one not in the layer).
    pub fn policy(&self, id: &str) -> Reads {
        self.reading.get(id).copied().unwrap_or_default()
    }

    /// What the layer's permits read, together.
    pub fn permits(&self) -> Reads {
        self.permits
    }
}

/// What `policy`'s conditions read; a policy whose JSON form cannot be
/// had reads everything.
pub fn of(policy: &Policy) -> Reads {
    let Ok(json) = policy.to_json() else {
        return Reads {
            instance: true,
            associate: true,
        };
    };
    let mut reads = Reads::default();
    if let Some(conditions) = json.get("conditions").and_then(Value::as_array) {
        for condition in conditions {
            if let Some(body) = condition.get("body") {
                walk(body, &mut reads);
            }
        }
    }
    reads
}

fn is_var(value: &Value, name: &str) -> bool {
    value.get("Var").and_then(Value::as_str) == Some(name)
}

/// Walks an expression; `resource.<attr>` and `context.<key>` (and `has`)
/// are read as attribute accesses, any other `resource` or `context` as a
/// read of everything.
fn walk(value: &Value, reads: &mut Reads) {
    match value {
        Value::Object(map) => {
            for op in [".", "has"] {
                if let Some(access) = map.get(op)
                    && let (Some(left), Some(attr)) = (
                        access.get("left"),
                        access.get("attr").and_then(Value::as_str),
                    )
                {
                    if is_var(left, "resource") {
                        reads.instance |= !FROM_REQUEST.contains(&attr);
                        return;
                    }
                    if is_var(left, "context") {
                        reads.associate |= attr == ASSOCIATE;
                        return;
                    }
                }
            }
            if is_var(value, "resource") {
                reads.instance = true;
                return;
            }
            if is_var(value, "context") {
                reads.associate = true;
                return;
            }
            if map
                .get("__entity")
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                == Some(INSTANCE)
            {
                reads.instance = true;
                return;
            }
            for child in map.values() {
                walk(child, reads);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, reads);
            }
        }
        _ => {}
    }
}

/// Ids of the policies in `ids` that read nothing instance-dependent.
pub fn independent<'a>(
    layer: &LayerReads,
    ids: &'a [String],
    associate_fixed: bool,
) -> HashSet<&'a str> {
    ids.iter()
        .filter(|id| !layer.policy(id).depends(associate_fixed))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(text: &str) -> Reads {
        of(&Policy::parse(None, text).unwrap())
    }

    #[test]
    fn tells_request_attributes_from_instance_facts() {
        let none = Reads::default();
        assert_eq!(
            reads(
                r#"forbid (principal, action, resource) unless { ["cn-hangzhou"].contains(resource.region) };"#
            ),
            none
        );
        assert_eq!(
            reads(
                r#"permit (principal, action, resource) when { resource has arn && resource.account == "1" };"#
            ),
            none
        );
        assert_eq!(
            reads(
                r#"permit (principal, action, resource) when { context.request.temporary_upgrade };"#
            ),
            none
        );
        for text in [
            r#"forbid (principal, action, resource) when { resource.hasTag("env") };"#,
            r#"forbid (principal, action, resource) when { !resource.known };"#,
            r#"forbid (principal, action, resource) when { resource has chargeType };"#,
            r#"forbid (principal, action, resource) when { resource in Ecs::Instance::"i-1" };"#,
            // The attacker's review: an instance named as a literal is read
            // as the resource is.
            r#"forbid (principal, action, resource == Ecs::Instance::"i-1") unless { Ecs::Instance::"i-1".hasTag("env") };"#,
            r#"forbid (principal, action, resource) when { Ecs::Instance::"i-1" has chargeType };"#,
        ] {
            assert!(reads(text).instance, "{text}");
        }
        let associate = reads(
            r#"forbid (principal, action, resource) when { context["ecs:AssociatePublicIpAddress"] };"#,
        );
        assert_eq!(
            associate,
            Reads {
                instance: false,
                associate: true
            }
        );
        assert!(associate.depends(false) && !associate.depends(true));
        assert!(reads(r#"permit (principal, action, resource) when { context == {} };"#).associate);
    }
}
