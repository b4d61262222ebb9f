//! `ecs-gateway policy …`: check, test, explain, compare, lint and import
//! policies, one file per subcommand.

use std::process::ExitCode;

use crate::config;

#[cfg(feature = "tools")]
mod diff;
mod explain;
#[cfg(feature = "tools")]
mod import_ram;
#[cfg(feature = "tools")]
mod lint;
#[cfg(feature = "tools")]
mod test;
mod validate;

/// The `policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the policy directory against its schema; exit 1 with
    /// file:line errors.
    Validate(validate::Args),
    /// Run declarative policy cases (default: the directory's tests/*.toml).
    #[cfg(feature = "tools")]
    Test(test::Args),
    /// Explain the decision on a request without forwarding anything: every
    /// action (the call's and its dependent ones) in every layer, with the
    /// determining policies and any evaluation errors. Exit 0 when allowed,
    /// 2 when denied, 1 when it cannot be explained (bad flags, policies or
    /// request).
    Explain(Box<explain::Args>),
    /// Prove what a policy change does to the decisions the gateway enforces
    /// (both layers, dependent actions, errors that deny) for every action
    /// it decides (ecs:ModifyInstanceNetworkSpec, and the Explain rpc's
    /// ecsgateway:Explain and ecsgateway:SimulatePrincipal), over every
    /// request the schema allows, with the cvc5 solver: equivalent,
    /// narrows, widens, or both, per action and overall, with a
    /// counterexample per difference, replayed through the authorizer.
    /// Exit 0 when it does not widen, 1 when it widens, 2 when it cannot
    /// decide (the reason and the actions not proved are printed).
    #[cfg(feature = "tools")]
    Diff(Box<diff::Args>),
    /// Prove, with the cvc5 solver, which policies can never apply, which
    /// permits forbids always override, and which policies can fail to
    /// evaluate (with a call that makes them fail). Exit 0 when there is
    /// nothing to report, 1 when there is, 2 when it cannot decide.
    #[cfg(feature = "tools")]
    Lint(lint::Args),
    /// Print a RAM policy document as Cedar policies that decide as RAM
    /// decides it, attached to a group or a principal; exit 1 naming the
    /// statement and the construct when it cannot be imported exactly.
    #[cfg(feature = "tools")]
    ImportRam(import_ram::Args),
}

/// Runs a `policy` subcommand.
pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Validate(args) => validate::run(&args),
        #[cfg(feature = "tools")]
        Command::Test(args) => test::run(args),
        Command::Explain(args) => explain::run(&args),
        #[cfg(feature = "tools")]
        Command::Diff(args) => diff::run(&args).await,
        #[cfg(feature = "tools")]
        Command::Lint(args) => lint::run(&args).await,
        #[cfg(feature = "tools")]
        Command::ImportRam(args) => import_ram::run(args),
    }
}

/// The operator's settings file, as `serve` reads it.
fn settings_file(file: &std::path::Path) -> Result<config::Config, config::Error> {
    let flags = config::Flags::default().with(config::table::CONFIG, file.display().to_string());
    config::load(&flags, super::env)
}

/// Said by `policy explain` and `policy diff` run without the gateway's
/// settings: a gateway with dependent actions in its settings decides
/// otherwise.
const NO_SETTINGS: &str = "note: no --config: decided without a settings file's \
    [[policy.dependent_actions]], as a gateway without them would (the demo's are in \
    examples/demo.toml: --config examples/demo.toml)";

#[cfg(feature = "tools")]
/// The solver could not decide: the reason, as text or JSON, and
/// [`super::exit::UNDECIDED`].
fn undecided(reason: &str, json: bool) -> ExitCode {
    if json {
        out!(
            "{}",
            serde_json::json!({ "result": "could not decide", "reason": reason })
        );
    } else {
        out!("could not decide: {reason}");
    }
    ExitCode::from(super::exit::UNDECIDED)
}

#[cfg(feature = "tools")]
/// A spinner with the time spent, on stderr for work that takes seconds;
/// drawn only when stderr is a terminal (quiet in pipes and CI).
fn working(message: &'static str) -> indicatif::ProgressBar {
    let spinner =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
            .with_message(message);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}
