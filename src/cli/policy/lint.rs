//! `policy lint`: prove, with cvc5, which policies never apply, are always
//! overridden, or can fail to evaluate.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{undecided, working};
use crate::{cli::exit, config, policy_tools};

/// `policy lint`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
    /// The solver's time per query.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    time_limit: std::time::Duration,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Prints the findings; fails when there is one.
pub async fn run(args: &Args) -> ExitCode {
    let json = args.json;
    let progress =
        working("policy lint: proving each policy with cvc5 (about 30 s for the shipped ones)");
    let linted = policy_tools::lint::run(&args.policies, args.time_limit).await;
    progress.finish_and_clear();
    let report = match linted {
        Ok(report) => report,
        Err(policy_tools::diff::Undecided(reason)) => return undecided(&reason, json),
    };
    if json {
        out!(
            "{:#}",
            serde_json::json!({
                "result": if report.findings.is_empty() { "clean" } else { "findings" },
                "policies": report.policies,
                "findings": report.findings.iter().map(|f| serde_json::json!({
                    "policy": f.policy, "file": f.file, "kind": f.kind.as_str(),
                    "detail": f.detail, "example": f.example,
                })).collect::<Vec<_>>(),
                "queries": report.queries,
                "seconds": report.elapsed.as_secs_f64(),
            })
        );
    } else {
        for f in &report.findings {
            out!(
                "{} ({}): {}: {}",
                f.policy,
                f.file,
                f.kind.as_str(),
                f.detail
            );
            if let Some(example) = &f.example {
                out!("{example:#}");
            }
        }
        out!(
            "{} policies, {} finding(s) ({} solver queries, {:.2} s)",
            report.policies,
            report.findings.len(),
            report.queries,
            report.elapsed.as_secs_f64()
        );
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    }
}
