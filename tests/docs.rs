//! The console examples of README.md and the guides in docs/, run as a
//! newcomer runs them, top to bottom, against the built binary and a demo on
//! free ports; what each command prints (stdout and stderr, as a terminal
//! shows them) must match what the docs show. `…` in a doc's output stands
//! for any text within a line, and a line of `…` alone for any lines. A
//! block after `<!-- not run: why -->` is not run (Kubernetes, real ECS);
//! `sh` blocks are not run either (grpcurl, kubectl and helm are not here),
//! and blocks of `policy diff`/`policy lint` only where cvc5 is.

mod support;

use std::path::Path;
use std::process::Command;

const BIN: &str = support::BIN;
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One `$ command` of a console block and the output the docs show.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// The console blocks of `text`, each as its steps.
fn console_blocks(text: &str) -> Vec<Vec<Step>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```console" {
            i += 1;
            continue;
        }
        let skipped = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_start().starts_with("<!-- not run"));
        let mut steps: Vec<Step> = Vec::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let line = lines[i];
            if let Some(command) = line.strip_prefix("$ ") {
                let mut command = command.to_owned();
                // Continuations and here-documents belong to the command.
                while command.ends_with('\\') && i + 1 < lines.len() {
                    i += 1;
                    command.push('\n');
                    command.push_str(lines[i]);
                }
                if let Some((_, marker)) = command.split_once("<<'") {
                    let end = marker.trim_end_matches('\'').to_owned();
                    while i + 1 < lines.len() {
                        i += 1;
                        command.push('\n');
                        command.push_str(lines[i]);
                        if lines[i] == end {
                            break;
                        }
                    }
                }
                steps.push(Step {
                    line: i + 1,
                    command,
                    expected: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(line.to_owned());
            }
            i += 1;
        }
        if !skipped {
            blocks.push(steps);
        }
        i += 1;
    }
    blocks
}

/// Whether `actual` is `pattern`, where each `…` stands for any text.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let (pattern, actual) = (pattern.trim_end(), actual.trim_end());
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Whether `actual` is `expected`, where a line of `…` alone stands for any
/// lines.
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

/// Runs a block's commands in one shell, as a reader types them, and
/// returns what each printed.
fn run(steps: &[Step], endpoint: &str) -> Vec<String> {
    const MARK: &str = "@@docs-step@@";
    let mut script = String::from("exec 2>&1\n");
    for step in steps {
        // The marker keeps the previous command's status for `echo $?`.
        script.push_str(&format!("__status=$?; echo {MARK}; (exit $__status)\n"));
        script.push_str(&step.command.replace("target/release/ecs-gateway", BIN));
        script.push('\n');
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(ROOT)
        .env("ECS_GATEWAY_ENDPOINT", endpoint)
        .env_remove("ECS_GATEWAY_CONFIG")
        .env_remove("ECS_GATEWAY_ACCOUNT_ID")
        .env_remove("ECS_GATEWAY_TOKEN")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(&format!("{MARK}\n"))
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn console_examples_print_what_the_docs_show() {
    let (_demo, addr, _) = support::spawn_demo("off", std::process::Stdio::null());
    let endpoint = format!("http://{addr}");
    let mut files = vec![Path::new(ROOT).join("README.md")];
    let mut guides: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    guides.sort();
    files.extend(guides);
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for steps in console_blocks(&text) {
            let proves = steps
                .iter()
                .any(|s| s.command.contains("policy diff") || s.command.contains("policy lint"));
            if proves && !support::solver_installed() {
                continue;
            }
            let outputs = run(&steps, &endpoint);
            for (step, output) in steps.iter().zip(&outputs) {
                ran += 1;
                // Blank lines that separate commands in a block are not output.
                let actual: Vec<&str> = output.trim_end().lines().collect();
                let mut expected = step.expected.clone();
                while expected.last().is_some_and(|l| l.trim().is_empty()) {
                    expected.pop();
                }
                if !lines_match(&expected, &actual) {
                    failures.push(format!(
                        "{}:{}: $ {}\n--- the docs show:\n{}\n--- it printed:\n{}",
                        file.display(),
                        step.line,
                        step.command,
                        step.expected.join("\n"),
                        output.trim_end()
                    ));
                }
            }
            assert_eq!(
                outputs.len(),
                steps.len(),
                "{}: a step did not run",
                file.display()
            );
        }
    }
    assert!(ran >= 8, "only {ran} console commands found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_matcher_reads_ellipses_as_the_docs_mean_them() {
    assert!(line_matches(
        "request_id 44C0…, client_token …",
        "request_id 44C0ABC, client_token x"
    ));
    assert!(!line_matches("exit 4", "exit 5"));
    assert!(line_matches("…", "anything"));
    assert!(!line_matches("a…c", "abd"));
    let expected: Vec<String> = ["{", "…", "}"].map(str::to_owned).to_vec();
    assert!(lines_match(
        &expected,
        &["{", "  \"a\": 1,", "  \"b\": 2", "}"]
    ));
    assert!(!lines_match(&expected, &["{", "  \"a\": 1"]));
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// as dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text of a Markdown file outside its fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut inside = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                inside = !inside;
                return false;
            }
            !inside
        })
        .collect()
}

/// Every relative link of the README and the guides names a file that
/// exists, and every `#anchor` a heading of it: guides move (issue 21), and
/// a newcomer's links must not break.
#[test]
fn links_in_the_docs_resolve() {
    let root = Path::new(ROOT);
    let mut files = vec![
        root.join("README.md"),
        root.join("clients/python/README.md"),
        root.join("clients/typescript/README.md"),
    ];
    files.extend(
        std::fs::read_dir(root.join("docs"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for line in prose(&text) {
            for (at, _) in line.match_indices("](") {
                let rest = &line[at + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = &rest[..end];
                if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                    continue;
                }
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let linked = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !linked.exists() {
                    broken.push(format!("{}: {target}: no such file", file.display()));
                    continue;
                }
                if !fragment.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                    let heading = std::fs::read_to_string(&linked).unwrap();
                    let found = prose(&heading)
                        .iter()
                        .any(|l| l.starts_with('#') && anchor(l) == fragment);
                    if !found {
                        broken.push(format!("{}: {target}: no such heading", file.display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
