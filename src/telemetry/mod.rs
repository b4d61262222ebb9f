//! Logs, traces and metrics.
//!
//! - Logs: `tracing` with JSON lines on stderr (trace and span ids included
//!   while a call is served), filtered by `RUST_LOG` (default `info`);
//!   `ECS_GATEWAY_LOG_FORMAT=text` for humans.
//! - Traces: OpenTelemetry over OTLP (gRPC, or HTTP/protobuf), configured by
//!   the standard `OTEL_*` variables, batch-exported and flushed on shutdown.
//!   Without an endpoint nothing is exported and nothing is reported.
//!   W3C trace context and baggage are taken from incoming calls
//!   ([`trace::TraceLayer`]) and injected into the upstream request.
//! - Metrics: [`metrics`], for Prometheus on the admin port.

pub mod json_line;
pub mod log_writer;
pub mod metrics;
pub mod trace;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

pub use metrics::Metrics;

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default; port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

/// Which traces to keep, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`.
    Ratio(f64),
    /// `parentbased_always_on` (the default).
    ParentAlwaysOn,
    /// `parentbased_always_off`.
    ParentAlwaysOff,
    /// `parentbased_traceidratio`.
    ParentRatio(f64),
}

impl SamplerConfig {
    fn sampler(self) -> Sampler {
        let parent = |root| Sampler::ParentBased(Box::new(root));
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentAlwaysOn => parent(Sampler::AlwaysOn),
            Self::ParentAlwaysOff => parent(Sampler::AlwaysOff),
            Self::ParentRatio(r) => parent(Sampler::TraceIdRatioBased(r)),
        }
    }
}

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// The traces endpoint.
    pub endpoint: String,
    /// The transport.
    pub protocol: Protocol,
    /// `service.name`.
    pub service_name: String,
    /// Other resource attributes.
    pub resource: Vec<(String, String)>,
    /// The sampler.
    pub sampler: SamplerConfig,
    /// Export timeout.
    pub timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON lines.
    Json,
    /// Human-readable text.
    Text,
}

/// Telemetry settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `RUST_LOG`.
    pub log_filter: String,
    /// `ECS_GATEWAY_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// Trace export, when an endpoint is configured.
    pub otlp: Option<Otlp>,
}

/// A telemetry setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A variable has a wrong value.
    #[error("setting {setting}: {problem}")]
    Invalid {
        /// The variable.
        setting: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The exporter could not be built.
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The thread writing log lines could not be started.
    #[error("cannot start the thread writing log lines")]
    LogWriter(#[source] std::io::Error),
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> Error {
    Error::Invalid {
        setting,
        problem: problem.into(),
    }
}

/// `k=v,k2=v2` with percent-encoded values, as `OTEL_RESOURCE_ATTRIBUTES`.
fn resource_attributes(value: &str) -> Result<Vec<(String, String)>, Error> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                invalid(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("{pair:?} is not key=value"),
                )
            })?;
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8_lossy()
                .into_owned();
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

/// Reads the telemetry settings, from the standard `OTEL_*` variables and
/// `RUST_LOG`, through `lookup` (tests pass a map).
///
/// # Errors
///
/// A variable holds a value the gateway cannot use.
pub fn config(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let log_filter = lookup("RUST_LOG").unwrap_or_else(|| "info".into());
    let log_format = match lookup("ECS_GATEWAY_LOG_FORMAT").as_deref() {
        None | Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            return Err(invalid(
                "ECS_GATEWAY_LOG_FORMAT",
                format!("{other:?}: expected json or text"),
            ));
        }
    };
    let disabled = lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || lookup("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none");
    let protocol = match lookup("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| lookup("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("grpc") => Protocol::Grpc,
        Some("http/protobuf") => Protocol::HttpProtobuf,
        Some(other) => {
            return Err(invalid(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                format!("{other:?}: expected grpc or http/protobuf"),
            ));
        }
    };
    // The signal-specific endpoint is used as is; the generic one gets the
    // signal's path for HTTP, as the OTLP exporter specification says.
    let endpoint = lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        lookup("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| match protocol {
            Protocol::Grpc => base,
            Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        })
    });
    let otlp = match endpoint.filter(|e| !e.is_empty() && !disabled) {
        None => None,
        Some(endpoint) => {
            let resource =
                resource_attributes(&lookup("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default())?;
            let service_name = lookup("OTEL_SERVICE_NAME")
                .or_else(|| {
                    resource
                        .iter()
                        .find(|(k, _)| k == "service.name")
                        .map(|(_, v)| v.clone())
                })
                .unwrap_or_else(|| "ecs-gateway".into());
            let ratio = || -> Result<f64, Error> {
                let arg = lookup("OTEL_TRACES_SAMPLER_ARG").unwrap_or_else(|| "1.0".into());
                arg.parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        invalid(
                            "OTEL_TRACES_SAMPLER_ARG",
                            format!("{arg:?}: expected a ratio from 0 to 1"),
                        )
                    })
            };
            let sampler = match lookup("OTEL_TRACES_SAMPLER").as_deref() {
                None | Some("parentbased_always_on") => SamplerConfig::ParentAlwaysOn,
                Some("always_on") => SamplerConfig::AlwaysOn,
                Some("always_off") => SamplerConfig::AlwaysOff,
                Some("traceidratio") => SamplerConfig::Ratio(ratio()?),
                Some("parentbased_always_off") => SamplerConfig::ParentAlwaysOff,
                Some("parentbased_traceidratio") => SamplerConfig::ParentRatio(ratio()?),
                Some(other) => {
                    return Err(invalid(
                        "OTEL_TRACES_SAMPLER",
                        format!("{other:?} is not a known sampler"),
                    ));
                }
            };
            let timeout = match lookup("OTEL_EXPORTER_OTLP_TIMEOUT") {
                Some(ms) => Duration::from_millis(ms.parse().map_err(|_| {
                    invalid(
                        "OTEL_EXPORTER_OTLP_TIMEOUT",
                        format!("{ms:?}: expected milliseconds"),
                    )
                })?),
                None => Duration::from_secs(10),
            };
            Some(Otlp {
                endpoint,
                protocol,
                service_name,
                resource,
                sampler,
                timeout,
            })
        }
    };
    Ok(Config {
        log_filter,
        log_format,
        otlp,
    })
}

/// Flushes and stops trace export when the process ends.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The log writer's worker: dropping it writes out what is queued.
    log_writer: std::sync::Mutex<Option<log_writer::Guard>>,
}

impl Telemetry {
    /// Exports what is buffered now.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(error) = provider.force_flush()
        {
            tracing::warn!(%error, "flushing traces failed");
        }
    }

    /// Flushes and stops the exporter, then writes out the queued log lines.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            self.flush();
            let _ = provider.shutdown();
        }
        drop(
            self.log_writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }
}

fn provider(otlp: &Otlp) -> Result<SdkTracerProvider, Error> {
    crate::install_crypto_provider();
    let exporter = match otlp.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&otlp.endpoint)
            .with_timeout(otlp.timeout)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&otlp.endpoint)
            .with_timeout(otlp.timeout)
            .build(),
    }
    .map_err(Error::Exporter)?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(otlp.service_name.clone())
        .with_attributes(
            otlp.resource
                .iter()
                .filter(|(k, _)| k != "service.name")
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(otlp.sampler.sampler())
        .with_resource(resource)
        .build())
}

/// The error and its sources, joined with `: `, for the log and the CLI's
/// messages.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Installs the global subscriber (logs, and traces when configured) and the
/// W3C propagators. Call once, inside the Tokio runtime. A second call (tests,
/// a second command) leaves the first subscriber in place.
///
/// # Errors
///
/// The exporter cannot be built.
///
/// Log lines are written to stderr by a thread of their own
/// ([`log_writer`]): a call appends its line to a shared buffer (4 MiB) and
/// never waits for the terminal or the container runtime's pipe; the
/// thread writes everything buffered in one write. No line is dropped (the
/// decision log is an audit record): when the buffer is full, calls wait
/// for room. [`Telemetry::shutdown`] writes out what is buffered.
pub fn init(config: &Config) -> Result<Telemetry, Error> {
    let (writer, guard) =
        log_writer::spawn("ecs-gateway-log", std::io::stderr()).map_err(Error::LogWriter)?;
    let telemetry = init_with_writer(config, fmt::writer::BoxMakeWriter::new(writer))?;
    *telemetry
        .log_writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(guard);
    Ok(telemetry)
}

/// [`init`], with the logs written to `writer` instead of stderr: tests pass
/// [`fmt::TestWriter`], so that the test harness captures the logs and
/// shows them only for a failing test.
///
/// # Errors
///
/// The exporter cannot be built.
pub fn init_with_writer(
    config: &Config,
    writer: fmt::writer::BoxMakeWriter,
) -> Result<Telemetry, Error> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]),
    );
    // Stage spans are for the traces, not the log lines (trace::STAGE).
    let stages_off = format!("{}=off", trace::STAGE);
    let filter = EnvFilter::try_new(format!("{},{stages_off}", config.log_filter))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{stages_off}")));
    let logs = match config.log_format {
        LogFormat::Json => fmt::layer()
            .fmt_fields(json_line::AppendJsonFields)
            .event_format(json_line::JsonLine)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt::layer().with_writer(writer).with_filter(filter).boxed(),
    };
    let provider = config.otlp.as_ref().map(provider).transpose()?;
    // Only the gateway's own spans are exported, whatever RUST_LOG says
    // about the logs: the transport crates' internals are noise in a trace.
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ecs-gateway"))
            .with_filter(Targets::new().with_target("ecs_gateway", tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Telemetry {
        provider,
        log_writer: std::sync::Mutex::new(None),
    })
}

/// A log sink for unit tests: what a subscriber wrote, shared with the test.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl CapturedLog {
    /// What was written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[cfg(test)]
impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        config(|k| vars.get(k).cloned())
    }

    #[test]
    fn exports_nothing_without_an_endpoint() {
        let c = from(&[("OTEL_SERVICE_NAME", "x")]).unwrap();
        assert_eq!(c.otlp, None);
        assert_eq!(c.log_filter, "info");
        let disabled = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert_eq!(disabled.otlp, None);
        let none = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(none.otlp, None);
    }

    #[test]
    fn reads_the_standard_variables() {
        let c = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=net%20ops,service.name=from-attrs",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        let otlp = c.otlp.unwrap();
        assert_eq!(otlp.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(otlp.protocol, Protocol::HttpProtobuf);
        assert_eq!(otlp.service_name, "from-attrs");
        assert!(otlp.resource.contains(&("team".into(), "net ops".into())));
        assert_eq!(otlp.sampler, SamplerConfig::ParentRatio(0.25));

        let grpc = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_SERVICE_NAME", "gw"),
        ])
        .unwrap()
        .otlp
        .unwrap();
        assert_eq!(
            (
                grpc.endpoint.as_str(),
                grpc.protocol,
                grpc.service_name.as_str()
            ),
            ("http://traces:4317", Protocol::Grpc, "gw")
        );
        assert_eq!(grpc.sampler, SamplerConfig::ParentAlwaysOn);
    }

    #[test]
    fn refuses_values_it_cannot_use() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        for (vars, setting) in [
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![endpoint, ("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    endpoint,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![endpoint, ("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
            (
                vec![("ECS_GATEWAY_LOG_FORMAT", "xml")],
                "ECS_GATEWAY_LOG_FORMAT",
            ),
        ] {
            let err = from(&vars).unwrap_err().to_string();
            assert!(err.contains(setting), "{err}");
        }
    }
}
