//! `ecs-gateway policy lint`: what a policy author should know before a
//! policy ships, proved with the symbolic compiler and cvc5 on the calls
//! the gateway can receive (see [`super::enforced::on_real_calls`]), for
//! every action of the catalogue a policy names (the `ecs:` actions and the
//! Explain rpc's `ecsgateway:Explain` and `ecsgateway:SimulatePrincipal`),
//! each on its own context type:
//!
//! - a policy that **can never apply** (its scope and conditions hold for
//!   no call of any action it names);
//! - a permit **fully shadowed** by forbids (of its layer, and for an
//!   identity permit of the control layer too): wherever it applies, a
//!   forbid denies;
//! - a policy that **can fail to evaluate**, with a call that makes it fail.
//!   In plain Cedar an erroring forbid is skipped, which fails open; the
//!   gateway denies instead, so such a policy denies calls its author may
//!   not expect.

use std::path::Path;
use std::time::{Duration, Instant};

use cedar_policy::{Policy, PolicySet, RequestEnv};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet};
use serde_json::{Value, json};

use super::enforced::{applies_to, on_real_calls};
use super::solver::{Undecided, solver, solver_error};
use crate::policy::{catalogue, store};

/// What a finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Applies to no call.
    NeverApplies,
    /// A permit that forbids always override.
    Shadowed,
    /// Can fail to evaluate (and so deny).
    CanError,
}

impl Kind {
    /// Its name in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NeverApplies => "never applies",
            Self::Shadowed => "shadowed by forbids",
            Self::CanError => "can fail to evaluate",
        }
    }
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The policy's `@id`.
    pub policy: String,
    /// Its file.
    pub file: String,
    /// What is wrong.
    pub kind: Kind,
    /// Why, in words.
    pub detail: String,
    /// For [`Kind::CanError`]: a call that makes it fail (principal type,
    /// action, the request's context and resource), as JSON.
    pub example: Option<Value>,
}

/// The result.
#[derive(Debug, Clone)]
pub struct Report {
    /// Policies checked.
    pub policies: usize,
    /// The findings, by policy.
    pub findings: Vec<Finding>,
    /// Solver queries made.
    pub queries: usize,
    /// Time taken.
    pub elapsed: Duration,
}

fn undecided(message: impl Into<String>) -> Undecided {
    Undecided(message.into())
}

/// The envs (principal type × action) a policy's action scope takes in.
fn envs_of(
    schema: &cedar_policy::Schema,
    policy: &Policy,
) -> Result<Vec<(RequestEnv, &'static catalogue::Action)>, Undecided> {
    let mut out = Vec::new();
    for env in schema.request_envs() {
        let name = env.action().id().unescaped().to_owned();
        let Some(action) = catalogue::get(&name) else {
            continue;
        };
        if applies_to(policy, action).map_err(|e| undecided(e.to_string()))? {
            out.push((env, action));
        }
    }
    Ok(out)
}

/// A counterexample's request, for the report.
fn example(env: &RequestEnv, counterexample: &cedar_policy_symcc::Env) -> Value {
    let request = &counterexample.request;
    let entity = |uid: Option<&cedar_policy::EntityUid>| {
        uid.and_then(|uid| counterexample.entities.get(uid))
            .and_then(|e| e.to_json_value().ok())
            .unwrap_or(Value::Null)
    };
    json!({
        "principalType": env.principal().to_string(),
        "action": env.action().id().unescaped(),
        "principal": entity(request.principal()),
        "resource": entity(request.resource()),
        "context": request.context().and_then(|c| c.to_json_value().ok()),
    })
}

/// Lints the policies of `dir`.
///
/// # Errors
///
/// [`Undecided`]: invalid policies, cvc5 missing, a solver timeout, a
/// construct the compiler refuses.
pub async fn run(dir: &Path, time_limit: Duration) -> Result<Report, Undecided> {
    let started = Instant::now();
    let data = store::load(dir).map_err(|e| undecided(format!("{}: {e}", dir.display())))?;
    let mut prover = Prover {
        compiler: CedarSymCompiler::new(solver(time_limit)?)
            .map_err(|e| solver_error(&e, time_limit))?,
        schema: &data.schema,
        time_limit,
        queries: 0,
    };
    let control_forbids: Vec<Policy> = data
        .control
        .policies()
        .filter(|p| p.effect() == cedar_policy::Effect::Forbid)
        .cloned()
        .collect();
    let mut report = Report {
        policies: 0,
        findings: Vec::new(),
        queries: 0,
        elapsed: Duration::ZERO,
    };
    for (layer, set) in [("control", &data.control), ("identity", &data.identity)] {
        let forbids: Vec<Policy> = set
            .policies()
            .filter(|p| p.effect() == cedar_policy::Effect::Forbid)
            .cloned()
            .chain(if layer == "identity" {
                control_forbids.clone()
            } else {
                Vec::new()
            })
            .collect();
        for policy in set.policies() {
            report.policies += 1;
            let file = data
                .sources
                .get(policy.id())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let proved = prover.prove(policy, &forbids).await?;
            report
                .findings
                .extend(proved.findings(policy, &file, layer));
        }
    }
    report.queries = prover.queries;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The solver, with the schema the policies are proved over.
struct Prover<'a> {
    compiler: CedarSymCompiler<LocalSolver>,
    schema: &'a cedar_policy::Schema,
    time_limit: Duration,
    /// Solver queries so far.
    queries: usize,
}

/// What was proved of one policy.
struct Proved {
    /// Some call the gateway can receive satisfies it.
    applies: bool,
    /// Wherever it applies, a forbid denies.
    shadowed_everywhere: bool,
    /// A call on which it fails to evaluate.
    error_example: Option<Value>,
}

impl Prover<'_> {
    /// Proves, over each env the policy's action scope takes in, whether it
    /// can error, whether it ever applies and (a permit) whether `forbids`
    /// shadow it.
    async fn prove(&mut self, policy: &Policy, forbids: &[Policy]) -> Result<Proved, Undecided> {
        let time_limit = self.time_limit;
        let solved = |e: cedar_policy_symcc::err::Error| solver_error(&e, time_limit);
        let compile_error =
            |e: cedar_policy_symcc::err::Error| undecided(format!("the symbolic compiler: {e}"));
        let id = policy.id().to_string();
        let real = on_real_calls(policy).map_err(|e| undecided(e.to_string()))?;
        let mut proved = Proved {
            applies: false,
            shadowed_everywhere: true,
            error_example: None,
        };
        for (env, _action) in envs_of(self.schema, policy)? {
            let compiled =
                CompiledPolicy::compile(&real, &env, self.schema).map_err(compile_error)?;
            // Errors first: a policy that only ever fails still
            // decides (it denies).
            if proved.error_example.is_none() {
                self.queries += 1;
                if let Some(cx) = self
                    .compiler
                    .check_never_errors_with_counterexample_opt(&compiled)
                    .await
                    .map_err(solved)?
                {
                    proved.error_example = Some(example(&env, &cx));
                }
            }
            self.queries += 1;
            let never = self
                .compiler
                .check_never_matches_opt(&compiled)
                .await
                .map_err(solved)?;
            if never {
                continue;
            }
            proved.applies = true;
            if policy.effect() == cedar_policy::Effect::Permit && proved.shadowed_everywhere {
                let mut shadow = forbids.to_vec();
                shadow.push(real.clone());
                let shadow = PolicySet::from_policies(shadow)
                    .map_err(|e| undecided(format!("{id}: {e}")))?;
                let compiled = CompiledPolicySet::compile(&shadow, &env, self.schema)
                    .map_err(compile_error)?;
                self.queries += 1;
                proved.shadowed_everywhere = self
                    .compiler
                    .check_always_denies_opt(&compiled)
                    .await
                    .map_err(solved)?;
            }
        }
        Ok(proved)
    }
}

impl Proved {
    /// The findings for `policy` of `file`, in `layer`.
    fn findings(self, policy: &Policy, file: &str, layer: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut found = |kind: Kind, detail: String, example: Option<Value>| {
            findings.push(Finding {
                policy: policy.id().to_string(),
                file: file.to_owned(),
                kind,
                detail,
                example,
            });
        };
        let forbid = policy.effect() == cedar_policy::Effect::Forbid;
        if !self.applies && self.error_example.is_none() {
            found(
                Kind::NeverApplies,
                format!(
                    "no call the gateway can receive satisfies its scope and conditions ({layer} layer)"
                ),
                None,
            );
            return findings;
        }
        if self.applies && !forbid && self.shadowed_everywhere {
            found(
                Kind::Shadowed,
                format!(
                    "wherever it applies, a forbid of the {} denies, so it never allows anything",
                    if layer == "identity" {
                        "identity or control layer"
                    } else {
                        "control layer"
                    }
                ),
                None,
            );
        }
        if let Some(example) = self.error_example {
            found(
                Kind::CanError,
                format!(
                    "fails to evaluate on some calls, which the gateway then denies (plain Cedar would skip the {}, {}): example below",
                    if forbid { "forbid" } else { "permit" },
                    if forbid {
                        "failing open"
                    } else {
                        "failing closed"
                    },
                ),
                Some(example),
            );
        }
        findings
    }
}
