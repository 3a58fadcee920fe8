//! Logging set-up shared by the binaries: JSON lines on stdout (what CloudWatch Logs and Logs
//! Insights read best), filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. Each line carries the fields of the current span, so every
/// log of an invocation names its `request_id`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Lambda adds its own timestamp to every line; the local poller has none, so keep ours.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stdout)
        .try_init();
}
