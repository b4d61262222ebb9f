//! `policy diff` with the real solver (cvc5, installed by `.ci/cvc5.sh`):
//! small policy pairs for each answer, layers and dependent actions
//! combining, erroring policies, the time limit, the Explain rpc's
//! permission checks; and realistic edits of each shipped guardrail, each
//! widening confirmed by replaying its counterexample through the
//! authorizer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ecs_gateway::policy::{DependentRule, When};
use ecs_gateway::policy_tools::diff::{self, Options, Report, Verdict};

mod support;

const ACCOUNT: &str = "1234567890123456";
const BIN: &str = env!("CARGO_BIN_EXE_ecs-gateway");

/// A copy of the shipped policies changed by `edit`, removed on drop.
fn candidate(name: &str, edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ecs-gw-diff-{name}-"))
        .tempdir()
        .unwrap();
    support::copy_dir(&support::policies_dir(), dir.path());
    edit(dir.path());
    dir
}

/// Replaces `from` by `to` in a policy file (which must hold it).
fn replace(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} lacks {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Removes the policy `id` (its `@id` line to the next one) from a file.
fn remove(dir: &Path, file: &str, id: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(&format!("@id(\"{id}\")")).unwrap();
    let end = text[start + 1..]
        .find("@id(")
        .map_or(text.len(), |i| start + 1 + i);
    std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

/// Adds a policy file.
fn add(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn demo_rule() -> DependentRule {
    DependentRule {
        action: "ecs:ModifyInstanceNetworkSpec".into(),
        requires: "ecs:AllocatePublicIpAddress".into(),
        when: When::AllocatesPublicIp,
    }
}

async fn compare(active: &Path, candidate: &Path, rules: Vec<DependentRule>) -> Report {
    diff::run(&Options {
        active: active.to_owned(),
        candidate: candidate.to_owned(),
        rules,
        account_id: ACCOUNT.into(),
        other_accounts: Vec::new(),
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts the verdict, and that every difference was confirmed by the
/// replay (the authorizer decides the counterexample differently).
/// `policy diff --no-config` of `candidate` against `active`, the binary's
/// output.
fn diff_without_settings(active: &Path, candidate: &Path, json: bool) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(["policy", "diff"]);
    if json {
        command.arg("--json");
    }
    command
        .args(["--no-config", "--account-id", ACCOUNT, "--active"])
        .arg(active)
        .arg("--candidate")
        .arg(candidate)
        .output()
        .unwrap()
}

/// Each decision's verdict, in the report's order.
fn verdicts(report: &Report) -> Vec<(&'static str, Verdict)> {
    report
        .actions
        .iter()
        .map(|a| (a.action, a.verdict))
        .collect()
}

fn expect(report: &Report, verdict: Verdict) {
    assert_eq!(report.verdict, verdict, "{report:#?}");
    for d in report.widenings.iter().chain(&report.narrowings) {
        assert!(d.confirmed, "not reproduced: {d:#?}");
    }
    for d in &report.widenings {
        assert!(d.candidate.starts_with("Allow"), "{d:#?}");
        assert!(!d.active.starts_with("Allow"), "{d:#?}");
    }
    for d in &report.narrowings {
        assert!(d.active.starts_with("Allow"), "{d:#?}");
        assert!(!d.candidate.starts_with("Allow"), "{d:#?}");
    }
}

const GUARDRAILS: &str = "control/guardrails.cedar";

#[tokio::test]
async fn the_same_policies_written_otherwise_are_equivalent() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    expect(
        &compare(&shipped, &shipped, vec![demo_rule()]).await,
        Verdict::Equivalent,
    );
    // The region guardrail as three forbids instead of one.
    let split = candidate("split", |dir| {
        replace(
            dir,
            GUARDRAILS,
            r#"unless { ["cn-hangzhou", "cn-shanghai", "cn-beijing"].contains(resource.region) };"#,
            r#"when { resource.region != "cn-hangzhou" && resource.region != "cn-shanghai" && resource.region != "cn-beijing" };"#,
        );
    });
    expect(
        &compare(&shipped, split.path(), vec![demo_rule()]).await,
        Verdict::Equivalent,
    );
}

#[tokio::test]
async fn a_removed_guardrail_widens_with_a_confirmed_counterexample() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let removed = candidate("no-public-ip", |dir| {
        remove(dir, GUARDRAILS, "control.no-public-ip-for-app-teams");
    });
    let report = compare(&shipped, removed.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Widens);
    let widening = &report.widenings[0];
    assert!(
        widening
            .active
            .contains("control.no-public-ip-for-app-teams"),
        "{widening:#?}"
    );
    let groups = widening.call["principal"]["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g == "AppTeams"), "{widening:#?}");
    // The printed case reproduces it with `policy test`: it passes on the
    // candidate and fails on the policies in force.
    let on_candidate = run_printed_case(removed.path(), &widening.case);
    assert_eq!(
        (on_candidate.passed, on_candidate.failures.len()),
        (1, 0),
        "{on_candidate:?}\n{}",
        widening.case
    );
    let on_active = run_printed_case(&shipped, &widening.case);
    assert_eq!(
        (on_active.passed, on_active.failures.len()),
        (0, 1),
        "{}",
        widening.case
    );
}

/// Runs the `[[case]]` a difference prints with `policy test`'s runner, on a
/// copy of `dir` given the printed principal (principals.toml) and instance
/// (entities.json), in a case file with the printed account.
fn run_printed_case(dir: &Path, printed: &str) -> ecs_gateway::policy_tools::cases::Report {
    let copy = tempfile::tempdir().unwrap();
    support::copy_dir(dir, copy.path());
    let (principal, rest) = printed
        .split_once("\n# in a case file with account_id = ")
        .unwrap();
    let principals = copy.path().join("principals.toml");
    let mut text = std::fs::read_to_string(&principals).unwrap();
    text.push_str(principal);
    std::fs::write(&principals, text).unwrap();
    let (account, case) = rest.split_once('\n').unwrap();
    let (case, entity) = match case.split_once("# entities.json gets the instance: ") {
        Some((case, entity)) => (case, Some(entity.trim())),
        None => (case, None),
    };
    if let Some(entity) = entity {
        let entity: serde_json::Value = serde_json::from_str(entity).unwrap();
        let path = copy.path().join("entities.json");
        let mut all: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        all.retain(|e| e["uid"] != entity["uid"]);
        all.push(entity);
        std::fs::write(&path, serde_json::to_string(&all).unwrap()).unwrap();
    }
    let file = copy.path().join("printed-case.toml");
    std::fs::write(&file, format!("account_id = {account}\n{case}")).unwrap();
    let store = std::sync::Arc::new(ecs_gateway::policy::Store::open(copy.path()).unwrap());
    ecs_gateway::policy_tools::cases::run(&store, &[file]).unwrap()
}

#[tokio::test]
async fn an_added_forbid_narrows() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let narrower = candidate("narrower", |dir| {
        add(
            dir,
            "control/weekends.cedar",
            r#"@id("control.no-more-than-50")
forbid (principal, action, resource)
when { context.request has internet_max_bandwidth_out && context.request.internet_max_bandwidth_out > 50 };
"#,
        );
    });
    expect(
        &compare(&shipped, narrower.path(), vec![demo_rule()]).await,
        Verdict::Narrows,
    );
}

/// A permit in the identity layer does not widen what a control forbid
/// denies: the layers combine. Where the forbid does not reach (it names
/// `ecs:*`), the permit does widen: unscoped, it lets app teams simulate
/// other identities through Explain.
#[tokio::test]
async fn an_identity_permit_under_a_control_forbid_changes_nothing() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let permit = |actions: &str| {
        format!(
            r#"@id("identity.app-teams-public-ip")
permit (principal in Ram::Group::"AppTeams", {actions}, resource)
when {{ context["ecs:AssociatePublicIpAddress"] }};
"#
        )
    };
    let granted = candidate("layers", |dir| {
        add(
            dir,
            "identity/app-teams-public-ip.cedar",
            &permit(r#"action in Action::"ecs:*""#),
        );
    });
    expect(
        &compare(&shipped, granted.path(), vec![demo_rule()]).await,
        Verdict::Equivalent,
    );
    let everything = candidate("layers-all-actions", |dir| {
        add(dir, "identity/app-teams-public-ip.cedar", &permit("action"));
    });
    let report = compare(&shipped, everything.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Widens);
    let verdicts = verdicts(&report);
    assert_eq!(
        verdicts,
        [
            ("ecs:ModifyInstanceNetworkSpec", Verdict::Equivalent),
            ("ecsgateway:Explain", Verdict::Equivalent),
            ("ecsgateway:SimulatePrincipal", Verdict::Widens),
        ],
        "{report:#?}"
    );
}

/// Granting capacity planners ecs:AllocatePublicIpAddress widens only when
/// the operator's rule makes it a dependent action of the call.
#[tokio::test]
async fn a_dependent_action_is_part_of_the_decision() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let granted = candidate("dependent", |dir| {
        add(
            dir,
            "identity/capacity-public-ip.cedar",
            r#"@id("identity.capacity-planners-public-ip")
permit (principal in Ram::Group::"CapacityPlanners", action == Action::"ecs:AllocatePublicIpAddress", resource)
when { resource.region == "cn-hangzhou" };
"#,
        );
    });
    let report = compare(&shipped, granted.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Widens);
    assert!(
        report.widenings[0]
            .active
            .contains("of ecs:AllocatePublicIpAddress by the identity layer"),
        "{report:#?}"
    );
    // Without the rule, ecs:AllocatePublicIpAddress is never asked for.
    expect(
        &compare(&shipped, granted.path(), vec![]).await,
        Verdict::Equivalent,
    );
}

/// A policy that fails to evaluate denies in the gateway (Cedar alone
/// would skip it, so an erroring forbid would allow): adding one narrows,
/// removing one widens.
#[tokio::test]
async fn an_erroring_policy_denies_as_the_gateway_decides() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let erroring = candidate("erroring", |dir| {
        add(
            dir,
            "control/overflow.cedar",
            r#"@id("control.overflows")
forbid (principal, action, resource)
when { context.request has internet_max_bandwidth_out &&
       context.request.internet_max_bandwidth_out * 9223372036854775807 < 0 };
"#,
        );
    });
    let report = compare(&shipped, erroring.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Narrows);
    assert!(
        report.narrowings[0].candidate.contains("control.overflows"),
        "the erroring forbid denies: {report:#?}"
    );
    expect(
        &compare(erroring.path(), &shipped, vec![demo_rule()]).await,
        Verdict::Widens,
    );
}

#[tokio::test]
async fn a_solver_past_its_time_limit_could_not_decide() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let removed = candidate("timeout", |dir| {
        replace(
            dir,
            GUARDRAILS,
            r#"Ram::Group::"NetworkAdmins""#,
            r#"Ram::Group::"Nobody""#,
        );
    });
    let error = diff::run(&Options {
        active: shipped,
        candidate: removed.path().to_owned(),
        rules: vec![demo_rule()],
        account_id: ACCOUNT.into(),
        other_accounts: Vec::new(),
        time_limit: Duration::from_millis(1),
    })
    .await
    .unwrap_err();
    assert!(
        error.0.contains("no answer within 1ms per query"),
        "{error}"
    );
}

/// Realistic edits of each shipped guardrail, decided correctly.
#[tokio::test]
async fn edits_of_each_shipped_guardrail_are_decided_correctly() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let cases: [(&str, &str, &str, &str, Verdict); 10] = [
        (
            "add-region",
            GUARDRAILS,
            r#""cn-beijing"]"#,
            r#""cn-beijing", "cn-shenzhen"]"#,
            Verdict::Widens,
        ),
        (
            "drop-region",
            GUARDRAILS,
            r#", "cn-beijing"]"#,
            "]",
            Verdict::Narrows,
        ),
        (
            "raise-cap",
            GUARDRAILS,
            "internet_max_bandwidth_out > 100",
            "internet_max_bandwidth_out > 150",
            Verdict::Widens,
        ),
        (
            "lower-cap",
            GUARDRAILS,
            "effective_bandwidth_in > 100",
            "effective_bandwidth_in > 80",
            Verdict::Narrows,
        ),
        (
            "billing-unknown",
            GUARDRAILS,
            "(!resource.known ||",
            "(false ||",
            Verdict::Widens,
        ),
        (
            "billing-staging",
            GUARDRAILS,
            r#"resource.getTag("env") == "production""#,
            r#"["production", "staging"].contains(resource.getTag("env"))"#,
            Verdict::Narrows,
        ),
        (
            "upgrade-14d",
            GUARDRAILS,
            r#"duration("7d")"#,
            r#"duration("14d")"#,
            Verdict::Widens,
        ),
        (
            "upgrade-3d",
            GUARDRAILS,
            r#"duration("7d")"#,
            r#"duration("3d")"#,
            Verdict::Narrows,
        ),
        (
            "admins-anywhere",
            "control/management-network.cedar",
            r#"ip("10.0.0.0/8")"#,
            r#"ip("0.0.0.0/0")"#,
            Verdict::Widens,
        ),
        (
            "admins-no-loopback",
            "control/management-network.cedar",
            r#" ||
  context["acs:SourceIp"].isLoopback()"#,
            "",
            Verdict::Narrows,
        ),
    ];
    for (name, file, from, to, verdict) in cases {
        let edited = candidate(name, |dir| replace(dir, file, from, to));
        let report = compare(&shipped, edited.path(), vec![demo_rule()]).await;
        assert_eq!(report.verdict, verdict, "{name}: {report:#?}");
        expect(&report, verdict);
    }
}

/// The command: exit 0 when nothing widens, 1 when it widens (with the
/// counterexample in one JSON object), 2 when it cannot decide (cvc5
/// missing, with what to install).
#[test]
fn the_command_gates_on_widening() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let widened = candidate("cli", |dir| {
        replace(
            dir,
            GUARDRAILS,
            r#"["cn-hangzhou", "cn-shanghai", "cn-beijing"]"#,
            r#"["cn-hangzhou", "cn-shanghai", "cn-beijing", "us-west-1"]"#,
        );
    });
    let run = |candidate: &Path, cvc5: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args([
                "policy",
                "diff",
                "--json",
                "--no-config",
                "--account-id",
                ACCOUNT,
                "--active",
            ])
            .arg(&shipped)
            .arg("--candidate")
            .arg(candidate);
        if let Some(path) = cvc5 {
            command.env("CVC5", path);
        }
        let out = command.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), json)
    };
    let (code, json) = run(&shipped, None);
    assert_eq!(
        (code, json["result"].as_str()),
        (Some(0), Some("equivalent")),
        "{json}"
    );
    let (code, json) = run(widened.path(), None);
    assert_eq!(
        (code, json["result"].as_str()),
        (Some(1), Some("widens")),
        "{json}"
    );
    let widening = &json["widenings"][0];
    assert_eq!(
        widening["call"]["request"]["region_id"], "us-west-1",
        "{json}"
    );
    assert_eq!(widening["confirmedByReplay"], true, "{json}");
    // Without --config (or --no-config) the operator's dependent actions
    // are unknown: refused.
    let out = Command::new(BIN)
        .args(["policy", "diff", "--account-id", ACCOUNT, "--active"])
        .arg(&shipped)
        .arg("--candidate")
        .arg(widened.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let (code, json) = run(widened.path(), Some("/nonexistent/cvc5"));
    assert_eq!(code, Some(2), "{json}");
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("apt-get install cvc5"),
        "{json}"
    );
}

/// An erroring forbid scoped to the dependent action alone is part of the
/// decision too (it must keep its error term).
#[tokio::test]
async fn an_erroring_policy_of_a_dependent_action_denies() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let erroring = candidate("dependent-error", |dir| {
        add(
            dir,
            "control/overflow.cedar",
            r#"@id("control.allocate-overflows")
forbid (principal, action == Action::"ecs:AllocatePublicIpAddress", resource)
when { context.request has internet_max_bandwidth_out &&
       context.request.internet_max_bandwidth_out * 9223372036854775807 < 0 };
"#,
        );
    });
    let report = compare(&shipped, erroring.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Narrows);
    assert!(
        report.narrowings[0]
            .candidate
            .contains("control.allocate-overflows"),
        "{report:#?}"
    );
}

/// What the proof cannot see is refused, never called safe: a change of
/// principals.toml or entities.json, a read of another entity's attribute.
#[tokio::test]
async fn what_the_model_cannot_see_could_not_be_decided() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let promoted = candidate("principals", |dir| {
        replace(
            dir,
            "principals.toml",
            r#"groups = ["AppTeams"]"#,
            r#"groups = ["AppTeams", "NetworkAdmins"]"#,
        );
    });
    let error = diff::run(&Options {
        active: shipped.clone(),
        candidate: promoted.path().to_owned(),
        rules: vec![],
        account_id: ACCOUNT.into(),
        other_accounts: Vec::new(),
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap_err();
    assert!(error.0.contains("principals.toml differs"), "{error}");
    let untagged = candidate("entities", |dir| {
        replace(
            dir,
            "entities.json",
            r#""env": "production""#,
            r#""env": "dev""#,
        );
    });
    let error = diff::run(&Options {
        active: shipped.clone(),
        candidate: untagged.path().to_owned(),
        rules: vec![],
        account_id: ACCOUNT.into(),
        other_accounts: Vec::new(),
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap_err();
    assert!(error.0.contains("entities.json differs"), "{error}");
    let foreign = candidate("foreign", |dir| {
        add(
            dir,
            "control/foreign.cedar",
            r#"@id("control.reads-another-role")
forbid (principal, action, resource)
when { Ram::Role::"acs:ram::1234567890123456:role/netops".account == "1" };
"#,
        );
    });
    let error = diff::run(&Options {
        active: shipped,
        candidate: foreign.path().to_owned(),
        rules: vec![],
        account_id: ACCOUNT.into(),
        other_accounts: Vec::new(),
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap_err();
    assert!(error.0.contains("control.reads-another-role"), "{error}");
}

/// The Explain rpc's permission checks are decisions too: letting every
/// principal simulate others (so webapp could explain netops's calls)
/// widens, for `ecsgateway:SimulatePrincipal` alone, and each
/// counterexample replayed through the Explain's check confirms it.
#[tokio::test]
async fn letting_anyone_simulate_a_principal_widens() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let simulate = candidate("simulate", |dir| {
        add(
            dir,
            "identity/simulate-anyone.cedar",
            r#"@id("identity.anyone-simulates")
permit (principal, action == Action::"ecsgateway:SimulatePrincipal", resource);
"#,
        );
    });
    let report = compare(&shipped, simulate.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Widens);
    let verdicts = verdicts(&report);
    assert_eq!(
        verdicts,
        [
            ("ecs:ModifyInstanceNetworkSpec", Verdict::Equivalent),
            ("ecsgateway:Explain", Verdict::Equivalent),
            ("ecsgateway:SimulatePrincipal", Verdict::Widens),
        ],
        "{report:#?}"
    );
    assert_eq!(report.actions[2].with, ["ecsgateway:Explain"]);
    for widening in &report.widenings {
        assert_eq!(widening.action, "ecsgateway:SimulatePrincipal");
        assert!(
            widening
                .active
                .contains("of ecsgateway:SimulatePrincipal by the identity layer"),
            "{widening:#?}"
        );
        assert!(
            widening.candidate.contains("identity.anyone-simulates"),
            "{widening:#?}"
        );
        assert!(
            widening.call["simulated"]["identity"].is_string(),
            "{widening:#?}"
        );
        // The case asks `policy test` the same permission check.
        assert!(
            widening.case.contains("explain = true") && widening.case.contains("simulate_"),
            "{}",
            widening.case
        );
    }
    // The command: exit 1, each action's answer named.
    let out = diff_without_settings(&shipped, simulate.path(), false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        "widens: the candidate allows calls the active policies deny",
        "  ecs:ModifyInstanceNetworkSpec: equivalent",
        "  ecsgateway:Explain: equivalent",
        "  ecsgateway:SimulatePrincipal (with ecsgateway:Explain): widens",
        "widens: ecsgateway:SimulatePrincipal by a ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let out = diff_without_settings(&shipped, simulate.path(), true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert_eq!(json["result"], "widens", "{json}");
    assert_eq!(
        json["actions"]["ecsgateway:SimulatePrincipal"], "widens",
        "{json}"
    );
    assert_eq!(
        json["actions"]["ecsgateway:Explain"], "equivalent",
        "{json}"
    );
    assert_eq!(
        json["widenings"][0]["action"], "ecsgateway:SimulatePrincipal",
        "{json}"
    );
    assert_eq!(json["widenings"][0]["confirmedByReplay"], true, "{json}");
}

/// Taking `ecsgateway:Explain` from everyone narrows the Explain of one's
/// own calls and, since it is checked first, the Explain for another
/// identity too; calls are untouched.
#[tokio::test]
async fn removing_explain_narrows_both_explain_checks() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let removed = candidate("no-explain", |dir| {
        remove(dir, "identity/explain.cedar", "identity.explain-own-calls");
    });
    let report = compare(&shipped, removed.path(), vec![demo_rule()]).await;
    expect(&report, Verdict::Narrows);
    let verdicts = verdicts(&report);
    assert_eq!(
        verdicts,
        [
            ("ecs:ModifyInstanceNetworkSpec", Verdict::Equivalent),
            ("ecsgateway:Explain", Verdict::Narrows),
            ("ecsgateway:SimulatePrincipal", Verdict::Narrows),
        ],
        "{report:#?}"
    );
    for narrowing in &report.narrowings {
        assert!(
            narrowing
                .candidate
                .contains("of ecsgateway:Explain by the identity layer"),
            "{narrowing:#?}"
        );
    }
}

/// Issue 25: a widening whose counterexamples none reproduced through the
/// authorizer (here one needs an ARN the gateway never builds) answered
/// "widens", exit 1, and a CI gate blocked a change nobody could show
/// widens anything. The headline says unconfirmed, and the exit is 2.
#[tokio::test]
async fn a_widening_nobody_can_reproduce_is_unconfirmed_exit_2() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let impossible = candidate("impossible-arn", |dir| {
        add(
            dir,
            "identity/impossible.cedar",
            r#"@id("identity.impossible-arn")
permit (principal, action == Action::"ecs:ModifyInstanceNetworkSpec", resource)
when { resource.arn == "acs:ecs:cn-hangzhou:1234567890123456:instance/i-elsewhere" && resource.region == "cn-beijing" };
"#,
        );
    });
    let out = diff_without_settings(&shipped, impossible.path(), true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["result"], "widens", "{json}");
    assert_eq!(json["widensConfirmed"], false, "{json}");
    assert_eq!(json["widenings"][0]["confirmedByReplay"], false, "{json}");
    assert_eq!(out.status.code(), Some(2), "{json}");
    let out = diff_without_settings(&shipped, impossible.path(), false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("widens (unconfirmed: no counterexample reproduced"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}");
}

/// With the accounts the settings serve, a folder's guardrail is proven
/// over the accounts entities.json places in the folder: removing the
/// production folder's guardrail widens for account 2234567890123456 (the
/// counterexample names it, and replays), and not for the default account,
/// which sits in another folder.
#[tokio::test]
async fn removing_a_folder_guardrail_widens_for_the_accounts_in_that_folder() {
    if !support::solver_installed() {
        return;
    }
    let shipped = support::policies_dir();
    let removed = candidate("folder", |dir| {
        remove(
            dir,
            "control/resource-directory.cedar",
            "control.production-folder-network-admins-only",
        );
    });
    let options = |other_accounts: Vec<String>| Options {
        active: shipped.clone(),
        candidate: removed.path().to_owned(),
        rules: vec![demo_rule()],
        account_id: ACCOUNT.into(),
        other_accounts,
        time_limit: Duration::from_secs(60),
    };
    let served = diff::run(&options(vec!["2234567890123456".into()]))
        .await
        .unwrap();
    expect(&served, Verdict::Widens);
    assert!(
        served
            .widenings
            .iter()
            .all(|d| d.case.contains("account_id = \"2234567890123456\"")),
        "{served:#?}"
    );
    let default_only = diff::run(&options(Vec::new())).await.unwrap();
    assert_eq!(
        default_only.verdict,
        Verdict::Equivalent,
        "{default_only:#?}"
    );
}

/// An account the described directory does not place is denied by the
/// gateway, whatever the policies say: a change that would widen only for
/// it widens nothing, as the proof says (not a widening the replay then
/// fails to confirm).
#[tokio::test]
async fn a_change_for_an_unplaced_account_only_is_equivalent() {
    if !support::solver_installed() {
        return;
    }
    let unplace = |dir: &Path| {
        let path = dir.join("entities.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json.as_array_mut()
            .unwrap()
            .retain(|item| item["uid"]["id"] != "2234567890123456");
        std::fs::write(&path, json.to_string()).unwrap();
    };
    let active = candidate("unplaced", unplace);
    let widened = candidate("unplaced-widened", |dir| {
        unplace(dir);
        add(
            dir,
            "identity/unplaced.cedar",
            "@id(\"identity.apps-in-2234\")\npermit (principal in Ram::Group::\"AppTeams\", action, resource)\nwhen { resource.account == \"2234567890123456\" };\n",
        );
    });
    let report = diff::run(&Options {
        active: active.path().to_owned(),
        candidate: widened.path().to_owned(),
        rules: vec![demo_rule()],
        account_id: ACCOUNT.into(),
        other_accounts: vec!["2234567890123456".into()],
        time_limit: Duration::from_secs(60),
    })
    .await
    .unwrap();
    expect(&report, Verdict::Equivalent);
}
