//! The `ecs-gateway` command line: one file per command, each owning its
//! arguments and a `run` that returns the process's exit code (the module
//! `exit` names them). `src/main.rs` only calls [`main`].
//!
//! | command | file |
//! |---|---|
//! | `serve` | `cli/serve.rs` |
//! | `demo` | `cli/demo.rs` |
//! | `simulator` | `cli/simulator.rs` |
//! | `call` | `cli/call.rs` (the client itself is `client.rs`) |
//! | `policy validate`, `test`, `explain`, `diff`, `lint`, `import-ram` | `cli/policy/`, one file each |

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::telemetry;

/// Prints a line on standard output. When the reader has gone away
/// (`ecs-gateway policy diff | head -1`), exits at once with
/// [`exit::CLOSED_PIPE`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::cli::closed_stdout(&error);
        }
    }};
}

/// [`out!`] without the newline.
#[cfg_attr(not(feature = "tools"), allow(unused_macros))]
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = write!(std::io::stdout().lock(), $($arg)*) {
            $crate::cli::closed_stdout(&error);
        }
    }};
}

mod call;
mod demo;
mod policy;
mod serve;
mod simulator;

/// The exit codes of every command but `call` (whose codes are
/// [`crate::client::Outcome`], listed in its `--help`).
pub(crate) mod exit {
    /// The command did what was asked; `policy explain`: allowed;
    /// `policy diff`: the candidate does not widen.
    pub const SUCCESS: u8 = 0;
    /// The command failed (unreadable files, invalid policies, a failing
    /// case); `policy diff`: the candidate widens; `policy lint`: findings.
    pub const FAILURE: u8 = 1;
    /// `policy explain`: the request is denied.
    pub const DENIED: u8 = 2;
    /// `policy diff` and `policy lint`: the solver could not decide (the
    /// reason is printed), or a widening no counterexample confirms.
    #[cfg_attr(not(feature = "tools"), allow(dead_code))]
    pub const UNDECIDED: u8 = 2;
    /// A setting is missing or wrong; nothing was bound.
    pub const BAD_SETTINGS: u8 = 64;
    /// Standard output was closed (what a shell reports for a process ended
    /// by SIGPIPE, so a pipeline with `pipefail` does not read it as
    /// success).
    pub const CLOSED_PIPE: u8 = 141;
}

/// Standard output cannot be written: quietly for a closed pipe, else said.
#[doc(hidden)]
pub fn closed_stdout(error: &std::io::Error) -> ! {
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("ecs-gateway: cannot write to standard output: {error}");
    }
    std::process::exit(i32::from(exit::CLOSED_PIPE))
}

/// A gRPC gateway that authorizes, signs and forwards Alibaba Cloud ECS
/// ModifyInstanceNetworkSpec calls.
#[derive(Debug, Parser)]
#[command(name = "ecs-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::Args),
    /// Run the gateway with its built-in ECS simulator and demo instances.
    Demo(demo::Args),
    /// Check and test Cedar policies.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Run the ECS simulator alone, with the demo instances and key.
    Simulator(simulator::Args),
    /// Call a gateway and print the answer or the error with its details.
    #[command(after_help = crate::client::EXIT_CODES)]
    Call(crate::client::CallArgs),
}

/// The process environment, as the settings loaders read it.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Says an error with its causes; [`exit::BAD_SETTINGS`] when a setting is
/// at fault, else [`exit::FAILURE`].
fn fail(error: &dyn std::error::Error, bad_settings: bool) -> ExitCode {
    eprintln!("ecs-gateway: {}", telemetry::chain(error));
    ExitCode::from(if bad_settings {
        exit::BAD_SETTINGS
    } else {
        exit::FAILURE
    })
}

/// Parses the command line, starts logging and tracing, runs the command.
pub async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // The client and the policy tools print their own results: only warnings
    // are logged unless RUST_LOG says otherwise.
    let quiet = matches!(cli.command, Command::Call(_) | Command::Policy(_));
    let settings = match telemetry::config(|name| match name {
        "RUST_LOG" if quiet => env(name).or_else(|| Some("warn".into())),
        // Only the servers export traces.
        n if quiet && n.starts_with("OTEL_") => None,
        _ => env(name),
    }) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, true),
    };
    let telemetry = match telemetry::init(&settings) {
        Ok(telemetry) => telemetry,
        Err(error) => return fail(&error, true),
    };
    let code = match cli.command {
        Command::Serve(args) => {
            serve::run(
                args,
                matches.subcommand_matches("serve").unwrap_or(&matches),
            )
            .await
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Policy(command) => policy::run(command).await,
        Command::Simulator(args) => simulator::run(args).await,
        Command::Call(args) => call::run(&args).await,
    };
    telemetry.shutdown();
    code
}
