//! `policy import-ram`: a RAM policy document as Cedar policies.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::{cli::exit, policy_tools};

/// `policy import-ram`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The RAM policy document (JSON).
    file: PathBuf,
    /// Attach to this group (`principal in Ram::Group::"NAME"`).
    #[arg(
        long,
        conflicts_with = "principal",
        required_unless_present = "principal"
    )]
    group: Option<String>,
    /// Attach to this RAM user or role ARN.
    #[arg(long)]
    principal: Option<String>,
    /// The layer the policies are meant for (sets the default id prefix).
    #[arg(long, value_enum, default_value = "identity")]
    layer: Layer,
    /// `@id` prefix: policies are `PREFIX.<statement number>`
    /// (default: `<layer>.ram`).
    #[arg(long)]
    id_prefix: Option<String>,
}

/// The layer of imported policies.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Layer {
    Identity,
    Control,
}

/// Prints the Cedar policies, or names the statement that cannot be
/// imported exactly.
pub fn run(args: Args) -> ExitCode {
    let document = match std::fs::read_to_string(&args.file) {
        Ok(document) => document,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.file.display());
            return ExitCode::from(exit::FAILURE);
        }
    };
    let target = match (args.group, args.principal) {
        (Some(group), _) => policy_tools::ram::Target::Group(group),
        (None, Some(arn)) => policy_tools::ram::Target::Principal(arn),
        (None, None) => unreachable!("clap requires --group or --principal"),
    };
    let prefix = args.id_prefix.unwrap_or_else(|| match args.layer {
        Layer::Identity => "identity.ram".to_owned(),
        Layer::Control => "control.ram".to_owned(),
    });
    match policy_tools::ram::import(&document, &target, &prefix) {
        Ok(cedar) => {
            out_raw!("{cedar}");
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            eprintln!("{}: {refusal}", args.file.display());
            ExitCode::from(exit::FAILURE)
        }
    }
}
