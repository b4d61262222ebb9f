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

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cedar_policy::{Entities, EntityUid, PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet, Env};
use serde_json::{Value, json};

use crate::policy::catalogue::{self, Action};
use super::enforced;
use crate::policy::store::{self, PolicyData};
use crate::policy::{DependentRule, Outcome, Query};
use crate::identity::{Caller, CallerId, Via};
use crate::pb;

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
    /// The account owning the instances.
    pub account_id: String,
    /// The solver's time per query.
    pub time_limit: Duration,
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

/// Why the comparison could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not decide: {0}")]
pub struct Undecided(pub String);

fn undecided(message: impl Into<String>) -> Undecided {
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
        enforced::terms(data, &options.rules, action, &options.account_id, &|id| {
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

/// The identity the replayed principal gets.
pub const REPLAY_IDENTITY: &str = "spiffe://policy-diff.local/counterexample";

/// The identity a replayed Explain simulates, unless the counterexample
/// names one the gateway could see.
pub const SIMULATED_IDENTITY: &str = "spiffe://policy-diff.local/simulated";

fn extension_arg(value: &Value) -> Option<&str> {
    value.get("__extn")?.get("arg")?.as_str()
}

/// A datetime value of the counterexample: `datetime("…")`, or
/// `offset(datetime("…"), duration("…"))` as the solver writes it.
fn datetime_value(value: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let extension = value.get("__extn")?;
    match extension.get("fn")?.as_str()? {
        "datetime" => parse_datetime(extension.get("arg")?.as_str()?),
        "offset" => {
            let args = extension.get("args")?.as_array()?;
            let base = datetime_value(args.first()?)?;
            let duration = args.get(1)?.get("__extn")?;
            if duration.get("fn")?.as_str()? != "duration" {
                return None;
            }
            let ms = parse_duration_ms(duration.get("arg")?.as_str()?)?;
            base.checked_add_signed(chrono::TimeDelta::try_milliseconds(ms)?)
        }
        _ => None,
    }
}

/// Cedar's duration literal (`-1d2h3m4s5ms`) in milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            (
                match rest.as_bytes().first()? {
                    b'd' => 86_400_000,
                    b'h' => 3_600_000,
                    b'm' => 60_000,
                    b's' => 1_000,
                    _ => return None,
                },
                1,
            )
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    total.checked_mul(sign)
}

/// A counterexample as a request: the readable form, then its replay.
fn replay(
    options: &Options,
    action: &'static Action,
    env: &RequestEnv,
    counterexample: &Env,
) -> Result<Difference, Undecided> {
    let cx = Readable::of(counterexample, env, action, &options.account_id)?;
    let dirs = [&options.active, &options.candidate].map(|dir| cx.write_dir(dir));
    let [active_dir, candidate_dir] = dirs;
    let (active_dir, candidate_dir) = (active_dir?, candidate_dir?);
    let decide = |dir: &Path| -> Result<(bool, String), Undecided> {
        let authorizer = crate::policy::Config {
            dir: dir.to_owned(),
            account_id: options.account_id.clone(),
            dependent_actions: options.rules.clone(),
        }
        .build()
        .map_err(|e| undecided(format!("replaying the counterexample: {e}")))?;
        let (caller, request) = (cx.caller(), cx.request()?);
        let decision = match action.name {
            name if name == catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name => {
                authorizer.decide(&caller, &request, cx.time)
            }
            // The Explain rpc's permission check, as `server::explain` asks
            // it (the instance lookup off: entities.json's instances).
            name if name == catalogue::EXPLAIN.name
                || name == catalogue::SIMULATE_PRINCIPAL.name =>
            {
                authorizer.may_explain(
                    &Query::new(&caller, &request, cx.time),
                    cx.simulated.as_ref().map(|s| &s.identity),
                )
            }
            name => return Err(undecided(format!("no replay of a request of {name}"))),
        };
        let summary = match &decision.outcome {
            Outcome::Allow { policies } => format!("Allow ({})", policies.join(", ")),
            Outcome::Deny(d) => format!(
                "{} of {} by the {} layer ({}){}",
                d.kind.as_str(),
                d.action,
                d.layer.as_str(),
                d.policies.join(", "),
                if d.errors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.errors.join("; "))
                }
            ),
        };
        Ok((decision.allowed(), summary))
    };
    let active = decide(&active_dir.0);
    let candidate = decide(&candidate_dir.0);
    let ((active_allows, active), (candidate_allows, candidate)) = (active?, candidate?);
    Ok(Difference {
        action: action.name,
        principal_type: env.principal().to_string(),
        call: cx.json(),
        confirmed: active_allows != candidate_allows,
        active,
        candidate,
        case: cx.case(),
    })
}

/// A counterexample with readable ids, as the gateway would see the call.
#[derive(Debug, Clone)]
struct Readable {
    account_id: String,
    principal_arn: String,
    groups: Vec<String>,
    instance_id: String,
    /// The instance's attributes (without `known`), when it is known.
    instance: Option<(
        serde_json::Map<String, Value>,
        serde_json::Map<String, Value>,
    )>,
    region_id: String,
    source_ip: IpAddr,
    time: chrono::DateTime<chrono::Utc>,
    mfa: bool,
    secure_transport: bool,
    /// The request's fields (the proto's names), as the context holds them.
    request: serde_json::Map<String, Value>,
    /// An Explain's permission check (`ecsgateway:` actions), not a call.
    explain: bool,
    /// For `ecsgateway:SimulatePrincipal`: the identity explained for.
    simulated: Option<Simulated>,
}

/// The identity an Explain simulates, as the counterexample's
/// `ecsgateway:SimulatedPrincipal` and `ecsgateway:SimulatedGroups` say.
#[derive(Debug, Clone)]
struct Simulated {
    identity: CallerId,
    /// Its principals.toml entry (ARN, groups); `None`: it has none, and
    /// the gateway names it by its identity, with no groups.
    entry: Option<(String, Vec<String>)>,
}

impl Simulated {
    fn of(principal: &str, groups: Vec<String>, account_id: &str) -> Self {
        let own = || CallerId::Spiffe(SIMULATED_IDENTITY.into());
        if is_ram_arn(principal) {
            return Self {
                identity: own(),
                entry: Some((principal.to_owned(), groups)),
            };
        }
        if groups.is_empty() {
            return Self {
                identity: identity_named(principal).unwrap_or_else(own),
                entry: None,
            };
        }
        // Groups come only with an entry, and an entry has a RAM ARN: the
        // solver's free string cannot be one.
        Self {
            identity: own(),
            entry: Some((
                format!("acs:ram::{account_id}:role/simulated-counterexample"),
                groups,
            )),
        }
    }
}

/// The identity the gateway names `name` (a SPIFFE ID, or
/// `jwt:<subject>@<issuer>`), if it is one an Explain can simulate other
/// than the replayed caller.
fn identity_named(name: &str) -> Option<CallerId> {
    let identity = if name.starts_with("spiffe://") {
        crate::validate::explain::spiffe_id_problem(name)
            .is_none()
            .then(|| CallerId::Spiffe(name.to_owned()))?
    } else {
        let (subject, issuer) = name.strip_prefix("jwt:")?.rsplit_once('@')?;
        (!subject.is_empty() && !issuer.is_empty()).then(|| CallerId::Jwt {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        })?
    };
    (identity.to_string() != REPLAY_IDENTITY).then_some(identity)
}

/// A group's readable name: the solver leaves a free one's id empty.
fn group_name(id: &str) -> String {
    if id.is_empty() {
        "CounterexampleGroup".to_owned()
    } else {
        id.to_owned()
    }
}

/// Temporary copies of a policy directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn is_ram_arn(arn: &str) -> bool {
    store::principal_type(arn).is_some()
}

impl Readable {
    fn of(
        counterexample: &Env,
        env: &RequestEnv,
        action: &'static Action,
        account_id: &str,
    ) -> Result<Self, Undecided> {
        let bad = |what: &str| undecided(format!("the counterexample has no {what}"));
        let request = &counterexample.request;
        let entities: &Entities = &counterexample.entities;
        let principal = request.principal().ok_or_else(|| bad("principal"))?;
        let resource = request.resource().ok_or_else(|| bad("resource"))?;
        let context = request
            .context()
            .ok_or_else(|| bad("context"))?
            .to_json_value()
            .map_err(|e| undecided(format!("the counterexample's context: {e}")))?;
        let entity_json = |uid: &EntityUid| -> Value {
            entities
                .get(uid)
                .and_then(|e| e.to_json_value().ok())
                .unwrap_or(Value::Null)
        };
        // Readable ids: the solver leaves free ones empty.
        let kind = if env.principal().to_string() == "Ram::User" {
            "user"
        } else {
            "role"
        };
        let principal_id = principal.id().unescaped().to_owned();
        let principal_arn = if is_ram_arn(&principal_id) {
            principal_id
        } else {
            format!("acs:ram::{account_id}:{kind}/counterexample")
        };
        let principal_json = entity_json(principal);
        // Groups as entity references: `{"type", "id"}`, or wrapped in
        // `__entity` as a context holds them.
        let groups_of = |value: &Value| {
            let mut groups: Vec<String> = value
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p.get("__entity").unwrap_or(p))
                .filter(|p| p["type"] == "Ram::Group")
                .filter_map(|p| p["id"].as_str())
                .map(group_name)
                .collect();
            groups.sort();
            groups.dedup();
            groups
        };
        let groups = groups_of(&principal_json["parents"]);
        let simulated = (action.name == catalogue::SIMULATE_PRINCIPAL.name).then(|| {
            Simulated::of(
                context["ecsgateway:SimulatedPrincipal"]
                    .as_str()
                    .unwrap_or_default(),
                groups_of(&context["ecsgateway:SimulatedGroups"]),
                account_id,
            )
        });
        let resource_id = resource.id().unescaped().to_owned();
        let instance_id = if crate::validate::is_instance_id(&resource_id) {
            resource_id
        } else {
            "i-counterexample".to_owned()
        };
        let resource_json = entity_json(resource);
        let mut attrs = resource_json["attrs"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let known = attrs
            .remove("known")
            .and_then(|k| k.as_bool())
            .unwrap_or(false);
        let tags = resource_json["tags"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // A region no policy names may come out as any string; the
        // gateway accepts only its format.
        let region_id = context["request"]["region_id"]
            .as_str()
            .filter(|r| crate::validate::is_region_id(r))
            .unwrap_or("zz-counterexample")
            .to_owned();
        let source_ip = extension_arg(&context["acs:SourceIp"])
            .map(|ip| ip.split('/').next().unwrap_or(ip))
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| bad("usable acs:SourceIp"))?;
        // To the second, as the gateway gives acs:CurrentTime.
        let time = datetime_value(&context["acs:CurrentTime"])
            .and_then(|t| chrono::DateTime::from_timestamp(t.timestamp(), 0))
            .ok_or_else(|| {
                bad(&format!(
                    "usable acs:CurrentTime ({})",
                    context["acs:CurrentTime"]
                ))
            })?;
        Ok(Self {
            account_id: account_id.to_owned(),
            principal_arn,
            groups,
            instance_id,
            instance: known.then_some((attrs, tags)),
            region_id,
            source_ip,
            time,
            mfa: context["acs:MFAPresent"].as_bool().unwrap_or(false),
            secure_transport: context["acs:SecureTransport"].as_bool().unwrap_or(false),
            request: context["request"].as_object().cloned().unwrap_or_default(),
            explain: action.name != catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name,
            simulated,
        })
    }

    fn caller(&self) -> Caller {
        Caller {
            identity: CallerId::Spiffe(REPLAY_IDENTITY.into()),
            via: Via::Mtls,
            mfa: self.mfa,
            secure_transport: self.secure_transport,
            peer: Some(std::net::SocketAddr::new(self.source_ip, 0)),
        }
    }

    fn long(&self, name: &str) -> Option<i32> {
        self.request
            .get(name)
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    }

    fn timestamp(&self, name: &str) -> Option<prost_types::Timestamp> {
        let time = datetime_value(self.request.get(name)?)?;
        Some(prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: 0,
        })
    }

    /// The upgrade window as the gateway accepts it: the start on a whole
    /// minute, the end on a whole hour, three hours or more apart (Cedar
    /// cannot say "whole", so the solver's times are rounded; the replay
    /// tells whether the decision stayed).
    fn window(
        &self,
    ) -> (
        Option<prost_types::Timestamp>,
        Option<prost_types::Timestamp>,
    ) {
        let (Some(start), Some(end)) = (self.timestamp("start_time"), self.timestamp("end_time"))
        else {
            return (None, None);
        };
        let start = start.seconds - start.seconds.rem_euclid(60);
        let mut end = end.seconds - end.seconds.rem_euclid(3600);
        if end < start + 3 * 3600 {
            end += 3600;
        }
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        (Some(ts(start)), Some(ts(end)))
    }

    fn proto(&self) -> pb::ModifyInstanceNetworkSpecRequest {
        let charge = match self
            .request
            .get("network_charge_type")
            .and_then(Value::as_str)
        {
            Some("PayByBandwidth") => pb::NetworkChargeType::PayByBandwidth,
            Some("PayByTraffic") => pb::NetworkChargeType::PayByTraffic,
            _ => pb::NetworkChargeType::Unspecified,
        };
        pb::ModifyInstanceNetworkSpecRequest {
            region_id: self.region_id.clone(),
            instance_id: self.instance_id.clone(),
            internet_max_bandwidth_out: self.long("internet_max_bandwidth_out"),
            internet_max_bandwidth_in: self.long("internet_max_bandwidth_in"),
            network_charge_type: charge as i32,
            allocate_public_ip: self
                .request
                .get("allocate_public_ip")
                .and_then(Value::as_bool),
            start_time: self.window().0,
            end_time: self.window().1,
            auto_pay: self.request.get("auto_pay").and_then(Value::as_bool),
            client_token: "policy-diff".into(),
            ..Default::default()
        }
    }

    fn request(&self) -> Result<crate::validate::ModifyRequest, Undecided> {
        crate::validate::modify_request(self.proto()).map_err(|r| {
            undecided(format!(
                "the counterexample is not a valid call ({r}): the model allows a request the gateway refuses"
            ))
        })
    }

    /// The instance's entities.json entry.
    fn instance_entity(&self, account_id: &str) -> Option<Value> {
        let (attrs, tags) = self.instance.as_ref()?;
        let mut attrs = attrs.clone();
        attrs.insert(
            "arn".into(),
            json!(catalogue::instance_arn(
                &self.region_id,
                account_id,
                &self.instance_id
            )),
        );
        attrs.insert("region".into(), json!(self.region_id));
        attrs.insert("account".into(), json!(account_id));
        Some(json!({
            "uid": { "type": "Ecs::Instance", "id": self.instance_id },
            "attrs": attrs,
            "parents": [],
            "tags": tags,
        }))
    }

    /// A copy of `dir` with the counterexample's principal in
    /// principals.toml and its instance in entities.json.
    fn write_dir(&self, dir: &Path) -> Result<TempDir, Undecided> {
        let io = |e: std::io::Error| undecided(format!("replaying the counterexample: {e}"));
        let target = std::env::temp_dir().join(format!(
            "ecs-gateway-diff-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let temp = TempDir(target.clone());
        copy_dir(dir, &target).map_err(io)?;
        let principals = target.join("principals.toml");
        let mut text = std::fs::read_to_string(&principals).unwrap_or_default();
        text.push_str(&self.principal_toml());
        std::fs::write(&principals, text).map_err(io)?;
        if let Some(entity) = self.instance_entity(&self.account_id) {
            let path = target.join("entities.json");
            let mut list: Vec<Value> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            list.retain(|e| e["uid"]["id"] != json!(self.instance_id));
            list.push(entity);
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&list).unwrap_or_default(),
            )
            .map_err(io)?;
        }
        Ok(temp)
    }

    fn principal_toml(&self) -> String {
        let mut out = format!(
            "\n# policy diff: the counterexample's principal\n[[principal]]\nspiffe_id = {:?}\narn = {:?}\ngroups = {:?}\n",
            REPLAY_IDENTITY, self.principal_arn, self.groups
        );
        if let Some(Simulated {
            identity,
            entry: Some((arn, groups)),
        }) = &self.simulated
        {
            out.push_str(&format!(
                "\n# policy diff: the principal the Explain simulates\n[[principal]]\nspiffe_id = {:?}\narn = {arn:?}\ngroups = {groups:?}\n",
                identity.to_string()
            ));
        }
        out
    }

    /// The `[[case]]` keys that make it an Explain's permission check.
    fn explain_keys(&self) -> String {
        if !self.explain {
            return String::new();
        }
        let mut out = "explain = true\n".to_owned();
        match self.simulated.as_ref().map(|s| &s.identity) {
            None => {}
            Some(CallerId::Spiffe(id)) => out.push_str(&format!("simulate_spiffe_id = {id:?}\n")),
            Some(CallerId::Jwt { issuer, subject }) => out.push_str(&format!(
                "simulate_jwt = {{ issuer = {issuer:?}, subject = {subject:?} }}\n"
            )),
        }
        out
    }

    /// The `[[case]]` that reproduces the call with `policy test`.
    fn case(&self) -> String {
        let mut fields = vec![
            format!("region_id = {:?}", self.region_id),
            format!("instance_id = {:?}", self.instance_id),
        ];
        for (name, value) in &self.request {
            match name.as_str() {
                "region_id" | "instance_id" | "effective_bandwidth_in" | "temporary_upgrade" => {}
                "start_time" | "end_time" => {
                    let (start, end) = self.window();
                    let ts = if name == "start_time" { start } else { end };
                    if let Some(t) =
                        ts.and_then(|ts| chrono::DateTime::from_timestamp(ts.seconds, 0))
                    {
                        fields.push(format!("{name} = {:?}", t.to_rfc3339()));
                    }
                }
                _ => fields.push(format!("{name} = {value}")),
            }
        }
        let mut out = self.principal_toml();
        out.push_str(&format!(
            "\n[[case]]\nname = \"policy diff counterexample\"\nspiffe_id = {:?}\nsource_ip = {:?}\ntime = {:?}\nmfa = {}\nsecure_transport = {}\n{}request = {{ {} }}\n",
            REPLAY_IDENTITY,
            self.source_ip.to_string(),
            self.time.to_rfc3339(),
            self.mfa,
            self.secure_transport,
            self.explain_keys(),
            fields.join(", ")
        ));
        if let Some(entity) = self.instance_entity(&self.account_id) {
            out.push_str(&format!(
                "# entities.json gets the instance: {}\n",
                serde_json::to_string(&entity).unwrap_or_default()
            ));
        }
        out
    }

    fn json(&self) -> Value {
        let mut call = json!({
            "principal": { "arn": self.principal_arn, "groups": self.groups },
            "resource": {
                "instanceId": self.instance_id,
                "known": self.instance.is_some(),
                "attributes": self.instance_entity(&self.account_id).map(|e| e["attrs"].clone()),
                "tags": self.instance.as_ref().map(|(_, t)| t.clone()),
            },
            "context": {
                "acs:SourceIp": self.source_ip.to_string(),
                "acs:CurrentTime": self.time.to_rfc3339(),
                "acs:MFAPresent": self.mfa,
                "acs:SecureTransport": self.secure_transport,
            },
            "request": self.request.iter().map(|(k, v)| {
                let v = match k.as_str() {
                    "instance_id" => json!(self.instance_id),
                    _ => datetime_value(v).map_or_else(|| v.clone(), |t| json!(t.to_rfc3339())),
                };
                (k.clone(), v)
            }).collect::<BTreeMap<_, _>>(),
        });
        if let Some(simulated) = &self.simulated {
            let (principal, groups) = simulated
                .entry
                .clone()
                .unwrap_or_else(|| (simulated.identity.to_string(), Vec::new()));
            call["simulated"] = json!({
                "identity": simulated.identity.to_string(),
                "principal": principal,
                "groups": groups,
            });
        }
        call
    }
}

/// Cedar's datetime literal: `2024-01-01`, or with a time and an offset.
fn parse_datetime(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}
