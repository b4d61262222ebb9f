//! Logging: `tracing` with a subscriber filtered by `RUST_LOG` (default
//! `info`), JSON lines unless `ECS_GATEWAY_LOG_FORMAT=text`. Logs go to
//! stderr so that stdout stays the commands' own output.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(lookup: impl Fn(&str) -> Option<String>) {
    let filter = EnvFilter::try_new(lookup("RUST_LOG").unwrap_or_else(|| "info".into()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if lookup("ECS_GATEWAY_LOG_FORMAT").as_deref() == Some("text") {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
    // A subscriber already installed (tests, a second command) is fine.
    drop(result);
}
