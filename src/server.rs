//! The tonic server: where the request flow's order is written, once.
//!
//! ```text
//! gRPC call ──► validate ──► [identity, authorize: next] ──► sign ──► upstream ──► response
//! ```
//!
//! Each stage is a module with one entry point; errors become statuses in
//! `error.rs` only. Identity and authorization will slot in between
//! validation and signing, so that authorization sees a typed, valid request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::pb;
use crate::pb::instance_network_service_server::{
    InstanceNetworkService, InstanceNetworkServiceServer,
};
use crate::{upstream, validate};

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Gateway {
    upstream: Arc<upstream::Client>,
}

impl Gateway {
    /// A gateway forwarding through `upstream`.
    pub fn new(upstream: upstream::Client) -> Self {
        Self {
            upstream: Arc::new(upstream),
        }
    }
}

#[tonic::async_trait]
impl InstanceNetworkService for Gateway {
    #[tracing::instrument(
        name = "ModifyInstanceNetworkSpec",
        skip_all,
        fields(rpc.system = "grpc", rpc.service = "ecsgateway.v1.InstanceNetworkService", instance_id, region_id)
    )]
    async fn modify_instance_network_spec(
        &self,
        request: Request<pb::ModifyInstanceNetworkSpecRequest>,
    ) -> Result<Response<pb::ModifyInstanceNetworkSpecResponse>, Status> {
        let deadline = grpc_timeout(request.metadata());
        let request = validate::modify_request(request.into_inner()).map_err(Error::from)?;
        let span = tracing::Span::current();
        span.record("instance_id", request.instance_id.as_str());
        span.record("region_id", request.region_id.as_str());

        let reply = self
            .upstream
            .modify_instance_network_spec(&request, deadline)
            .await
            .map_err(|source| Error::Upstream {
                source,
                client_token: request.client_token.value.clone(),
            })?;
        tracing::info!(request_id = %reply.request_id, "ECS applied the change");
        Ok(Response::new(pb::ModifyInstanceNetworkSpecResponse {
            order_id: reply.order_id.unwrap_or_default(),
            request_id: reply.request_id,
            client_token: request.client_token.value,
        }))
    }
}

/// Reads the caller's deadline from `grpc-timeout` (`<digits><unit>`, at most
/// 8 digits, units H M S m u n), per gRPC over HTTP/2.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Serves `gateway` on `listener` until `shutdown` completes, then lets calls
/// in flight finish.
///
/// # Errors
///
/// The transport fails.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(InstanceNetworkServiceServer::new(gateway))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

/// Why the gateway could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No credentials were configured.
    #[error(
        "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
         or ALIBABA_CLOUD_CREDENTIALS_FILE"
    )]
    NoCredentials,
    /// The credentials could not be loaded.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::Error),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] upstream::BuildError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("gRPC server failed")]
    Serve(#[from] tonic::transport::Error),
}

impl RunError {
    /// True when the settings are at fault (exit code 64, before any port
    /// is bound).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::NoCredentials | Self::Credentials(_) | Self::Client(_)
        )
    }
}

/// Builds the gateway's running parts from `config`.
///
/// # Errors
///
/// Missing or unreadable credentials, or a TLS stack that cannot start.
pub fn build(config: &crate::config::Config) -> Result<Gateway, RunError> {
    let credentials = config
        .credentials
        .clone()
        .ok_or(RunError::NoCredentials)?
        .build()?;
    let upstream = config.upstream.clone().build(Arc::new(credentials))?;
    Ok(Gateway::new(upstream))
}

/// Binds `addr`, with a message naming it on failure.
///
/// # Errors
///
/// The address is taken or not ours.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// `ecs-gateway serve`: builds everything, binds, serves until SIGINT or
/// SIGTERM, then drains calls in flight.
///
/// # Errors
///
/// See [`RunError`].
pub async fn run(config: crate::config::Config) -> Result<(), RunError> {
    let gateway = build(&config)?;
    let listener = bind(config.listen).await?;
    tracing::info!(listen = %config.listen, endpoint = %config.upstream.endpoint, "gateway serving");
    serve(gateway, listener, shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (Kubernetes' stop).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, draining calls in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grpc_timeout_units() {
        let mut m = tonic::metadata::MetadataMap::new();
        for (value, expected) in [
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("10S", Some(Duration::from_secs(10))),
            ("250m", Some(Duration::from_millis(250))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("123456789S", None),
            ("S", None),
            ("10x", None),
            ("-1S", None),
        ] {
            m.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(grpc_timeout(&m), expected, "{value}");
        }
    }
}
