//! The one action catalogue: every RAM action the gateway authorizes, with
//! its access level, resource ARN template, condition keys and dependent
//! actions, as RAM's authorization tables list them. The schema's action
//! declarations follow from it ([`schema_actions`]); a test checks that
//! `policies/schema.cedarschema` holds exactly that text.

/// RAM's access levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLevel {
    /// create
    Create,
    /// list
    List,
    /// get
    Get,
    /// update
    Update,
    /// delete
    Delete,
}

impl AccessLevel {
    /// RAM's name, also the Cedar action group.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::List => "list",
            Self::Get => "get",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One RAM action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// `service:Name`.
    pub name: &'static str,
    /// Access level.
    pub access_level: AccessLevel,
    /// The resource's ARN template.
    pub resource_arn: &'static str,
    /// The service's own condition keys for the action.
    pub condition_keys: &'static [&'static str],
    /// Actions that must also be allowed.
    pub dependent_actions: &'static [&'static str],
    /// Wildcard groups it belongs to, narrowest first (`ecs:Modify*`, `ecs:*`).
    pub wildcards: &'static [&'static str],
    /// The schema's context type of the action.
    pub context: &'static str,
}

/// The instance ARN template of the reference's RAM table.
pub const INSTANCE_ARN: &str = "acs:ecs:{regionId}:{accountId}:instance/{instanceId}";

/// `ecs:ModifyInstanceNetworkSpec`, from the reference's RAM table: access
/// level update, resource `*Instance`, condition key
/// `ecs:AssociatePublicIpAddress`, no dependent action.
pub const MODIFY_INSTANCE_NETWORK_SPEC: Action = Action {
    name: "ecs:ModifyInstanceNetworkSpec",
    access_level: AccessLevel::Update,
    resource_arn: INSTANCE_ARN,
    condition_keys: &["ecs:AssociatePublicIpAddress"],
    dependent_actions: &[],
    wildcards: &["ecs:Modify*", "ecs:*"],
    context: "RequestContext",
};

/// `ecs:AllocatePublicIpAddress`: RAM's action for giving an instance a
/// public IP. Not a dependent action in the reference; operators can require
/// it whenever a call would allocate a public IP (`[[policy.dependent_actions]]`).
pub const ALLOCATE_PUBLIC_IP_ADDRESS: Action = Action {
    name: "ecs:AllocatePublicIpAddress",
    access_level: AccessLevel::Update,
    resource_arn: INSTANCE_ARN,
    condition_keys: &[],
    dependent_actions: &[],
    wildcards: &["ecs:Allocate*", "ecs:*"],
    context: "RequestContext",
};

/// `ecsgateway:Explain`: the gateway's own action for
/// `AuthorizationService/Explain`, asking how a ModifyInstanceNetworkSpec
/// call on an instance would be decided, without forwarding it. Authorized
/// for the real caller on the explained call's instance, with that call's
/// context, so the same guardrails (regions, source networks) apply to it.
pub const EXPLAIN: Action = Action {
    name: "ecsgateway:Explain",
    access_level: AccessLevel::Get,
    resource_arn: INSTANCE_ARN,
    condition_keys: &[],
    dependent_actions: &[],
    wildcards: &["ecsgateway:*"],
    context: "RequestContext",
};

/// `ecsgateway:SimulatePrincipal`: explaining the decision for another
/// identity than the caller's (as IAM's `iam:SimulatePrincipalPolicy`).
/// Required with [`EXPLAIN`] whenever an Explain names an identity; its
/// context adds the simulated principal's ARN and groups
/// (`ecsgateway:SimulatedPrincipal`, `ecsgateway:SimulatedGroups`), so a
/// policy can say whom a team may simulate.
pub const SIMULATE_PRINCIPAL: Action = Action {
    name: "ecsgateway:SimulatePrincipal",
    access_level: AccessLevel::Get,
    resource_arn: INSTANCE_ARN,
    condition_keys: &[
        "ecsgateway:SimulatedPrincipal",
        "ecsgateway:SimulatedGroups",
    ],
    dependent_actions: &[],
    wildcards: &["ecsgateway:*"],
    context: "SimulationContext",
};

/// Every action.
pub const ACTIONS: &[Action] = &[
    MODIFY_INSTANCE_NETWORK_SPEC,
    ALLOCATE_PUBLIC_IP_ADDRESS,
    EXPLAIN,
    SIMULATE_PRINCIPAL,
];

/// The catalogue row of `name`.
pub fn get(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The Cedar uid of an action, `Action::"<name>"`.
pub fn action_uid(name: &str) -> cedar_policy::EntityUid {
    std::str::FromStr::from_str(&format!("Action::{name:?}"))
        .unwrap_or_else(|_| unreachable!("quoted action names parse"))
}

/// The instance ARN for a region, account and instance.
pub fn instance_arn(region_id: &str, account_id: &str, instance_id: &str) -> String {
    format!("acs:ecs:{region_id}:{account_id}:instance/{instance_id}")
}

/// The entity of an account, `Ram::Account::"{account_id}"`: every
/// instance's parent, placed in Resource Directory folders by
/// entities.json.
pub fn account_uid(account_id: &str) -> cedar_policy::EntityUid {
    /// Parsed once: every decision on an instance names its account.
    static ACCOUNT: std::sync::LazyLock<cedar_policy::EntityTypeName> =
        std::sync::LazyLock::new(|| {
            "Ram::Account"
                .parse()
                .unwrap_or_else(|_| unreachable!("a fixed type name parses"))
        });
    cedar_policy::EntityUid::from_type_name_and_id(
        ACCOUNT.clone(),
        cedar_policy::EntityId::new(account_id),
    )
}

/// Marks the start of the generated block in the schema.
pub const SCHEMA_BEGIN: &str =
    "// BEGIN actions: generated from src/policy/catalogue.rs, do not edit";
/// Marks its end.
pub const SCHEMA_END: &str = "// END actions";

/// The schema's action declarations: the wildcard and access-level groups,
/// then each action with what it applies to.
pub fn schema_actions() -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut add_group = |name: &'static str, parent: Option<&'static str>| {
        if let Some(entry) = groups.iter_mut().find(|(g, _)| *g == name) {
            if let Some(p) = parent.filter(|p| !entry.1.contains(p)) {
                entry.1.push(p);
            }
        } else {
            groups.push((name, parent.into_iter().collect()));
        }
    };
    for action in ACTIONS {
        add_group(action.access_level.as_str(), None);
        for (i, wildcard) in action.wildcards.iter().enumerate() {
            add_group(wildcard, action.wildcards.get(i + 1).copied());
        }
    }
    groups.sort_by_key(|(name, _)| *name);
    let quote = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{SCHEMA_BEGIN}\n");
    for (name, parents) in &groups {
        if parents.is_empty() {
            out.push_str(&format!("action \"{name}\";\n"));
        } else {
            out.push_str(&format!("action \"{name}\" in [{}];\n", quote(parents)));
        }
    }
    for action in ACTIONS {
        let mut parents = vec![action.access_level.as_str()];
        parents.extend(action.wildcards.first());
        out.push_str(&format!(
            "action \"{}\" in [{}] appliesTo {{\n  principal: [Ram::User, Ram::Role],\n  resource: [Ecs::Instance],\n  context: {},\n}};\n",
            action.name,
            quote(&parents),
            action.context
        ));
    }
    out.push_str(SCHEMA_END);
    out
}
