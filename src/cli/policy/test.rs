//! `policy test`: run declarative policy cases.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{cli::exit, config, policy, policy_tools};

/// `policy test`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
    /// Case files.
    files: Vec<PathBuf>,
}

/// Runs the cases; fails when one fails or none ran.
pub fn run(args: Args) -> ExitCode {
    let store = match policy::Store::open(&args.policies) {
        Ok(store) => std::sync::Arc::new(store),
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            return ExitCode::from(exit::FAILURE);
        }
    };
    let files = if args.files.is_empty() {
        policy_tools::cases::shipped(&args.policies)
    } else {
        args.files
    };
    match policy_tools::cases::run(&store, &files) {
        Ok(report) => {
            for failure in &report.failures {
                eprintln!("FAIL {failure}");
            }
            out!("{} passed, {} failed", report.passed, report.failures.len());
            if report.failures.is_empty() && report.passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
        Err(error) => super::super::fail(&error, false),
    }
}
