//! Unit tests of the catalogue and schema agreement; the decision tables
//! over the shipped policies are in tests/policy.rs.

use super::catalogue;

#[test]
fn schema_holds_the_catalogues_actions() {
    let schema = include_str!("../../policies/schema.cedarschema");
    let expected = catalogue::schema_actions();
    assert!(
        schema.contains(&expected),
        "policies/schema.cedarschema must contain, verbatim:\n{expected}"
    );
}

/// The context the gateway builds conforms to the schema's `RequestContext`
/// for every action, with every optional parameter present and absent.
#[test]
fn context_matches_the_schema_for_every_action() {
    use crate::identity::{Caller, Via};
    use crate::pb;
    use cedar_policy::{EntityUid, Request};
    use std::str::FromStr;

    let data = super::store::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies"
    )))
    .unwrap();
    let caller = Caller {
        identity: crate::identity::CallerId::Spiffe("spiffe://x".into()),
        via: Via::Mtls,
        mfa: true,
        secure_transport: true,
        peer: Some("[2001:db8::1]:443".parse().unwrap()),
    };
    let full = crate::validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-abc".into(),
        internet_max_bandwidth_out: Some(20),
        internet_max_bandwidth_in: Some(15),
        network_charge_type: 1,
        allocate_public_ip: Some(true),
        start_time: Some(prost_types::Timestamp {
            seconds: 1_893_492_000,
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: 1_893_506_400,
            nanos: 0,
        }),
        auto_pay: Some(false),
        ..Default::default()
    })
    .unwrap();
    let minimal = crate::validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-abc".into(),
        network_charge_type: 2,
        ..Default::default()
    })
    .unwrap();
    let principal = EntityUid::from_str(r#"Ram::Role::"acs:ram::1:role/r""#).unwrap();
    let resource = EntityUid::from_str(r#"Ecs::Instance::"i-abc""#).unwrap();
    for request in [&full, &minimal] {
        let context = super::decide::context(&caller, request, true, chrono::Utc::now()).unwrap();
        for action in catalogue::ACTIONS {
            let uid = EntityUid::from_str(&format!("Action::{:?}", action.name)).unwrap();
            // SimulatePrincipal's context adds the simulated identity: one
            // in groups, and one principals.toml does not know (no groups).
            let simulated = ["spiffe://demo.local/sa/netops", "spiffe://x/unknown"]
                .map(|id| crate::identity::CallerId::Spiffe(id.into()));
            let contexts: Vec<cedar_policy::Context> = match action.context {
                "RequestContext" => vec![context.clone()],
                "SimulationContext" => simulated
                    .iter()
                    .map(|s| {
                        context
                            .clone()
                            .merge(super::decide::simulation_context(&data, s))
                            .unwrap()
                    })
                    .collect(),
                other => panic!("{other}: a context type this test does not know"),
            };
            for context in contexts {
                Request::new(
                    principal.clone(),
                    uid.clone(),
                    resource.clone(),
                    context,
                    Some(&data.schema),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", action.name));
            }
        }
    }
}

#[test]
fn dependent_actions_apply_to_the_forwarded_action_only() {
    let rule = |action: &str, requires: &str| super::DependentRule {
        action: action.into(),
        requires: requires.into(),
        when: super::When::Always,
    };
    assert!(
        super::check_dependent_actions(&[rule(
            "ecs:ModifyInstanceNetworkSpec",
            "ecs:AllocatePublicIpAddress"
        )])
        .is_ok()
    );
    for (action, requires, problem) in [
        (
            "ecsgateway:Explain",
            "ecs:AllocatePublicIpAddress",
            "not an action the gateway forwards",
        ),
        (
            "ecs:AllocatePublicIpAddress",
            "ecs:ModifyInstanceNetworkSpec",
            "not an action the gateway forwards",
        ),
        (
            "ecs:ModifyInstanceNetworkSpec",
            "ecs:Nope",
            "not in the action catalogue",
        ),
        (
            "ecs:Nope",
            "ecs:AllocatePublicIpAddress",
            "not in the action catalogue",
        ),
    ] {
        let error = super::check_dependent_actions(&[rule(action, requires)])
            .unwrap_err()
            .to_string();
        assert!(error.contains(problem), "{action} → {requires}: {error}");
    }
}
