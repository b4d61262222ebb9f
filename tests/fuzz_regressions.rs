//! Every input under fuzz/regressions/<target>/ (crashes once found, and
//! seeds for the edges) through the fuzz targets' entry points: none may
//! panic. `fuzz/run.sh` runs the fuzzers themselves, outside CI.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs for {target}");
    files
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn regression_inputs_never_panic() {
    use ecs_gateway::fuzzing;
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 8] = [
        ("validate", fuzzing::validate),
        ("explain", fuzzing::explain),
        ("canonical_query", fuzzing::canonical_query),
        ("simulator_auth", fuzzing::simulator_auth),
        ("error_body", fuzzing::error_body),
        ("credentials_file", fuzzing::credentials_file),
        ("credential_answers", fuzzing::credential_answers),
        ("xfcc", fuzzing::xfcc),
    ];
    for (target, run) in targets {
        for (name, data) in inputs(target) {
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{name} panicked");
        }
    }
}
