//! `policy validate`: the policy directory against its schema.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{cli::exit, config, policy};

/// `policy validate`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
}

/// Prints what the directory holds, or each problem with its file and line.
pub fn run(args: &Args) -> ExitCode {
    match policy::store::load(&args.policies) {
        Ok(data) => {
            out!(
                "{}: {} policies, {} principals, {} instances valid (version {})",
                args.policies.display(),
                data.policy_count(),
                data.principals.len(),
                data.instances.len(),
                data.version
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            ExitCode::from(exit::FAILURE)
        }
    }
}
