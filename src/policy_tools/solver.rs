//! The solver plumbing `policy diff` and `policy lint` share: cvc5 started
//! with a time limit, and the symbolic compiler's failures as reasons a
//! user can act on.

use std::path::Path;
use std::time::Duration;

use cedar_policy_symcc::solver::LocalSolver;

/// Why the comparison could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not decide: {0}")]
pub struct Undecided(pub String);

pub(crate) fn undecided(message: impl Into<String>) -> Undecided {
    Undecided(message.into())
}

/// Starts cvc5 (from `CVC5`, else `PATH`) with a time limit per query.
///
/// # Errors
///
/// cvc5 cannot be started; the message says how to install it.
pub fn solver(time_limit: Duration) -> Result<LocalSolver, Undecided> {
    let path = std::env::var_os("CVC5").unwrap_or_else(|| "cvc5".into());
    LocalSolver::from_command(
        tokio::process::Command::new(&path)
            .args(["--lang", "smt"])
            .arg(format!("--tlimit-per={}", time_limit.as_millis().max(1)))
            // Finite model finding for strings: ARN patterns (`like`) and
            // their negations made queries over 100 policies run past a
            // minute; with it they take seconds (docs/benchmarks.md). An
            // answer stays exact: what it cannot settle is "unknown", which
            // is "could not decide".
            .arg("--strings-fmf")
            .kill_on_drop(true),
    )
    .map_err(|e| {
        undecided(format!(
            "cannot start the cvc5 solver ({}: {e}): install it (Debian and Ubuntu: `apt-get install cvc5`; \
             or a release from https://github.com/cvc5/cvc5/releases) and put it on PATH, or set CVC5 to its path",
            Path::new(&path).display()
        ))
    })
}

/// Maps the symbolic compiler's errors to the reason a user can act on.
pub fn solver_error(error: &cedar_policy_symcc::err::Error, time_limit: Duration) -> Undecided {
    use cedar_policy_symcc::err::Error;
    match error {
        Error::SolverUnknown => undecided(format!(
            "the solver found no answer within {} per query (--time-limit)",
            humantime::format_duration(time_limit)
        )),
        other => undecided(format!("the symbolic compiler failed: {other}")),
    }
}
