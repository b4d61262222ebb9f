//! `policy lint` with the real solver: a policy that can never apply, a
//! permit shadowed by a control forbid, a forbid that can fail to evaluate
//! (with a call that makes it fail), the same for the Explain rpc's
//! `ecsgateway:` actions, and a clean directory. The shipped policies are
//! linted in CI (`.ci/run`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ecs_gateway::policy_tools::lint::{self, Kind};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

/// The shipped schema, principals and entities with `control` and
/// `identity` policies of the test's own, removed when dropped.
fn directory(name: &str, control: &str, identity: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ecs-gw-lint-{name}-"))
        .tempdir()
        .unwrap();
    support::copy_dir(&support::policies_dir(), dir.path());
    for layer in ["control", "identity"] {
        for entry in std::fs::read_dir(dir.path().join(layer)).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
    std::fs::write(dir.path().join("control/test.cedar"), control).unwrap();
    std::fs::write(dir.path().join("identity/test.cedar"), identity).unwrap();
    dir
}

const BASELINE: &str = r#"@id("control.baseline")
permit (principal, action, resource);
"#;

/// Lints `dir`: the report, and its findings by policy.
async fn lint_findings(dir: &Path) -> (lint::Report, Vec<(String, Kind)>) {
    let report = lint::run(dir, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut found: Vec<(String, Kind)> = report
        .findings
        .iter()
        .map(|f| (f.policy.clone(), f.kind))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    (report, found)
}

#[tokio::test]
async fn finds_what_never_applies_what_is_shadowed_and_what_can_fail() {
    if !support::solver_installed() {
        return;
    }
    let dir = directory(
        "findings",
        &format!(
            r#"{BASELINE}
@id("control.no-public-ip-for-app-teams")
forbid (principal in Ram::Group::"AppTeams", action == Action::"ecs:ModifyInstanceNetworkSpec", resource)
when {{ context["ecs:AssociatePublicIpAddress"] }};

@id("control.overflows")
forbid (principal, action, resource)
when {{ context.request has internet_max_bandwidth_out &&
       context.request.internet_max_bandwidth_out * 9223372036854775807 < 0 }};
"#
        ),
        r#"@id("identity.beyond-ecs-limits")
permit (principal, action == Action::"ecs:ModifyInstanceNetworkSpec", resource)
when { context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out > 500 };

@id("identity.app-teams-public-ip")
permit (principal in Ram::Group::"AppTeams", action == Action::"ecs:ModifyInstanceNetworkSpec", resource)
when { context["ecs:AssociatePublicIpAddress"] };

@id("identity.netops")
permit (principal in Ram::Group::"NetworkAdmins", action, resource);
"#,
    );
    let (report, found) = lint_findings(dir.path()).await;
    assert_eq!(
        found,
        [
            ("control.overflows".to_owned(), Kind::CanError),
            ("identity.app-teams-public-ip".to_owned(), Kind::Shadowed),
            ("identity.beyond-ecs-limits".to_owned(), Kind::NeverApplies),
        ],
        "{report:#?}"
    );
    assert_eq!(report.policies, 6);
    // The failing call: an outbound bandwidth of 2 Mbit/s or more overflows.
    let overflow = report
        .findings
        .iter()
        .find(|f| f.kind == Kind::CanError)
        .unwrap();
    assert!(overflow.detail.contains("failing open"), "{overflow:?}");
    let example = overflow.example.as_ref().unwrap();
    let out = example["context"]["request"]["internet_max_bandwidth_out"]
        .as_i64()
        .unwrap();
    assert!(out >= 2, "{example}");
}

/// Every action the gateway decides is linted, the Explain rpc's too, each
/// on its own context (`ecsgateway:SimulatePrincipal`'s has the simulated
/// identity).
#[tokio::test]
async fn lints_the_policies_of_the_explain_actions_too() {
    if !support::solver_installed() {
        return;
    }
    let dir = directory(
        "explain",
        BASELINE,
        r#"@id("identity.explain-never")
permit (principal, action == Action::"ecsgateway:Explain", resource)
when { context.request.region_id == "a" && context.request.region_id == "b" };

@id("identity.simulate-anyone")
permit (principal, action == Action::"ecsgateway:SimulatePrincipal", resource);

@id("identity.simulate-no-one")
forbid (principal, action == Action::"ecsgateway:SimulatePrincipal", resource);

@id("identity.simulate-overflows")
forbid (principal, action == Action::"ecsgateway:SimulatePrincipal", resource)
when { context.request has internet_max_bandwidth_out &&
       context.request.internet_max_bandwidth_out * 9223372036854775807 < 0 };
"#,
    );
    let (report, found) = lint_findings(dir.path()).await;
    assert_eq!(
        found,
        [
            ("identity.explain-never".to_owned(), Kind::NeverApplies),
            ("identity.simulate-anyone".to_owned(), Kind::Shadowed),
            ("identity.simulate-overflows".to_owned(), Kind::CanError),
        ],
        "{report:#?}"
    );
    let overflow = report
        .findings
        .iter()
        .find(|f| f.kind == Kind::CanError)
        .unwrap();
    let example = overflow.example.as_ref().unwrap();
    assert_eq!(
        example["action"], "ecsgateway:SimulatePrincipal",
        "{example}"
    );
    assert!(
        example["context"]
            .get("ecsgateway:SimulatedGroups")
            .is_some(),
        "{example}"
    );
}

#[test]
fn the_command_exits_by_its_findings() {
    if !support::solver_installed() {
        return;
    }
    let run = |dir: &Path| {
        let out = Command::new(BIN)
            .args(["policy", "lint", "--json", "--policies"])
            .arg(dir)
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), json)
    };
    let clean = directory(
        "clean",
        BASELINE,
        r#"@id("identity.netops")
permit (principal in Ram::Group::"NetworkAdmins", action, resource);
"#,
    );
    let (code, json) = run(clean.path());
    assert_eq!(
        (code, json["result"].as_str()),
        (Some(0), Some("clean")),
        "{json}"
    );
    let never = directory(
        "never",
        BASELINE,
        r#"@id("identity.never")
permit (principal, action, resource) when { context.request.region_id == "a" && context.request.region_id == "b" };
"#,
    );
    let (code, json) = run(never.path());
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["findings"][0]["kind"], "never applies", "{json}");
}
