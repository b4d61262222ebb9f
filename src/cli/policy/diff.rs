//! `policy diff`: prove, with cvc5, what a policy change does to the
//! decisions the gateway enforces.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{NO_SETTINGS, settings_file, undecided, working};
use crate::account::AccountId;
use crate::{cli::exit, policy_tools};
use policy_tools::diff::{Difference, Report, Verdict};

/// `policy diff`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy directory in force.
    #[arg(long)]
    active: PathBuf,
    /// The changed policy directory.
    #[arg(long)]
    candidate: PathBuf,
    /// The gateway's settings file, for its `[[policy.dependent_actions]]`
    /// and `policy.account_id` (or `--no-config`: none).
    #[arg(
        long,
        env = "ECS_GATEWAY_CONFIG",
        required_unless_present = "no_config"
    )]
    config: Option<PathBuf>,
    /// Compare without the operator's dependent actions (only the
    /// catalogue's); a gateway whose settings add some decides otherwise.
    #[arg(long, conflicts_with = "config")]
    no_config: bool,
    /// The Alibaba Cloud account owning the instances (default: the
    /// settings file's `policy.account_id`).
    #[arg(long, env = "ECS_GATEWAY_ACCOUNT_ID")]
    account_id: Option<String>,
    /// The solver's time per query; past it the answer is "could not
    /// decide".
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    time_limit: std::time::Duration,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Prints the verdict, per action and overall, with a counterexample per
/// difference; exit [`exit::SUCCESS`] when the candidate does not widen,
/// [`exit::FAILURE`] when it does, [`exit::UNDECIDED`] when that cannot be
/// proved or no counterexample confirms a widening.
pub async fn run(args: &Args) -> ExitCode {
    if args.config.is_none() {
        eprintln!("{NO_SETTINGS}");
    }
    let settings = match args.config.as_deref().map(settings_file).transpose() {
        Ok(settings) => settings,
        Err(error) => return undecided(&error.to_string(), args.json),
    };
    let Some(account_id) = args
        .account_id
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.policy.account_id.clone()))
        .filter(|a| AccountId::is_valid(a))
    else {
        return undecided(
            "no account ID (digits): give --account-id or a --config with policy.account_id",
            args.json,
        );
    };
    let options = policy_tools::diff::Options {
        active: args.active.clone(),
        candidate: args.candidate.clone(),
        rules: settings
            .as_ref()
            .map(|s| s.policy.dependent_actions.clone())
            .unwrap_or_default(),
        other_accounts: settings
            .as_ref()
            .map(|s| s.accounts.iter().map(|a| a.id.clone()).collect())
            .unwrap_or_default(),
        account_id,
        time_limit: args.time_limit,
    };
    let progress = working("policy diff: proving each decision with cvc5");
    let compared = policy_tools::diff::run(&options).await;
    progress.finish_and_clear();
    let report = match compared {
        Ok(report) => report,
        Err(policy_tools::diff::Undecided(reason)) => return undecided(&reason, args.json),
    };
    // A widening nobody can show (no counterexample reproduced through the
    // authorizer) is not a widening a CI gate may block on: said, and
    // exit::UNDECIDED.
    let unconfirmed = report.verdict.widens() && !report.widenings.iter().any(|d| d.confirmed);
    if args.json {
        print_json(&report, unconfirmed);
    } else {
        print_text(&report, unconfirmed);
    }
    ExitCode::from(if unconfirmed {
        exit::UNDECIDED
    } else if report.verdict.widens() {
        exit::FAILURE
    } else {
        exit::SUCCESS
    })
}

fn print_json(report: &Report, unconfirmed: bool) {
    let difference = |d: &Difference| {
        serde_json::json!({
            "action": d.action,
            "principalType": d.principal_type,
            "call": d.call,
            "active": d.active,
            "candidate": d.candidate,
            "confirmedByReplay": d.confirmed,
            "case": d.case,
        })
    };
    out!(
        "{:#}",
        serde_json::json!({
            "result": report.verdict.as_str(),
            "widensConfirmed": report.verdict.widens() && !unconfirmed,
            "actions": report.actions.iter().map(|a| {
                (a.action.to_owned(), serde_json::json!(a.verdict.as_str()))
            }).collect::<serde_json::Map<_, _>>(),
            "widenings": report.widenings.iter().map(difference).collect::<Vec<_>>(),
            "narrowings": report.narrowings.iter().map(difference).collect::<Vec<_>>(),
            "queries": report.queries,
            "seconds": report.elapsed.as_secs_f64(),
        })
    );
}

fn print_text(report: &Report, unconfirmed: bool) {
    out!(
        "{}{}: the candidate {} ({} solver queries, {:.2} s)",
        report.verdict.as_str(),
        if unconfirmed {
            " (unconfirmed: no counterexample reproduced through the authorizer; \
             they may be calls the gateway cannot receive)"
        } else {
            ""
        },
        match report.verdict {
            Verdict::Equivalent => "decides every call as the active policies do",
            Verdict::Narrows => "only denies calls the active policies allow",
            Verdict::Widens => "allows calls the active policies deny",
            Verdict::WidensAndNarrows =>
                "allows calls the active policies deny, and denies calls they allow",
        },
        report.queries,
        report.elapsed.as_secs_f64()
    );
    // Each decision proved, so a reader sees what the answer covers.
    for a in &report.actions {
        let with = if a.with.is_empty() {
            String::new()
        } else {
            format!(" (with {})", a.with.join(", "))
        };
        out!("  {}{with}: {}", a.action, a.verdict.as_str());
    }
    for (title, list) in [
        ("widens", &report.widenings),
        ("narrows", &report.narrowings),
    ] {
        for d in list {
            out!("\n{title}: {} by a {}", d.action, d.principal_type);
            out!("{:#}", d.call);
            out!("  active:    {}", d.active);
            out!("  candidate: {}", d.candidate);
            out!(
                "  replayed through the authorizer: {}",
                if d.confirmed {
                    "the decisions differ (confirmed)"
                } else {
                    "NOT reproduced: the solver's call may be one the gateway cannot receive"
                }
            );
            out!(
                "  reproduce with `policy test`:{}",
                d.case.replace('\n', "\n    ")
            );
        }
    }
}
