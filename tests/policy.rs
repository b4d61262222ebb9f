//! The real Cedar engine on the shipped policies: the declarative decision
//! table (policies/tests/*.toml), failing closed on evaluation errors, hot
//! reload keeping the last good set, and malformed directories refused with
//! file:line messages.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ecs_gateway::identity::{Caller, CallerId, Via};
use ecs_gateway::policy::{self, DenyKind, Layer, Outcome, Store};
use ecs_gateway::{pb, policy_tools, validate};

/// A private copy of the shipped policies, removed when dropped.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::copy_dir(&support::policies_dir(), dir.path());
    dir
}

/// A ConfigMap volume's links: `..data` to `target`, each file to
/// `..data/<file>`.
fn configmap_links(base: &std::path::Path, target: &str) {
    use std::os::unix::fs::symlink;
    symlink(target, base.join("..data")).unwrap();
    for name in [
        "schema.cedarschema",
        "principals.toml",
        "entities.json",
        "control",
        "identity",
    ] {
        symlink(format!("..data/{name}"), base.join(name)).unwrap();
    }
}

fn caller(identity: &str) -> Caller {
    Caller {
        identity: CallerId::Spiffe(identity.into()),
        via: Via::Mtls,
        mfa: false,
        secure_transport: true,
        peer: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
    }
}

fn bandwidth(instance_id: &str, out: i32) -> validate::ModifyRequest {
    validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: instance_id.into(),
        internet_max_bandwidth_out: Some(out),
        ..Default::default()
    })
    .unwrap()
}

fn authorizer(dir: &Path) -> policy::Authorizer {
    policy::Config {
        dir: dir.to_owned(),
        account_id: support::DEMO_ACCOUNT_ID.into(),
        dependent_actions: vec![],
    }
    .build()
    .unwrap()
}

#[test]
fn shipped_cases_pass() {
    let store = Arc::new(Store::open(support::policies_dir()).unwrap());
    let files = policy_tools::cases::shipped(&support::policies_dir());
    assert!(!files.is_empty());
    let report = policy_tools::cases::run(&store, &files).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.passed >= 20, "{} cases", report.passed);
}

#[test]
fn a_failing_case_is_reported() {
    let dir = scratch();
    let cases = dir.path().join("tests/wrong.toml");
    std::fs::write(
        &cases,
        "account_id = \"1234567890123456\"\nregion_id = \"cn-hangzhou\"\n\
         [[case]]\nname = \"webapp cannot set 50\"\nspiffe_id = \"spiffe://demo.local/sa/webapp\"\n\
         request = { instance_id = \"i-demo-postpaid\", internet_max_bandwidth_out = 50 }\nexpect = \"Allow\"\n",
    )
    .unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let report = policy_tools::cases::run(&store, &[cases]).unwrap();
    assert_eq!(report.passed, 0);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].contains("expected Allow, got ImplicitDeny"),
        "{}",
        report.failures[0]
    );
}

#[test]
fn a_policy_that_fails_to_evaluate_denies() {
    let dir = scratch();
    // Strict validation cannot see an overflow: Cedar skips the erroring
    // forbid and, on its own, would allow through control.baseline.
    std::fs::write(
        dir.path().join("control/overflow.cedar"),
        "@id(\"control.overflowing\")\nforbid (principal, action, resource)\n\
         when { context.request has internet_max_bandwidth_out && \
         context.request.internet_max_bandwidth_out * 9223372036854775807 > 0 };\n",
    )
    .unwrap();
    let authorizer = authorizer(dir.path());
    let decision = authorizer.decide(
        &caller(support::NETOPS),
        &bandwidth("i-demo-postpaid", 20),
        chrono::Utc::now(),
    );
    let Outcome::Deny(denial) = &decision.outcome else {
        panic!("an erroring policy must deny: {decision:?}");
    };
    assert_eq!(
        (denial.layer, denial.kind),
        (Layer::Control, DenyKind::ExplicitDeny)
    );
    assert_eq!(denial.policies, ["control.overflowing"]);
    assert!(denial.errors[0].contains("overflow"), "{:?}", denial.errors);
    // Without the overflow (0 * max = 0) the same policy set allows.
    let zero = authorizer.decide(
        &caller(support::NETOPS),
        &bandwidth("i-demo-postpaid", 0),
        chrono::Utc::now(),
    );
    assert!(zero.allowed(), "{zero:?}");
}

#[test]
fn an_unknown_source_address_denies() {
    let authorizer = authorizer(&support::policies_dir());
    let mut anonymous = caller(support::NETOPS);
    anonymous.peer = None;
    let decision = authorizer.decide(
        &anonymous,
        &bandwidth("i-demo-postpaid", 20),
        chrono::Utc::now(),
    );
    assert!(!decision.allowed());
}

#[test]
fn a_broken_reload_keeps_the_previous_decisions() {
    let dir = scratch();
    let authorizer = authorizer(dir.path());
    let store = authorizer.store().clone();
    let decide = || {
        authorizer.decide(
            &caller(support::WEBAPP),
            &bandwidth("i-demo-postpaid", 8),
            chrono::Utc::now(),
        )
    };
    assert!(decide().allowed());
    let version = store.current().version.clone();

    let app_teams = dir.path().join("identity/app-teams.cedar");
    let good = std::fs::read_to_string(&app_teams).unwrap();
    std::fs::write(&app_teams, format!("{good}\n@id(\"identity.broken\")\npermit (principal, action, resource) when {{ 1 + }};\n")).unwrap();
    let error = store.reload().unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains("app-teams.cedar:"), "{shown}");
    assert_eq!(
        store.current().version,
        version,
        "the last good set stays in force"
    );
    assert!(decide().allowed());
    assert_eq!(store.reload_counts(), (0, 1));

    // A valid change takes effect at once.
    std::fs::write(
        &app_teams,
        format!("{good}\n@id(\"identity.freeze\")\nforbid (principal in Ram::Group::\"AppTeams\", action, resource);\n"),
    )
    .unwrap();
    assert_ne!(store.reload().unwrap(), version);
    let Outcome::Deny(denial) = decide().outcome else {
        panic!("the new forbid applies");
    };
    assert_eq!(denial.policies, ["identity.freeze"]);
    assert_eq!(store.reload_counts(), (1, 1));
}

#[tokio::test]
async fn the_watcher_reloads_changed_files() {
    let dir = scratch();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let _watcher = policy::store::watch(store.clone()).unwrap();
    let version = store.current().version.clone();
    std::fs::write(
        dir.path().join("identity/extra.cedar"),
        "@id(\"identity.extra\")\nforbid (principal, action, resource) when { false };\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.current().version == version {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload after a change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        store
            .current()
            .sources
            .contains_key(&cedar_policy::PolicyId::new("identity.extra"))
    );
}

/// Each malformed fixture: (file to write, content, expected message part,
/// expected `file:line`).
#[test]
fn malformed_policies_are_refused_with_file_and_line() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "control/syntax.cedar",
            "@id(\"x\")\npermit (principal, action, resource)\nwhen { ( };\n",
            "unexpected token",
            "syntax.cedar:3",
        ),
        (
            "identity/no-id.cedar",
            "permit (principal, action, resource);\n",
            "@id",
            "no-id.cedar",
        ),
        (
            "identity/dup.cedar",
            "\n\n@id(\"identity.network-admins\")\npermit (principal, action, resource);\n",
            "already used",
            "dup.cedar:3",
        ),
        (
            "identity/unguarded.cedar",
            "@id(\"identity.unguarded\")\npermit (principal, action, resource)\nwhen { context.request.internet_max_bandwidth_out > 5 };\n",
            "internet_max_bandwidth_out",
            "unguarded.cedar:3",
        ),
        (
            "identity/unknown-type.cedar",
            "@id(\"identity.u\")\npermit (principal == Ram::Robot::\"r\", action, resource);\n",
            "Ram::Robot",
            "unknown-type.cedar:2",
        ),
        (
            "identity/unknown-action.cedar",
            "@id(\"identity.a\")\npermit (principal, action == Action::\"ecs:DeleteInstance\", resource);\n",
            "ecs:DeleteInstance",
            "unknown-action.cedar:2",
        ),
        (
            "principals.toml",
            "[[principal]]\nspiffe_id = \"spiffe://x\"\narn = \"not-an-arn\"\n",
            "not a RAM user or role ARN",
            "principals.toml:3",
        ),
        (
            "principals.toml",
            "[[principal]]\nidentity = \"spiffe://x\"\narn = \"acs:ram::1:role/x\"\n",
            "does not say which source it matches",
            "principals.toml:3",
        ),
        (
            "principals.toml",
            "[[principal]]\nspiffe_id = \"spiffe://x\"\njwt = { issuer = \"https://i\", subject = \"s\" }\narn = \"acs:ram::1:role/x\"\n",
            "not both",
            "principals.toml:4",
        ),
        (
            "principals.toml",
            "[[principal]]\nspiffe_id = \"alice@demo.local\"\narn = \"acs:ram::1:role/x\"\n",
            "is not a SPIFFE ID",
            "principals.toml:3",
        ),
        (
            "entities.json",
            "[{\"uid\": {\"type\": \"Ecs::Instance\", \"id\": \"i-x\"}, \"attrs\": {}, \"parents\": []}]",
            "to have attribute",
            "entities.json",
        ),
        (
            "entities.json",
            "[\n{\"uid\": {\"type\": \"Ecs::Instance\", \"id\": \"i-x\"},\n \"attrs\": {\"arn\": \"acs:ecs:cn-hangzhou:1:instance/i-y\", \"region\": \"cn-hangzhou\", \"account\": \"1\"}, \"parents\": []}]",
            "expected \"acs:ecs:cn-hangzhou:1:instance/i-x\"",
            "entities.json:2",
        ),
        (
            "entities.json",
            "[{\"uid\": {\"type\": \"Ecs::Instance\", \"id\": \"i-x\"}, \"attrs\": {\"arn\": \"acs:ecs:cn-hangzhou:1:instance/i-x\", \"region\": \"cn-hangzhou\", \"account\": \"1\", \"known\": false}, \"parents\": []}]",
            "known attribute is set by the gateway",
            "entities.json",
        ),
        // An instance moved out of its account (into another's folder).
        (
            "entities.json",
            "[{\"uid\": {\"type\": \"Ecs::Instance\", \"id\": \"i-x\"}, \"attrs\": {\"arn\": \"acs:ecs:cn-hangzhou:1:instance/i-x\", \"region\": \"cn-hangzhou\", \"account\": \"1\"}, \"parents\": [{\"type\": \"Ram::Account\", \"id\": \"2\"}]}]",
            "parent is its account",
            "entities.json",
        ),
        // The same in Cedar's other uid form, which the checks on the JSON
        // do not recognise: refused on what Cedar parsed.
        (
            "entities.json",
            "[{\"uid\": {\"__entity\": {\"type\": \"Ecs::Instance\", \"id\": \"i-x\"}}, \"attrs\": {\"arn\": \"acs:ecs:cn-hangzhou:1:instance/i-x\", \"region\": \"cn-hangzhou\", \"account\": \"1\", \"known\": true}, \"parents\": [{\"type\": \"Ram::Account\", \"id\": \"2\"}]}]",
            "its parent is its account",
            "entities.json",
        ),
    ];
    for (file, content, message, location) in cases {
        let dir = scratch();
        std::fs::write(dir.path().join(file), content).unwrap();
        let error = policy::store::load(dir.path()).unwrap_err();
        let shown: Vec<String> = error.problems.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|p| p.contains(location) && p.contains(message)),
            "{file}: expected {location} and {message:?} in {shown:#?}"
        );
    }
    let dir = scratch();
    std::fs::remove_dir_all(dir.path().join("control")).unwrap();
    let error = policy::store::load(dir.path()).unwrap_err().to_string();
    assert!(error.contains("cannot read the control layer"), "{error}");
}

#[test]
fn each_call_evaluates_only_the_policies_that_can_concern_it() {
    use policy::index::Probe;
    let data = policy::store::load(&support::policies_dir()).unwrap();
    let ids = |set: &cedar_policy::PolicySet| -> Vec<String> {
        let mut ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    };
    let probe = |identity: &str, action: usize| {
        let principal = &data.principals[&CallerId::Spiffe(identity.into())];
        let in_layer = |layer| {
            ids(&data.layer_index(layer).policies_for(&Probe {
                member_of: &principal.member_of,
                action,
                instance_id: "i-demo-postpaid",
                arn: "acs:ecs:cn-hangzhou:1234567890123456:instance/i-demo-postpaid",
                region: "cn-hangzhou",
                request_region: "cn-hangzhou",
            }))
        };
        (
            in_layer(policy::Layer::Control),
            in_layer(policy::Layer::Identity),
        )
    };
    let (netops_control, netops_identity) = probe(support::NETOPS, 0);
    assert_eq!(netops_identity, ["identity.network-admins"]);
    let (webapp_control, webapp_identity) = probe(support::WEBAPP, 0);
    assert_eq!(
        webapp_identity,
        [
            "identity.app-teams-bandwidth",
            "identity.app-teams-no-temporary-upgrades"
        ]
    );
    // Control policies scoped to everyone, or to the principal's groups.
    assert!(netops_control.contains(&"control.admins-from-management-network".to_owned()));
    assert!(!netops_control.contains(&"control.no-public-ip-for-app-teams".to_owned()));
    assert!(webapp_control.contains(&"control.no-public-ip-for-app-teams".to_owned()));
    assert!(webapp_control.contains(&"control.cap-bandwidth-non-admins".to_owned()));
    // By action: the bandwidth cap names ModifyInstanceNetworkSpec only.
    let (allocate_control, _) = probe(support::WEBAPP, 1);
    assert!(!allocate_control.contains(&"control.cap-bandwidth-non-admins".to_owned()));
    assert!(allocate_control.contains(&"control.no-public-ip-for-app-teams".to_owned()));
}

/// A Kubernetes ConfigMap volume swaps its `..data` symlink to a new
/// directory; a reload must read every file from one side of the swap.
/// Here the two versions are each valid but their mix is not (the new
/// entities.json uses an attribute only the new schema declares), and the
/// swap flips without pause while two threads reload: no reload may fail.
#[cfg(unix)]
#[test]
fn a_configmap_swap_is_never_read_half_old_half_new() {
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicBool, Ordering};

    let volume = tempfile::tempdir().unwrap();
    let base = volume.path().to_owned();
    support::copy_dir(&support::policies_dir(), &base.join("..v1"));
    support::copy_dir(&support::policies_dir(), &base.join("..v2"));
    let schema = base.join("..v2/schema.cedarschema");
    let text = std::fs::read_to_string(&schema).unwrap();
    std::fs::write(
        &schema,
        text.replace(
            "hasPublicIp?: Bool,",
            "hasPublicIp?: Bool,\n    owner?: String,",
        ),
    )
    .unwrap();
    let entities = base.join("..v2/entities.json");
    let text = std::fs::read_to_string(&entities).unwrap();
    std::fs::write(
        &entities,
        text.replacen(
            "\"hasPublicIp\": false",
            "\"hasPublicIp\": false, \"owner\": \"netops\"",
            1,
        ),
    )
    .unwrap();
    let v1 = policy::store::load(&base.join("..v1")).unwrap().version;
    let v2 = policy::store::load(&base.join("..v2")).unwrap().version;
    assert_ne!(v1, v2);
    configmap_links(&base, "..v1");
    let store = Arc::new(Store::open(&base).unwrap());
    assert_eq!(
        store.current().version,
        v1,
        "the version names no directory"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (base, stop) = (base.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flips = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let target = if flips.is_multiple_of(2) {
                    "..v2"
                } else {
                    "..v1"
                };
                let tmp = base.join("..data_tmp");
                symlink(target, &tmp).unwrap();
                std::fs::rename(&tmp, base.join("..data")).unwrap();
                flips += 1;
            }
            flips
        })
    };
    let reloaders: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || (0..25).filter(|_| store.reload().is_err()).count())
        })
        .collect();
    let failed: usize = reloaders.into_iter().map(|t| t.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 0);
    assert_eq!(failed, 0, "reloads read a mix of both versions");
    let version = store.reload().unwrap();
    assert!(version == v1 || version == v2, "{version}");
    assert_eq!(store.reload_counts(), (51, 0));
}

/// Issue 20, item 8: the kubelet swaps a ConfigMap's `..data` and then
/// deletes the directory it left; a reload reading the old one then failed,
/// and the policies stayed stale until the next change. Now a load whose
/// `..data` moved while it read reads the new directory.
#[test]
fn a_configmap_replaced_mid_reload_is_read_again() {
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicBool, Ordering};

    let volume = tempfile::tempdir().unwrap();
    let base = volume.path().to_owned();
    support::copy_dir(&support::policies_dir(), &base.join("..ts0"));
    configmap_links(&base, "..ts0");
    let store = Arc::new(Store::open(&base).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let kubelet = {
        let (base, stop) = (base.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let new = format!("..ts{}", swaps + 1);
                support::copy_dir(&support::policies_dir(), &base.join(&new));
                let tmp = base.join("..data_tmp");
                symlink(&new, &tmp).unwrap();
                std::fs::rename(&tmp, base.join("..data")).unwrap();
                std::fs::remove_dir_all(base.join(format!("..ts{swaps}"))).unwrap();
                swaps += 1;
                // ConfigMap updates come seconds apart; a load takes tens
                // of milliseconds.
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            swaps
        })
    };
    let failed = (0..15)
        .filter(|_| store.reload().inspect_err(|e| eprintln!("{e}")).is_err())
        .count();
    stop.store(true, Ordering::Relaxed);
    let swaps = kubelet.join().unwrap();
    assert!(swaps > 0);
    assert_eq!(
        failed, 0,
        "reloads failed on a directory the kubelet removed"
    );
}

/// A case file names its account (the ARNs are that account's) and every
/// case has a region, from the request or the file: nothing is taken from
/// the demo.
#[test]
fn a_case_file_names_its_account_and_region() {
    let dir = scratch();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let case = "[[case]]\nname = \"n\"\nspiffe_id = \"spiffe://demo.local/sa/netops\"\n\
                request = { instance_id = \"i-demo-postpaid\", internet_max_bandwidth_out = 5 }\n\
                expect = \"Allow\"\n";
    let no_account = dir.path().join("tests/no-account.toml");
    std::fs::write(&no_account, case).unwrap();
    let error = policy_tools::cases::run(&store, &[no_account]).unwrap_err();
    assert!(error.to_string().contains("account_id"), "{error}");
    let empty_account = dir.path().join("tests/empty-account.toml");
    std::fs::write(&empty_account, format!("account_id = \"\"\n{case}")).unwrap();
    let error = policy_tools::cases::run(&store, &[empty_account]).unwrap_err();
    assert!(error.to_string().contains("account_id \"\""), "{error}");

    let no_region = dir.path().join("tests/no-region.toml");
    std::fs::write(
        &no_region,
        format!("account_id = \"1234567890123456\"\n{case}"),
    )
    .unwrap();
    let report = policy_tools::cases::run(&store, &[no_region]).unwrap();
    assert_eq!(report.passed, 0);
    assert!(
        report.failures[0].contains("no region_id"),
        "{:?}",
        report.failures
    );
}

/// A ConfigMap has no subdirectories: `<layer>__<name>.cedar` at the top is
/// `<layer>/<name>.cedar`, and both forms decide alike. With neither form a
/// layer is missing and the load fails.
#[test]
fn policy_files_may_sit_flat_as_a_configmap_holds_them() {
    let dir = scratch();
    for layer in ["control", "identity"] {
        for entry in std::fs::read_dir(dir.path().join(layer)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::rename(&path, dir.path().join(format!("{layer}__{name}"))).unwrap();
        }
        std::fs::remove_dir(dir.path().join(layer)).unwrap();
    }
    let flat = Store::open(dir.path()).unwrap();
    let nested = Store::open(support::policies_dir()).unwrap();
    assert_eq!(
        flat.current().policy_count(),
        nested.current().policy_count()
    );
    let decide = |dir: &Path| {
        authorizer(dir)
            .decide(
                &caller(support::WEBAPP),
                &bandwidth("i-demo-postpaid", 50),
                chrono::Utc::now(),
            )
            .outcome
    };
    assert_eq!(decide(dir.path()), decide(&support::policies_dir()));

    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("control__") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("control layer"), "{error}");
}

/// A policy file outside the layers would silently not be in force (a
/// misnamed ConfigMap key, say): the load refuses it.
#[test]
fn a_policy_file_outside_the_layers_is_refused() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("guardrails.cedar"),
        "@id(\"control.stray\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("would not be read"), "{error}");
}

/// Issue 20, item 6: `control/teams/deny.cedar`, `control/deny.Cedar` and
/// `Identity/deny3.cedar`, each a forbid of everything, were ignored:
/// `policy validate` passed with the same version and netops was allowed.
/// Each is now refused with its path, and so is anything else that looks
/// like a policy the loader would not read.
#[test]
fn policy_files_the_loader_would_not_read_are_refused() {
    let forbid = "@id(\"stray\")\nforbid (principal, action, resource);\n";
    for (place, named) in [
        ("control/teams/deny.cedar", "control/teams/deny.cedar"),
        ("control/deny.Cedar", "control/deny.Cedar"),
        ("Identity/deny3.cedar", "Identity"),
        ("tests/deny.CEDAR", "tests/deny.CEDAR"),
        ("control__deny.cedar.Cedar", "control__deny.cedar.Cedar"),
    ] {
        let dir = scratch();
        let path = dir.path().join(place);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, forbid).unwrap();
        let error = Store::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains(named), "{place}: {error}");
        assert!(
            error.contains("would not be read") || error.contains("is not read"),
            "{place}: {error}"
        );
    }
    // The attacker's review: a link named like a layer in another case, a
    // top-level `..` file, and a file nested too deep are refused too.
    let dir = scratch();
    let elsewhere = scratch();
    std::os::unix::fs::symlink(elsewhere.path().join("control"), dir.path().join("Control"))
        .unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("Control"), "{error}");
    let dir = scratch();
    std::fs::write(dir.path().join("..x.cedar"), forbid).unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("..x.cedar"), "{error}");
    let dir = scratch();
    let deep = dir.path().join("tests/a/b/c/d/e/f/g/h/i");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deny.cedar"), forbid).unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("nested more than 8 deep"), "{error}");
    // What the loader reads, and files that are not policies, pass.
    let dir = scratch();
    std::fs::write(dir.path().join("README.md"), "notes").unwrap();
    std::fs::write(dir.path().join("control/notes.txt"), "notes").unwrap();
    Store::open(dir.path()).unwrap();
}

/// A layer that exists but cannot be read as a directory (here a file named
/// `control`, as a ConfigMap key could make) fails the load; it does not give
/// way to the flat `control__` files and drop its forbids.
#[test]
fn an_unreadable_layer_does_not_give_way_to_flat_files() {
    let dir = scratch();
    std::fs::remove_dir_all(dir.path().join("control")).unwrap();
    std::fs::write(
        dir.path().join("control__baseline.cedar"),
        "@id(\"control.baseline\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("control"),
        "@id(\"control.forbid-all\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    let error = Store::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("control layer"), "{error}");
}

/// An authorizer over `dir`, and a request raising i-demo-postpaid's
/// bandwidth.
fn authorizer_and_raise(dir: PathBuf) -> (policy::Authorizer, validate::ModifyRequest) {
    let authorizer = policy::Config {
        dir,
        account_id: "1234567890123456".into(),
        dependent_actions: vec![],
    }
    .build()
    .unwrap();
    let request = validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        internet_max_bandwidth_out: Some(20),
        ..support::request("i-demo-postpaid")
    })
    .unwrap();
    (authorizer, request)
}

/// Two identities mapped to one ARN with different groups: each is decided
/// with its own groups, whichever calls first (the request entities are kept
/// per identity, not per ARN).
#[test]
fn identities_sharing_an_arn_keep_their_own_groups() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("principals.toml"),
        r#"[[principal]]
spiffe_id = "spiffe://t/contractor"
arn = "acs:ram::1234567890123456:role/shared"
groups = ["Contractors"]

[[principal]]
spiffe_id = "spiffe://t/employee"
arn = "acs:ram::1234567890123456:role/shared"
groups = []
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("control/contractors.cedar"),
        "@id(\"control.no-contractors\")\nforbid (principal in Ram::Group::\"Contractors\", action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("identity/everyone.cedar"),
        "@id(\"identity.everyone\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let (authorizer, request) = authorizer_and_raise(dir.path().to_owned());
    let now = chrono::Utc::now();
    let employee = authorizer.decide(&caller("spiffe://t/employee"), &request, now);
    assert!(employee.allowed(), "{employee:?}");
    let contractor = authorizer.decide(&caller("spiffe://t/contractor"), &request, now);
    match contractor.outcome {
        Outcome::Deny(denial) => assert_eq!(denial.policies, ["control.no-contractors"]),
        other => panic!("the contractor decided with the employee's groups: {other:?}"),
    }
}

/// Once entities.json describes the Resource Directory, an account it does
/// not place in a folder is denied: a folder's guardrail must not miss it.
#[test]
fn an_account_outside_the_described_directory_is_denied() {
    let dir = scratch();
    let text = std::fs::read_to_string(dir.path().join("entities.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_array_mut()
        .unwrap()
        .retain(|item| item["uid"]["id"] != "2234567890123456");
    std::fs::write(dir.path().join("entities.json"), json.to_string()).unwrap();
    let authorizer = authorizer(dir.path());
    let request = validate::modify_request(pb::ModifyInstanceNetworkSpecRequest {
        region_id: "cn-hangzhou".into(),
        instance_id: "i-prod-web".into(),
        internet_max_bandwidth_out: Some(8),
        account_id: "2234567890123456".into(),
        ..Default::default()
    })
    .unwrap();
    let decision = authorizer.decide(&caller(support::NETOPS), &request, chrono::Utc::now());
    match decision.outcome {
        Outcome::Deny(denial) => {
            assert!(
                denial.errors[0].contains("not placed in a Resource Directory folder"),
                "{denial:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The default account is placed: decided as usual.
    let decision = authorizer.decide(
        &caller(support::NETOPS),
        &bandwidth("i-demo-postpaid", 8),
        chrono::Utc::now(),
    );
    assert!(decision.allowed(), "{decision:?}");
}

/// An instance entities.json gives to another account is not this
/// account's: rules on this account's ARNs would miss it, so it is denied.
#[test]
fn an_instance_of_another_account_is_denied() {
    let dir = scratch();
    let entities = std::fs::read_to_string(dir.path().join("entities.json"))
        .unwrap()
        .replace(
            "acs:ecs:cn-hangzhou:1234567890123456:instance/i-demo-postpaid",
            "acs:ecs:cn-hangzhou:999:instance/i-demo-postpaid",
        );
    let mut json: serde_json::Value = serde_json::from_str(&entities).unwrap();
    for item in json.as_array_mut().unwrap() {
        if item["uid"]["id"] == "i-demo-postpaid" {
            item["attrs"]["account"] = "999".into();
        }
    }
    std::fs::write(dir.path().join("entities.json"), json.to_string()).unwrap();
    let (authorizer, request) = authorizer_and_raise(dir.path().to_owned());
    let decision = authorizer.decide(&caller(support::NETOPS), &request, chrono::Utc::now());
    match decision.outcome {
        Outcome::Deny(denial) => {
            assert!(denial.errors[0].contains(":999:instance/"), "{denial:?}");
        }
        other => panic!("{other:?}"),
    }
}
