//! `ecs-gateway serve`: run the gateway, or with `--check` check its settings
//! and files and print the effective settings.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{env, fail};
use crate::config::{self, table};
use crate::{server, upstream};

/// `serve`'s flags. Each shows its environment variable and its default in
/// `--help`; but only a value given on the command line is passed on as a
/// flag: the settings loader reads the environment and applies the defaults
/// itself, so that a settings file still beats a default, the environment
/// beats the file, and an error names the source the value came from.
#[derive(Debug, clap::Args)]
pub struct Args {
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

impl Args {
    /// The flags given on the command line (see [`Args`]), by the setting
    /// each sets.
    fn flags(self, matches: &clap::ArgMatches) -> config::Flags {
        let given = [
            ("config", self.config.map(|p| p.display().to_string())),
            ("listen", self.listen),
            ("admin_listen", self.admin_listen),
            ("upstream_endpoint", self.upstream_endpoint),
            ("upstream_timeout", self.upstream_timeout),
            (
                "credentials_file",
                self.credentials_file.map(|p| p.display().to_string()),
            ),
            ("policies", self.policies.map(|p| p.display().to_string())),
            ("account_id", self.account_id),
        ];
        let mut flags = config::Flags::default();
        for (id, value) in given {
            let on_the_command_line =
                matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            let flag = table::by_flag(&format!("--{}", id.replace('_', "-")));
            if let (true, Some(value), Some(setting)) = (on_the_command_line, value, flag) {
                flags = flags.with(*setting, value);
            }
        }
        flags
    }
}

/// Runs `serve`; `matches` are its own, to tell flags given on the command
/// line from defaults.
pub async fn run(args: Args, matches: &clap::ArgMatches) -> ExitCode {
    let (check, settings_only) = (args.check, args.settings_only);
    let flags = args.flags(matches);
    let settings = match config::load(&flags, env) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, true),
    };
    if check {
        for setting in &settings.effective {
            match &setting.from {
                None => out!("{} = {:?}", setting.key, setting.value),
                Some(from) => out!("{} = {:?}  # from {from}", setting.key, setting.value),
            }
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
