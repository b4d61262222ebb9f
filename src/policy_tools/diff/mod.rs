//! `ecs-gateway policy diff`: proves, with Cedar's symbolic compiler
//! (`cedar-policy-symcc`) and the cvc5 solver, whether a candidate policy
//! directory can allow a call the active one denies (it **widens** access),
//! deny one the active one allows (it **narrows**), both, or neither
//! (**equivalent**), over every request the schema allows.
//!
//! What is compared is each decision the gateway enforces
//! ([`super::enforced`], [`enforced::DECIDED`]): both layers, errors that
//! deny, for a ModifyInstanceNetworkSpec call with its dependent actions,
//! and for the permission checks of the Explain rpc (`ecsgateway:Explain`,
//! and `ecsgateway:SimulatePrincipal` with it for another identity). Each
//! gets its own verdict; the answer combines them. Each difference comes
//! with a counterexample made readable (the solver names free entities with
//! empty strings) and replayed through the ordinary authorizer (the call's
//! decision, or the Explain's permission check as the rpc makes it), on
//! copies of both directories that hold its principal and instance: a
//! widening is reported as confirmed only when the active policies deny the
//! request and the candidate ones allow it.
//!
//! The limits are said, never hidden: a solver timeout, a construct the
//! model cannot write, differing schemas, or a missing cvc5 answer "could
//! not decide" with the reason, naming the actions not proved.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cedar_policy::{PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet};
use serde_json::Value;

use super::enforced;
use crate::policy::DependentRule;
use crate::policy::catalogue::{self, Action};
use crate::policy::store::{self, PolicyData};

use super::solver::undecided;
pub use super::solver::{Undecided, solver, solver_error};
use counterexample::replay;
pub use counterexample::{REPLAY_IDENTITY, SIMULATED_IDENTITY};

mod counterexample;
mod values;

/// The default time the solver gets per query.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// The policies in force.
    pub active: PathBuf,
    /// The change.
    pub candidate: PathBuf,
    /// The operator's dependent actions.
    pub rules: Vec<DependentRule>,
    /// The default account: the one owning the instances of calls that
    /// name none.
    pub account_id: String,
    /// The other accounts the gateway serves (its `[[accounts]]`): the
    /// proofs range over the instances of all of them.
    pub other_accounts: Vec<String>,
    /// The solver's time per query.
    pub time_limit: Duration,
}

impl Options {
    /// Every account served, the default first.
    pub fn accounts(&self) -> Vec<String> {
        std::iter::once(self.account_id.clone())
            .chain(self.other_accounts.iter().cloned())
            .collect()
    }
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same decision on every request.
    Equivalent,
    /// Some calls allowed today are denied; none denied today is allowed.
    Narrows,
    /// Some call denied today is allowed.
    Widens,
    /// Both.
    WidensAndNarrows,
}

impl Verdict {
    /// Its name in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equivalent => "equivalent",
            Self::Narrows => "narrows",
            Self::Widens => "widens",
            Self::WidensAndNarrows => "widens and narrows",
        }
    }

    /// True when some call denied today would be allowed.
    pub fn widens(self) -> bool {
        matches!(self, Self::Widens | Self::WidensAndNarrows)
    }

    /// The answer when the candidate widens and narrows as said.
    pub fn of(widens: bool, narrows: bool) -> Self {
        match (widens, narrows) {
            (false, false) => Self::Equivalent,
            (false, true) => Self::Narrows,
            (true, false) => Self::Widens,
            (true, true) => Self::WidensAndNarrows,
        }
    }
}

/// A request decided differently, made readable and replayed.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The request's action: the call's, or the Explain's
    /// (`ecsgateway:Explain`, `ecsgateway:SimulatePrincipal`).
    pub action: &'static str,
    /// The principal's entity type.
    pub principal_type: String,
    /// The call: principal (with groups), resource (with attributes and
    /// tags), context and request fields, and for
    /// `ecsgateway:SimulatePrincipal` the simulated identity, as JSON.
    pub call: Value,
    /// The active policies' decision of the replayed call.
    pub active: String,
    /// The candidate policies' decision.
    pub candidate: String,
    /// The replay shows the difference.
    pub confirmed: bool,
    /// A `policy test` case (with the principal and instance it needs) that
    /// reproduces it.
    pub case: String,
}

/// One decision's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionVerdict {
    /// The action of the requests compared (see [`enforced::DECIDED`]).
    pub action: &'static str,
    /// The other actions whose policies decide those requests: dependent
    /// actions, or `ecsgateway:Explain` for `ecsgateway:SimulatePrincipal`.
    pub with: Vec<&'static str>,
    /// The answer for those requests.
    pub verdict: Verdict,
}

/// The result of a comparison.
#[derive(Debug, Clone)]
pub struct Report {
    /// The answer: the actions' answers combined.
    pub verdict: Verdict,
    /// Each decided action's answer, in [`enforced::DECIDED`]'s order.
    pub actions: Vec<ActionVerdict>,
    /// Calls the candidate allows and the active policies deny.
    pub widenings: Vec<Difference>,
    /// Calls the candidate denies and the active policies allow.
    pub narrowings: Vec<Difference>,
    /// Solver queries made.
    pub queries: usize,
    /// Time taken.
    pub elapsed: Duration,
}

/// The envs of an action: one per principal type.
fn envs<'a>(schema: &'a Schema, action: &'a Action) -> impl Iterator<Item = RequestEnv> + 'a {
    let uid = catalogue::action_uid(action.name);
    schema
        .request_envs()
        .filter(move |env| *env.action() == uid)
}

/// Compares `options.candidate` with `options.active`, for every decision
/// of [`enforced::DECIDED`].
///
/// # Errors
///
/// [`Undecided`] with the reason; when some actions were proved and others
/// not, it names those not proved (with why) and the answers of the others.
pub async fn run(options: &Options) -> Result<Report, Undecided> {
    let started = Instant::now();
    let load =
        |dir: &Path| store::load(dir).map_err(|e| undecided(format!("{}: {e}", dir.display())));
    let (active, candidate) = (load(&options.active)?, load(&options.candidate)?);
    let schema_text = |dir: &Path| {
        std::fs::read_to_string(dir.join("schema.cedarschema"))
            .map(|t| t.trim().to_owned())
            .map_err(|e| undecided(format!("{}: {e}", dir.display())))
    };
    if schema_text(&options.active)? != schema_text(&options.candidate)? {
        return Err(undecided(
            "the two directories' schemas differ: policy diff compares policies under one schema",
        ));
    }
    // Data, not policies: a change there changes decisions the proof does
    // not see (a group granted to an identity, a tag removed).
    for file in ["principals.toml", "entities.json"] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).unwrap_or_default();
        if read(&options.active) != read(&options.candidate) {
            return Err(undecided(format!(
                "{file} differs between the two directories: policy diff proves policy changes, \
                 with the same principals and instances; compare the data separately"
            )));
        }
    }
    crate::policy::check_dependent_actions(&options.rules).map_err(|e| undecided(e.to_string()))?;
    // Policies that plainly cannot fail (no arithmetic, no getTag, no
    // datetime method, extension values from literals) need no error term:
    // the formula shrinks, the decision stays. Seen from the text, for
    // every action a policy applies to, per directory: a policy of the same
    // id may differ.
    let error_free = [&active, &candidate].map(|data| {
        data.control
            .policies()
            .chain(data.identity.policies())
            .filter(|p| enforced::plainly_error_free(p))
            .map(|p| p.id().to_string())
            .collect::<HashSet<String>>()
    });
    let mut report = Report {
        verdict: Verdict::Equivalent,
        actions: Vec::new(),
        widenings: Vec::new(),
        narrowings: Vec::new(),
        queries: 0,
        elapsed: Duration::ZERO,
    };
    let mut not_proved: Vec<(&'static str, String)> = Vec::new();
    for &action in enforced::DECIDED {
        // A solver of its own per action: a query abandoned at the backstop
        // below leaves its solver mid-answer, which must not answer the
        // next action's queries. Not starting at all is the same for every
        // action: said once.
        let mut compiler = CedarSymCompiler::new(solver(options.time_limit)?)
            .map_err(|e| solver_error(&e, options.time_limit))?;
        let before = (report.widenings.len(), report.narrowings.len());
        let compared = compare(
            options,
            &mut compiler,
            [&active, &candidate],
            &error_free,
            action,
            &mut report,
        )
        .await
        .and_then(|()| {
            enforced::decided_with(action, &options.rules).map_err(|e| {
                undecided(format!("the model cannot write this decision exactly: {e}"))
            })
        });
        match compared {
            Ok(with) => report.actions.push(ActionVerdict {
                action: action.name,
                with,
                verdict: Verdict::of(
                    report.widenings.len() > before.0,
                    report.narrowings.len() > before.1,
                ),
            }),
            Err(Undecided(reason)) => not_proved.push((action.name, reason)),
        }
    }
    if !not_proved.is_empty() {
        return Err(unproved(&report.actions, &not_proved));
    }
    report.verdict = Verdict::of(!report.widenings.is_empty(), !report.narrowings.is_empty());
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Why some actions were not proved, by reason (a policy every action
/// reads fails them all alike), with the answers of those that were: a
/// change is safe only when every action is proved.
fn unproved(proved: &[ActionVerdict], not_proved: &[(&'static str, String)]) -> Undecided {
    let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
    for (action, reason) in not_proved {
        match reasons.iter_mut().find(|(r, _)| *r == reason.as_str()) {
            Some((_, actions)) => actions.push(action),
            None => reasons.push((reason.as_str(), vec![action])),
        }
    }
    let mut message = reasons
        .iter()
        .map(|(reason, actions)| format!("{} not proved: {reason}", actions.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    if !proved.is_empty() {
        message.push_str(&format!(
            " (proved: {})",
            proved
                .iter()
                .map(|a| format!("{} {}", a.action, a.verdict.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    undecided(message)
}

/// Compares the two directories' decisions of `action`'s requests, adding
/// the differences found to `report`.
async fn compare(
    options: &Options,
    compiler: &mut CedarSymCompiler<LocalSolver>,
    [active, candidate]: [&PolicyData; 2],
    error_free: &[HashSet<String>; 2],
    action: &'static Action,
    report: &mut Report,
) -> Result<(), Undecided> {
    let schema = &active.schema;
    let envs: Vec<RequestEnv> = envs(schema, action).collect();
    if envs.is_empty() {
        return Err(undecided(format!(
            "the schema declares no request of {}",
            action.name
        )));
    }
    let terms = |data: &PolicyData, free: &HashSet<String>| {
        enforced::terms(data, &options.rules, action, &options.accounts(), &|id| {
            free.contains(id)
        })
        .map_err(|e| undecided(format!("the model cannot write this decision exactly: {e}")))
    };
    let (old_terms, new_terms) = (
        terms(active, &error_free[0])?,
        terms(candidate, &error_free[1])?,
    );
    let set = |terms: Vec<Value>| {
        enforced::assemble(action, terms)
            .and_then(|p| {
                PolicySet::from_policies([p]).map_err(|e| enforced::Unsupported(e.to_string()))
            })
            .map_err(|e| undecided(format!("the model cannot write this decision exactly: {e}")))
    };
    // "Allowed by one, denied by the other": where the first allows, every
    // term it shares with the other holds, so the other denies exactly when
    // one of its own terms fails. The denying side keeps only those: the
    // same question, a smaller formula.
    let own = |terms: &[Value], other: &[Value]| {
        terms
            .iter()
            .filter(|t| !other.contains(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    // A backstop: cvc5's own limit should answer first.
    let limit = options.time_limit * 2 + Duration::from_secs(5);
    for env in &envs {
        let compile = |set: &PolicySet| {
            CompiledPolicySet::compile(set, env, schema)
                .map_err(|e| undecided(format!("the symbolic compiler refused the model: {e}")))
        };
        for widening in [true, false] {
            let (allowing, denying) = if widening {
                (&new_terms, &old_terms)
            } else {
                (&old_terms, &new_terms)
            };
            let allowed = compile(&set(allowing.clone())?)?;
            let denied = compile(&set(own(denying, allowing))?)?;
            let (allowed, denied) = (&allowed, &denied);
            report.queries += 1;
            let answer = tokio::time::timeout(
                limit,
                compiler.check_implies_with_counterexample_opt(allowed, denied),
            )
            .await
            .map_err(|_| {
                undecided(format!(
                    "the solver did not answer within {}",
                    humantime::format_duration(limit)
                ))
            })?
            .map_err(|e| solver_error(&e, options.time_limit))?;
            if let Some(counterexample) = answer {
                let difference = replay(options, action, env, &counterexample)?;
                if widening {
                    report.widenings.push(difference);
                } else {
                    report.narrowings.push(difference);
                }
            }
        }
    }
    Ok(())
}
