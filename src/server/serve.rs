//! Serving a built gateway on listeners it is given: the transport's limits,
//! the layer stack in the flow's order, health, reflection, the admin port,
//! and draining on shutdown. `run`, the demo, tests and examples all serve
//! through [`serve_on`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_reflection::server::{v1, v1alpha};

use super::{Gateway, RunError, Stack};
use crate::admission::{self, unauthenticated};
use crate::config::ServerSettings;
use crate::pb;
use crate::pb::authorization_service_server::AuthorizationServiceServer;
use crate::pb::instance_network_service_server::InstanceNetworkServiceServer;
use crate::telemetry::{self, Metrics};
use crate::{identity, policy};

pub use crate::admission::MAX_MESSAGE_SIZE;

/// Serves `stack` on `listener` (and the admin routes on `admin`, when
/// given) until `shutdown` completes. Then health turns NOT_SERVING and
/// readiness false, new calls are refused, and calls in flight get the
/// shutdown grace period to finish before they are cut.
///
/// # Errors
///
/// The transport fails, or reflection cannot be built.
pub async fn serve_on(
    stack: Stack,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Health and reflection need no identity: their messages are tiny, and
    // a larger announced length is refused before it is buffered.
    let health_service =
        health_service.max_decoding_message_size(unauthenticated::MAX_MESSAGE_SIZE);
    let (reflection_v1, reflection_v1alpha) = if stack.settings.reflection {
        (Some(reflection_v1()?), Some(reflection_v1alpha()?))
    } else {
        (None, None)
    };
    let metrics = stack.metrics.clone();
    let admin = admin.map(|listener| AdminPort::spawn(listener, metrics.clone()));
    let mut transport = transport(&stack.settings);
    if let Some(tls) = stack.tls {
        transport = transport.tls_config(tls)?;
    }
    // Ready once the default account's credentials may sign (`/readyz`
    // asks them); they are fetched, and kept fresh, from now on.
    stack.gateway.start_credentials();
    set_health(&health, ServingStatus::Serving).await;
    metrics.set_ready(true);
    let draining_started = Arc::new(tokio::sync::Notify::new());
    let draining = {
        let (health, metrics) = (health.clone(), metrics.clone());
        let started = draining_started.clone();
        async move {
            shutdown.await;
            tracing::info!("shutdown signal received, draining calls in flight");
            metrics.set_ready(false);
            set_health(&health, ServingStatus::NotServing).await;
            started.notify_one();
        }
    };
    let gateway = stack
        .gateway
        .with_request_timeout(stack.settings.request_timeout);
    let service = InstanceNetworkServiceServer::new(gateway.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let authorization = AuthorizationServiceServer::new(gateway.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    // Health and reflection streams end when calls do, whatever changed the
    // settings after they were read.
    let mut admission = stack.admission;
    admission.unauthenticated.deadline = stack.settings.request_timeout;
    // The layers, outermost first: the flow's order.
    let server = transport
        .layer(telemetry::trace::TraceLayer::new(metrics.clone()))
        .layer(identity::IdentityLayer::new(
            stack.identity,
            crate::error::reject_identity,
        ))
        .layer(admission::AdmissionLayer::new(
            admission,
            is_mapped(gateway.authorizer().store().clone()),
            crate::error::ADMISSION,
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(service)
        .add_service(authorization)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            draining,
        );
    let grace = stack.settings.shutdown_grace;
    // Calls in flight get the grace period to finish; then they are cut, so
    // that a stuck upstream cannot hold the pod past its termination.
    let result = tokio::select! {
        result = server => result,
        () = async {
            draining_started.notified().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over, closing the calls still in flight");
            gateway.cut_off();
            // Let the answers leave before the process goes.
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        }
    };
    if let Some(admin) = admin {
        admin.stop().await;
    }
    result.map_err(RunError::from)
}

/// The transport: HTTP/2 limits bound what one connection can hold
/// (streams, header bytes, flow-control windows); keepalive finds dead
/// peers; the server cancels calls at `request_timeout`.
fn transport(settings: &ServerSettings) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .timeout(settings.request_timeout)
        .max_concurrent_streams(Some(256))
        .http2_max_header_list_size(Some(16 * 1024))
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(1024 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
}

/// Sets the gRPC health of both services and of the server as a whole
/// ("") to `status`.
async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in [
        InstanceNetworkServiceServer::<Gateway>::NAME,
        AuthorizationServiceServer::<Gateway>::NAME,
        "",
    ] {
        health.set_service_status(service, status).await;
    }
}

/// Reflection (v1) over the gateway's and health's descriptors.
fn reflection_v1() -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, RunError> {
    Ok(reflection()
        .build_v1()
        .map_err(RunError::Reflection)?
        .max_decoding_message_size(unauthenticated::MAX_MESSAGE_SIZE))
}

/// Reflection (v1alpha, the older protocol some clients still ask for).
fn reflection_v1alpha()
-> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, RunError> {
    Ok(reflection()
        .build_v1alpha()
        .map_err(RunError::Reflection)?
        .max_decoding_message_size(unauthenticated::MAX_MESSAGE_SIZE))
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The admin port (/metrics, /healthz, /readyz), served until stopped.
struct AdminPort {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl AdminPort {
    fn spawn(listener: TcpListener, metrics: Arc<Metrics>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = telemetry::metrics::admin_router(metrics);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    /// Stops it once its requests in flight are answered.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Whether the policies in force map an identity to a principal.
fn is_mapped(store: Arc<policy::Store>) -> admission::IsMapped {
    Arc::new(move |identity| store.current().principals.contains_key(identity))
}
