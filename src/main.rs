//! The `ecs-gateway` command: parse the command line, load the settings, run
//! the subcommand. Exit codes: 0 success, 1 failure, 64 bad settings (before
//! any port is bound).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use clap::{Parser, Subcommand};
use ecs_gateway::account::AccountId;
use ecs_gateway::{
    client, config, demo, policy, policy_tools, server, simulator, telemetry, upstream,
};

/// Prints a line on standard output. When the reader has gone away
/// (`ecs-gateway policy diff | head -1`), exits at once with 141 (what a
/// shell reports for a process ended by SIGPIPE, so a pipeline with
/// `pipefail` does not read it as success) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            closed_stdout(&error);
        }
    }};
}

/// [`out!`] without the newline.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = write!(std::io::stdout().lock(), $($arg)*) {
            closed_stdout(&error);
        }
    }};
}

/// Standard output cannot be written: quietly for a closed pipe, else said.
fn closed_stdout(error: &std::io::Error) -> ! {
    if error.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("ecs-gateway: cannot write to standard output: {error}");
    }
    std::process::exit(141)
}

/// A gRPC gateway that authorizes, signs and forwards Alibaba Cloud ECS
/// ModifyInstanceNetworkSpec calls.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the gateway with its built-in ECS simulator and demo instances.
    Demo {
        /// gRPC listen address.
        #[arg(long, default_value = demo::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Admin HTTP address: /metrics, /healthz, /readyz.
        #[arg(long, default_value = demo::DEFAULT_ADMIN_LISTEN)]
        admin_listen: SocketAddr,
        /// Forward to this ECS endpoint instead of the built-in simulator
        /// (credentials from ALIBABA_CLOUD_* variables).
        #[arg(long)]
        upstream_endpoint: Option<String>,
        /// The policy directory.
        #[arg(long, default_value = config::DEFAULT_POLICY_DIR)]
        policies: PathBuf,
        /// The demo's settings file (account, dependent actions), read when
        /// it exists; its built-in ones otherwise.
        #[arg(long, env = "ECS_GATEWAY_CONFIG", default_value = demo::SETTINGS_FILE)]
        config: PathBuf,
    },
    /// Check and test Cedar policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the ECS simulator alone, with the demo instances and key.
    Simulator {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Answer `Throttling` above this many calls per second.
        #[arg(long)]
        throttle_per_second: Option<u32>,
    },
    /// Call a gateway and print the answer or the error with its details.
    #[command(after_help = client::EXIT_CODES)]
    Call(client::CallArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate the policy directory against its schema; exit 1 with
    /// file:line errors.
    Validate {
        /// The policy directory.
        #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
        policies: PathBuf,
    },
    /// Run declarative policy cases (default: the directory's tests/*.toml).
    Test {
        /// The policy directory.
        #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
        policies: PathBuf,
        /// Case files.
        files: Vec<PathBuf>,
    },
    /// Explain the decision on a request without forwarding anything: every
    /// action (the call's and its dependent ones) in every layer, with the
    /// determining policies and any evaluation errors. Exit 0 when allowed,
    /// 2 when denied, 1 when it cannot be explained (bad flags, policies or
    /// request).
    Explain(Box<ExplainArgs>),
    /// Prove what a policy change does to the decisions the gateway enforces
    /// (both layers, dependent actions, errors that deny) for every action
    /// it decides (ecs:ModifyInstanceNetworkSpec, and the Explain rpc's
    /// ecsgateway:Explain and ecsgateway:SimulatePrincipal), over every
    /// request the schema allows, with the cvc5 solver: equivalent,
    /// narrows, widens, or both, per action and overall, with a
    /// counterexample per difference, replayed through the authorizer.
    /// Exit 0 when it does not widen, 1 when it widens, 2 when it cannot
    /// decide (the reason and the actions not proved are printed).
    Diff(Box<DiffArgs>),
    /// Prove, with the cvc5 solver, which policies can never apply, which
    /// permits forbids always override, and which policies can fail to
    /// evaluate (with a call that makes them fail). Exit 0 when there is
    /// nothing to report, 1 when there is, 2 when it cannot decide.
    Lint {
        /// The policy directory.
        #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
        policies: PathBuf,
        /// The solver's time per query.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        time_limit: std::time::Duration,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a RAM policy document as Cedar policies that decide as RAM
    /// decides it, attached to a group or a principal; exit 1 naming the
    /// statement and the construct when it cannot be imported exactly.
    ImportRam {
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
        layer: ImportLayer,
        /// `@id` prefix: policies are `PREFIX.<statement number>`
        /// (default: `<layer>.ram`).
        #[arg(long)]
        id_prefix: Option<String>,
    },
}

/// `policy diff`'s flags.
#[derive(Debug, clap::Args)]
struct DiffArgs {
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

/// `policy explain`'s flags.
#[derive(Debug, clap::Args)]
struct ExplainArgs {
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: PathBuf,
    /// The Alibaba Cloud account owning the instances, for ARNs (default:
    /// the settings file's `policy.account_id`).
    #[arg(long, env = "ECS_GATEWAY_ACCOUNT_ID")]
    account_id: Option<String>,
    /// The gateway's settings file, for its `[[policy.dependent_actions]]`
    /// (and account).
    #[arg(long, env = "ECS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// The caller's SPIFFE ID.
    #[arg(long, conflicts_with_all = ["jwt_issuer", "jwt_subject"], required_unless_present = "jwt_subject")]
    identity: Option<String>,
    /// The caller's JWT issuer (with --jwt-subject).
    #[arg(long, requires = "jwt_subject")]
    jwt_issuer: Option<String>,
    /// The caller's JWT subject (with --jwt-issuer).
    #[arg(long, requires = "jwt_issuer")]
    jwt_subject: Option<String>,
    /// The caller's address (acs:SourceIp).
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: std::net::IpAddr,
    /// The time of the call (acs:CurrentTime), RFC 3339; now by default.
    #[arg(long)]
    time: Option<chrono::DateTime<chrono::Utc>>,
    /// The caller presented MFA (acs:MFAPresent).
    #[arg(long)]
    mfa: bool,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = client::OutputFormat::Text)]
    output: client::OutputFormat,
    /// The request.
    #[command(flatten)]
    request: client::RequestArgs,
}

/// The layer of imported policies.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ImportLayer {
    Identity,
    Control,
}

/// `serve`'s flags. Each shows its environment variable and its default in
/// `--help`; but only a value given on the command line is passed on as a
/// flag: the settings loader reads the environment and applies the defaults
/// itself, so that a settings file still beats a default, the environment
/// beats the file, and an error names the source the value came from.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML settings file.
    #[arg(long, env = "ECS_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "ECS_GATEWAY_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: Option<String>,
    /// Admin HTTP address: /metrics, /healthz, /readyz.
    #[arg(long, env = "ECS_GATEWAY_ADMIN_LISTEN", default_value = config::DEFAULT_ADMIN_LISTEN)]
    admin_listen: Option<String>,
    /// ECS endpoint; `{region}` is replaced by the region ID.
    #[arg(long, env = "ECS_GATEWAY_UPSTREAM_ENDPOINT", default_value = upstream::DEFAULT_ENDPOINT)]
    upstream_endpoint: Option<String>,
    /// Longest wait for ECS, retries included.
    #[arg(long, env = "ECS_GATEWAY_UPSTREAM_TIMEOUT", default_value = default_upstream_timeout())]
    upstream_timeout: Option<String>,
    /// Alibaba Cloud credentials file (INI), re-read when it changes.
    #[arg(long, env = "ALIBABA_CLOUD_CREDENTIALS_FILE")]
    credentials_file: Option<PathBuf>,
    /// The policy directory.
    #[arg(long, env = "ECS_GATEWAY_POLICY_DIR", default_value = config::DEFAULT_POLICY_DIR)]
    policies: Option<PathBuf>,
    /// The Alibaba Cloud account owning the instances, for ARNs.
    #[arg(long, env = "ECS_GATEWAY_ACCOUNT_ID")]
    account_id: Option<String>,
    /// Check everything `serve` checks before it binds, and print the
    /// effective settings (`key = value`, by settings-file key, no
    /// secrets), then exit: 0 when `serve` would start, 64 when not. Reads
    /// the settings, credentials, policies, TLS and JWKS files as `serve`
    /// does; binds nothing, fetches nothing.
    #[arg(long)]
    check: bool,
    /// With --check: the settings alone, for a settings file meant for
    /// another machine (the files it names are not read), as the Helm
    /// chart's check does.
    #[arg(long, requires = "check")]
    settings_only: bool,
}

fn default_upstream_timeout() -> String {
    humantime::format_duration(upstream::Config::default().timeout).to_string()
}

impl ServeArgs {
    /// The flags given on the command line (see [`ServeArgs`]).
    fn overrides(self, matches: &clap::ArgMatches) -> config::Overrides {
        fn given<T>(matches: &clap::ArgMatches, id: &str, value: Option<T>) -> Option<T> {
            (matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .then_some(value)
                .flatten()
        }
        config::Overrides {
            // The loader reads ECS_GATEWAY_CONFIG itself, as the others.
            config_file: given(matches, "config", self.config),
            listen: given(matches, "listen", self.listen),
            admin_listen: given(matches, "admin_listen", self.admin_listen),
            upstream_endpoint: given(matches, "upstream_endpoint", self.upstream_endpoint),
            upstream_timeout: given(matches, "upstream_timeout", self.upstream_timeout),
            credentials_file: given(matches, "credentials_file", self.credentials_file),
            policy_dir: given(matches, "policies", self.policies),
            account_id: given(matches, "account_id", self.account_id),
        }
    }
}

const EXIT_CONFIG: u8 = 64;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn fail(error: &dyn std::error::Error, config: bool) -> ExitCode {
    eprintln!("ecs-gateway: {}", ecs_gateway::telemetry::chain(error));
    ExitCode::from(if config { EXIT_CONFIG } else { 1 })
}

#[tokio::main]
async fn main() -> ExitCode {
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
    let code = run(cli.command, &matches).await;
    telemetry.shutdown();
    code
}

async fn run(command: Command, matches: &clap::ArgMatches) -> ExitCode {
    match command {
        Command::Serve(args) => {
            let (check, settings_only) = (args.check, args.settings_only);
            let overrides = args.overrides(matches.subcommand_matches("serve").unwrap_or(matches));
            let settings = match config::load(&overrides, env) {
                Ok(settings) => settings,
                Err(error) => return fail(&error, true),
            };
            if check {
                for (key, value) in settings.settings() {
                    out!("{key} = {value:?}");
                }
                for warning in settings.warnings() {
                    eprintln!("warning: {warning}");
                }
                if !settings_only && let Err(error) = server::build(&settings) {
                    return fail(&error, true);
                }
                return ExitCode::SUCCESS;
            }
            match server::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, error.is_config()),
            }
        }
        Command::Demo {
            listen,
            admin_listen,
            upstream_endpoint,
            policies,
            config,
        } => {
            let external = upstream_endpoint.is_some();
            // The default file only when it is there (the binary may run
            // outside the repository); a file named on purpose must be.
            let named = config != std::path::Path::new(demo::SETTINGS_FILE);
            let overrides = config::Overrides {
                upstream_endpoint,
                policy_dir: Some(policies),
                config_file: (named || config.is_file()).then_some(config),
                ..config::Overrides::default()
            };
            let settings_file = overrides.config_file.is_some();
            let settings = match config::load(&overrides, env) {
                Ok(settings) => settings,
                Err(error) => return fail(&error, true),
            };
            match demo::run(listen, admin_listen, settings, external, settings_file).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, error.is_config()),
            }
        }
        Command::Simulator {
            listen,
            throttle_per_second,
        } => {
            let mut config = simulator::Config::demo();
            config.throttle_per_second = throttle_per_second;
            let shutdown = server::shutdown_signal();
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => listener,
                Err(error) => return fail(&error, false),
            };
            let bound = listener.local_addr().unwrap_or(listen);
            out!(
                "ECS simulator on http://{bound} (AccessKey {})",
                simulator::DEMO_ACCESS_KEY_ID
            );
            match simulator::Simulator::new(config)
                .serve(listener, shutdown)
                .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(&error, false),
            }
        }
        Command::Policy(PolicyCommand::Validate { policies }) => {
            match policy::store::load(&policies) {
                Ok(data) => {
                    out!(
                        "{}: {} policies, {} principals, {} instances valid (version {})",
                        policies.display(),
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
                    ExitCode::from(1)
                }
            }
        }
        Command::Policy(PolicyCommand::Test { policies, files }) => {
            let store = match policy::Store::open(&policies) {
                Ok(store) => std::sync::Arc::new(store),
                Err(error) => {
                    for problem in &error.problems {
                        eprintln!("{problem}");
                    }
                    return ExitCode::from(1);
                }
            };
            let files = if files.is_empty() {
                policy_tools::cases::shipped(&policies)
            } else {
                files
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
                        ExitCode::from(1)
                    }
                }
                Err(error) => fail(&error, false),
            }
        }
        Command::Policy(PolicyCommand::Explain(args)) => explain(&args),
        Command::Policy(PolicyCommand::Diff(args)) => diff(&args).await,
        Command::Policy(PolicyCommand::Lint {
            policies,
            time_limit,
            json,
        }) => lint(&policies, time_limit, json).await,
        Command::Policy(PolicyCommand::ImportRam {
            file,
            group,
            principal,
            layer,
            id_prefix,
        }) => {
            let document = match std::fs::read_to_string(&file) {
                Ok(document) => document,
                Err(e) => {
                    eprintln!("cannot read {}: {e}", file.display());
                    return ExitCode::from(1);
                }
            };
            let target = match (group, principal) {
                (Some(group), _) => policy_tools::ram::Target::Group(group),
                (None, Some(arn)) => policy_tools::ram::Target::Principal(arn),
                (None, None) => unreachable!("clap requires --group or --principal"),
            };
            let prefix = id_prefix.unwrap_or_else(|| match layer {
                ImportLayer::Identity => "identity.ram".to_owned(),
                ImportLayer::Control => "control.ram".to_owned(),
            });
            match policy_tools::ram::import(&document, &target, &prefix) {
                Ok(cedar) => {
                    out_raw!("{cedar}");
                    ExitCode::SUCCESS
                }
                Err(refusal) => {
                    eprintln!("{}: {refusal}", file.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Call(args) => {
            let json = args.output == client::OutputFormat::Json;
            match client::call(&args).await {
                Ok(response) if json => out!("{}", client::to_proto_json(&response)),
                Ok(response) => out!("{}", client::describe_response(&response)),
                Err(client::Error::Status(status)) if json => {
                    out!("{}", client::status_to_proto_json(&status));
                    return ExitCode::from(client::Outcome::of(status.code()) as u8);
                }
                Err(error) => {
                    eprintln!("{error}");
                    if let Some(hint) = client::hint(&args, &error) {
                        eprintln!("hint: {hint}");
                    }
                    return ExitCode::from(error.outcome() as u8);
                }
            }
            ExitCode::SUCCESS
        }
    }
}

/// The operator's settings file, as `serve` reads it.
fn settings_file(file: &std::path::Path) -> Result<config::Config, config::Error> {
    let overrides = config::Overrides {
        config_file: Some(file.to_owned()),
        ..config::Overrides::default()
    };
    config::load(&overrides, |name| std::env::var(name).ok())
}

/// `policy lint`.
async fn lint(dir: &std::path::Path, time_limit: std::time::Duration, json: bool) -> ExitCode {
    let progress =
        working("policy lint: proving each policy with cvc5 (about 30 s for the shipped ones)");
    let linted = policy_tools::lint::run(dir, time_limit).await;
    progress.finish_and_clear();
    let report = match linted {
        Ok(report) => report,
        Err(policy_tools::diff::Undecided(reason)) => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({ "result": "could not decide", "reason": reason })
                );
            } else {
                out!("could not decide: {reason}");
            }
            return ExitCode::from(2);
        }
    };
    if json {
        out!(
            "{:#}",
            serde_json::json!({
                "result": if report.findings.is_empty() { "clean" } else { "findings" },
                "policies": report.policies,
                "findings": report.findings.iter().map(|f| serde_json::json!({
                    "policy": f.policy, "file": f.file, "kind": f.kind.as_str(),
                    "detail": f.detail, "example": f.example,
                })).collect::<Vec<_>>(),
                "queries": report.queries,
                "seconds": report.elapsed.as_secs_f64(),
            })
        );
    } else {
        for f in &report.findings {
            out!(
                "{} ({}): {}: {}",
                f.policy,
                f.file,
                f.kind.as_str(),
                f.detail
            );
            if let Some(example) = &f.example {
                out!("{example:#}");
            }
        }
        out!(
            "{} policies, {} finding(s) ({} solver queries, {:.2} s)",
            report.policies,
            report.findings.len(),
            report.queries,
            report.elapsed.as_secs_f64()
        );
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `policy diff`.
async fn diff(args: &DiffArgs) -> ExitCode {
    if args.config.is_none() {
        eprintln!("{NO_SETTINGS}");
    }
    let undecided = |reason: String| {
        if args.json {
            out!(
                "{}",
                serde_json::json!({ "result": "could not decide", "reason": reason })
            );
        } else {
            out!("could not decide: {reason}");
        }
        ExitCode::from(2)
    };
    let settings = match args.config.as_deref().map(settings_file).transpose() {
        Ok(settings) => settings,
        Err(error) => return undecided(error.to_string()),
    };
    let Some(account_id) = args
        .account_id
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.policy.account_id.clone()))
        .filter(|a| a.parse::<AccountId>().is_ok())
    else {
        return undecided(
            "no account ID (digits): give --account-id or a --config with policy.account_id".into(),
        );
    };
    let options = policy_tools::diff::Options {
        active: args.active.clone(),
        candidate: args.candidate.clone(),
        rules: settings
            .map(|s| s.policy.dependent_actions)
            .unwrap_or_default(),
        account_id,
        time_limit: args.time_limit,
    };
    let progress = working("policy diff: proving each decision with cvc5");
    let compared = policy_tools::diff::run(&options).await;
    progress.finish_and_clear();
    let report = match compared {
        Ok(report) => report,
        Err(policy_tools::diff::Undecided(reason)) => return undecided(reason),
    };
    let difference = |d: &policy_tools::diff::Difference| {
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
    // A widening nobody can show (no counterexample reproduced through the
    // authorizer) is not a widening a CI gate may block on: said, and exit 2.
    let unconfirmed = report.verdict.widens() && !report.widenings.iter().any(|d| d.confirmed);
    if args.json {
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
    } else {
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
                policy_tools::diff::Verdict::Equivalent =>
                    "decides every call as the active policies do",
                policy_tools::diff::Verdict::Narrows =>
                    "only denies calls the active policies allow",
                policy_tools::diff::Verdict::Widens => "allows calls the active policies deny",
                policy_tools::diff::Verdict::WidensAndNarrows =>
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
    if unconfirmed {
        ExitCode::from(2)
    } else if report.verdict.widens() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Said by `policy explain` and `policy diff` run without the gateway's
/// settings: a gateway with dependent actions in its settings decides
/// otherwise.
const NO_SETTINGS: &str = "note: no --config: decided without a settings file's \
    [[policy.dependent_actions]], as a gateway without them would (the demo's are in \
    examples/demo.toml: --config examples/demo.toml)";

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

/// `policy explain`.
fn explain(args: &ExplainArgs) -> ExitCode {
    // The operator's dependent actions and account, as `serve` reads them.
    let settings = match &args.config {
        None => {
            eprintln!("{NO_SETTINGS}");
            None
        }
        Some(file) => match settings_file(file) {
            Ok(settings) => Some(settings),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(1);
            }
        },
    };
    let account_id = args
        .account_id
        .clone()
        .or_else(|| settings.as_ref().and_then(|s| s.policy.account_id.clone()))
        .unwrap_or_default();
    if account_id.parse::<AccountId>().is_err() {
        eprintln!(
            "--account-id: {account_id:?} is not an Alibaba Cloud account ID (digits); give it, or a --config with policy.account_id"
        );
        return ExitCode::from(1);
    }
    let dependent_actions = settings
        .map(|s| s.policy.dependent_actions)
        .unwrap_or_default();
    let authorizer = match (policy::Config {
        dir: args.policies.clone(),
        account_id,
        dependent_actions,
    })
    .build()
    {
        Ok(authorizer) => authorizer,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(1);
        }
    };
    let request = match ecs_gateway::validate::modify_request(args.request.request()) {
        Ok(request) => request,
        Err(rejection) => {
            eprintln!("{rejection}");
            return ExitCode::from(1);
        }
    };
    let identity = match (&args.identity, &args.jwt_issuer, &args.jwt_subject) {
        (Some(spiffe), _, _) => ecs_gateway::identity::CallerId::Spiffe(spiffe.clone()),
        (None, Some(issuer), Some(subject)) => ecs_gateway::identity::CallerId::Jwt {
            issuer: issuer.clone(),
            subject: subject.clone(),
        },
        _ => unreachable!("clap requires --identity or --jwt-issuer with --jwt-subject"),
    };
    let caller = ecs_gateway::identity::Caller {
        identity,
        via: ecs_gateway::identity::Via::Mtls,
        mfa: args.mfa,
        secure_transport: true,
        peer: Some(std::net::SocketAddr::new(args.source_ip, 0)),
    };
    let now = args.time.unwrap_or_else(chrono::Utc::now);
    let (decision, results) = authorizer.explain(&policy::Query::new(&caller, &request, now));
    let verdict =
        |denied: Option<policy::DenyKind>| denied.map_or("Allow", policy::DenyKind::as_str);
    if args.output == client::OutputFormat::Json {
        let json = serde_json::json!({
            "decision": match &decision.outcome {
                policy::Outcome::Allow { .. } => "Allow",
                policy::Outcome::Deny(d) => d.kind.as_str(),
            },
            "denied": match &decision.outcome {
                policy::Outcome::Allow { .. } => serde_json::Value::Null,
                policy::Outcome::Deny(d) => serde_json::json!({
                    "action": d.action, "layer": d.layer.as_str(),
                    "policies": d.policies, "errors": d.errors,
                }),
            },
            "principal": decision.principal,
            "resource": decision.resource,
            "associatePublicIpAddress": decision.allocates_public_ip,
            "policyVersion": decision.policy_version,
            "results": results.iter().map(|r| serde_json::json!({
                "action": r.action, "layer": r.layer.as_str(), "result": verdict(r.denied),
                "policies": r.policies, "errors": r.errors,
            })).collect::<Vec<_>>(),
        });
        out!("{json:#}");
    } else {
        match &decision.outcome {
            policy::Outcome::Allow { policies } => {
                out!("decision: Allow ({})", policies.join(", "));
            }
            policy::Outcome::Deny(d) => out!(
                "decision: {} of {} by the {} layer ({}){}",
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
        }
        out!("principal: {}", decision.principal);
        out!("resource: {}", decision.resource);
        out!(
            "ecs:AssociatePublicIpAddress: {}",
            decision.allocates_public_ip
        );
        out!("policy version: {}", decision.policy_version);
        for r in &results {
            out!(
                "  {:<32} {:<9} {:<13} {}{}",
                r.action,
                r.layer.as_str(),
                verdict(r.denied),
                r.policies.join(", "),
                if r.errors.is_empty() {
                    String::new()
                } else {
                    format!(" errors: {}", r.errors.join("; "))
                }
            );
        }
    }
    if decision.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
