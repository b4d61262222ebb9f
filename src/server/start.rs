//! Start-up: the gateway built from its settings ([`build`]), its ports
//! bound ([`bind`]), and `ecs-gateway serve` ([`run`]), which serves until
//! SIGINT or SIGTERM ([`shutdown_signal`]). Every setting is checked here,
//! before any port is bound.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::{Gateway, serve_on, watch_policies};
use crate::admission;
use crate::config::{Config, ServerSettings, TlsConfig, table};
use crate::telemetry::{self, Metrics};
use crate::{identity, policy, upstream};

/// The gateway built from its settings, not yet serving: the service and
/// what the transport and the layers around it need ([`serve_on`]).
#[derive(Debug)]
pub struct Stack {
    /// The service, with its authorizer, upstream client and lookup.
    pub gateway: Gateway,
    /// Who is calling, for the identity layer.
    pub identity: Arc<identity::Resolver>,
    /// TLS of the gRPC port; `None` serves plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Metrics, readiness and the admin port's routes.
    pub metrics: Arc<Metrics>,
    /// Reflection, the calls' deadline and the shutdown grace period.
    pub settings: ServerSettings,
    /// The admission layer's limits.
    pub admission: admission::Limits,
    /// Shadow policies that could not be loaded at start: loaded (and shadow
    /// mode turned on) once they can be ([`watch_policies`]).
    pub shadow_pending: Option<policy::Config>,
}

/// Why the gateway could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No credentials were configured.
    #[error(
        "no credentials: tried an AccessKey in the environment (ALIBABA_CLOUD_ACCESS_KEY_ID and \
         ALIBABA_CLOUD_ACCESS_KEY_SECRET), RRSA (ALIBABA_CLOUD_ROLE_ARN, \
         ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE), a credentials file \
         (ALIBABA_CLOUD_CREDENTIALS_FILE), a credentials URI (ALIBABA_CLOUD_CREDENTIALS_URI); \
         the ECS instance's RAM role is off (ALIBABA_CLOUD_ECS_METADATA_DISABLED=true)"
    )]
    NoCredentials,
    /// No account ID for the ARNs.
    #[error(
        "no account ID: set ECS_GATEWAY_ACCOUNT_ID (or policy.account_id) to the account owning the instances"
    )]
    NoAccountId,
    /// The credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::Error),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] upstream::BuildError),
    /// Identity could not be set up.
    #[error(transparent)]
    Identity(#[from] identity::BuildError),
    /// The policies could not be loaded.
    #[error(transparent)]
    Policy(#[from] policy::BuildError),
    /// A TLS certificate, key or CA file could not be read.
    #[error("cannot read TLS file {path}")]
    Tls {
        /// The file that could not be read.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} ({setting})")]
    Bind {
        /// The address that could not be bound.
        addr: std::net::SocketAddr,
        /// Where it is set, for the message.
        setting: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
    /// The reflection service could not be built.
    #[error("cannot build gRPC reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
}

impl RunError {
    /// True when the settings are at fault (exit code 64, before any port
    /// is bound).
    pub fn is_config(&self) -> bool {
        !matches!(
            self,
            Self::Bind { .. } | Self::Serve(_) | Self::Reflection(_)
        )
    }
}

/// Builds the gateway from `config`, ready for [`serve_on`].
///
/// # Errors
///
/// Missing or unreadable credentials, policies, keys or certificates.
pub fn build(config: &Config) -> Result<Stack, RunError> {
    let source = config.credentials.clone().ok_or(RunError::NoCredentials)?;
    let chain = crate::credentials::Opened::new(source, config.sts.clone())?;
    let authorizer = config
        .policy
        .authorizer(&config.policy.dir)
        .ok_or(RunError::NoAccountId)?
        .build()?;
    let (shadow, shadow_pending) = build_shadow(&config.policy);
    let store: Arc<dyn telemetry::metrics::PolicyState> = authorizer.store().clone();
    let metrics = Arc::new(Metrics::new(Some(store)));
    if shadow_pending.is_some() {
        metrics.shadow_load_failures.inc();
    }
    let signers =
        Arc::new(chain.signers(authorizer.account_id(), &config.accounts, metrics.clone()));
    metrics.watch_credentials(signers.clone());
    let upstream =
        config
            .upstream
            .clone()
            .build(signers, metrics.clone(), crate::error::ECS_CODES)?;
    Ok(Stack {
        gateway: Gateway::new(upstream, Arc::new(authorizer), metrics.clone())
            .with_shadow(shadow)
            .with_lookup(config.lookup.as_ref()),
        identity: Arc::new(config.identity.clone().build()?),
        tls: config.tls.as_ref().map(tls).transpose()?,
        metrics,
        settings: config.server.clone(),
        admission: config.admission,
        shadow_pending,
    })
}

/// The shadow authorizer when shadow mode is on and its policies load, else
/// the settings to load them with later. Shadow policies are never
/// enforced: a candidate that does not load leaves shadow mode off (said
/// loudly and counted) until it does.
fn build_shadow(
    settings: &policy::Settings,
) -> (Option<Arc<policy::Authorizer>>, Option<policy::Config>) {
    let Some(candidate) = settings
        .shadow_dir
        .as_deref()
        .and_then(|dir| settings.authorizer(dir))
    else {
        return (None, None);
    };
    match candidate.clone().build() {
        Ok(shadow) => (Some(Arc::new(shadow)), None),
        Err(error) => {
            tracing::error!(%error, dir = %candidate.dir.display(), "the shadow policies cannot be loaded: shadow mode is off until they can");
            (None, Some(candidate))
        }
    }
}

/// The server's TLS settings: its certificate and key and, for mTLS, the CA
/// that signs client certificates.
fn tls(config: &TlsConfig) -> Result<tonic::transport::ServerTlsConfig, RunError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| RunError::Tls {
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&config.cert)?, read(&config.key)?));
    if let Some(ca) = &config.client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(!config.require_client_cert);
    }
    Ok(tls)
}

/// Binds `addr`, with a message naming it on failure.
///
/// # Errors
///
/// The address is taken or not ours.
pub async fn bind(
    addr: std::net::SocketAddr,
    setting: impl Into<String>,
) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            addr,
            setting: setting.into(),
            source,
        })
}

/// How `listen` is set, for a bind error.
pub const LISTEN_SETTING: &str = "--listen, ECS_GATEWAY_LISTEN or listen";
/// How `admin_listen` is set, for a bind error.
pub const ADMIN_LISTEN_SETTING: &str =
    "--admin-listen, ECS_GATEWAY_ADMIN_LISTEN or admin_listen: the admin port (/metrics, /readyz)";

/// `ecs-gateway serve`: builds everything, binds, serves until SIGINT or
/// SIGTERM, then drains calls in flight.
///
/// # Errors
///
/// See [`RunError`].
pub async fn run(config: Config) -> Result<(), RunError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let stack = build(&config)?;
    let _watchers = watch_policies(&stack);
    let shutdown = shutdown_signal();
    let listener = bind(config.listen, config.origin(&table::LISTEN)).await?;
    let admin = bind(
        config.admin_listen,
        format!(
            "{}: the admin port (/metrics, /readyz)",
            config.origin(&table::ADMIN_LISTEN)
        ),
    )
    .await?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin_listen,
        endpoint = %config.upstream.endpoint,
        tls = stack.tls.is_some(),
        "gateway serving"
    );
    serve_on(stack, listener, Some(admin), shutdown).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes' stop).
///
/// The handlers are registered when this is called, not when the future is
/// first polled: a signal that arrives in between (say, right after the
/// demo's banner) would otherwise go to the listeners registered before
/// (the demo's simulator) and never to this one, and the gateway would not
/// stop. Call it before saying the server is up. Needs a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "cannot listen for SIGINT and SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
            // Said once, by the server that drains (the demo's simulator
            // waits for the same signal).
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
