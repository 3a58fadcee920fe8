//! The deployed circuit breaker's adapter: what the function does when the template's schedule
//! invokes it with a [`ProbeRequest`] (every minute) instead of a buffer's event.
//!
//! It probes the database through the same store the handler writes with, reads the state of
//! the event source mapping the request names, and applies [`mapping_action`]: disable the
//! mapping while the database is unavailable, enable it again once the database answers. The
//! decision is the pure [`crate::breaker`]; this module only does the two Lambda API calls
//! (`GetEventSourceMapping`, `UpdateEventSourceMapping`, the only ones the template grants,
//! on that one mapping) and builds the probe's EMF record (`ConsumerPaused`, 1 while the
//! mapping is disabled by the breaker), which the template's alarm watches.
//!
//! It does not probe on its own: without the schedule nothing re-enables a disabled mapping.
//! A probe costs one invocation a minute (about 43,800 a month, each as long as one connection
//! attempt plus two Lambda API calls) and, in the execution environment it runs in, one
//! database connection beside the `MaximumConcurrency` the mapping's invocations hold.

use std::future::Future;

use aws_config::BehaviorVersion;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tracing::{info, warn};

use crate::breaker::{mapping_action, paused_after, MappingAction, ProbeRequest};
use crate::store::{EventStore, FailureKind};

/// Why a probe could not do its job. The invocation then fails as a whole (the function's
/// `Errors` alarm), and the next scheduled probe tries again.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("GetEventSourceMapping {uuid}: {reason}")]
    Get { uuid: String, reason: String },
    #[error("GetEventSourceMapping {uuid}: the answer has no State")]
    NoState { uuid: String },
    #[error("UpdateEventSourceMapping {uuid} Enabled={enabled}: {reason}")]
    Update {
        uuid: String,
        enabled: bool,
        reason: String,
    },
}

/// What one probe found and did: the invocation's answer, and its log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub event_source_mapping: String,
    pub database_reachable: bool,
    /// The mapping's state before the action.
    pub mapping_state: String,
    /// `disable`, `enable` or `nothing`.
    pub action: &'static str,
    /// Whether deliveries are paused by the breaker after the action.
    pub paused: bool,
}

/// The two Lambda API calls the probe makes: the seam between [`run_probe`] and Lambda.
pub trait MappingApi {
    /// The mapping's `State` (`GetEventSourceMapping`).
    fn state(&self, uuid: &str) -> impl Future<Output = Result<String, ProbeError>> + Send;
    /// `UpdateEventSourceMapping Enabled=enabled`.
    fn set_enabled(
        &self,
        uuid: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;
}

/// The Lambda API client of the probe, made once per execution environment, on the first
/// probe (an environment that only serves the buffer's events never makes it).
#[derive(Debug, Clone)]
pub struct Mappings {
    client: aws_sdk_lambda::Client,
}

impl Mappings {
    /// The client for the function's own region and role.
    pub async fn connect() -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self {
            client: aws_sdk_lambda::Client::new(&sdk),
        }
    }
}

impl MappingApi for Mappings {
    async fn state(&self, uuid: &str) -> Result<String, ProbeError> {
        let out = self
            .client
            .get_event_source_mapping()
            .uuid(uuid)
            .send()
            .await
            .map_err(|e| ProbeError::Get {
                uuid: uuid.to_owned(),
                reason: aws_sdk_lambda::error::DisplayErrorContext(e).to_string(),
            })?;
        out.state()
            .map(str::to_owned)
            .ok_or_else(|| ProbeError::NoState {
                uuid: uuid.to_owned(),
            })
    }

    async fn set_enabled(&self, uuid: &str, enabled: bool) -> Result<(), ProbeError> {
        self.client
            .update_event_source_mapping()
            .uuid(uuid)
            .enabled(enabled)
            .send()
            .await
            .map_err(|e| ProbeError::Update {
                uuid: uuid.to_owned(),
                enabled,
                reason: aws_sdk_lambda::error::DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }
}

/// One scheduled probe: the database, the mapping's state, the action. See the module
/// documentation.
pub async fn run_probe<S: EventStore, M: MappingApi>(
    store: &S,
    mappings: &M,
    request: &ProbeRequest,
) -> Result<ProbeReport, ProbeError> {
    let uuid = request.event_source_mapping.as_str();
    let database_reachable = match store.probe().await {
        Ok(()) => true,
        Err(e) if e.kind == FailureKind::Unavailable => {
            warn!(error = %e, "breaker probe: database unavailable");
            false
        }
        // Reached but unhappy (a timeout, a table not migrated yet): not an outage.
        Err(e) => {
            warn!(error = %e, "breaker probe: the database answered with an error");
            true
        }
    };
    let state = mappings.state(uuid).await?;
    let action = mapping_action(database_reachable, &state);
    match action {
        MappingAction::Disable => {
            mappings.set_enabled(uuid, false).await?;
            warn!(mapping = uuid, "database unavailable: event source mapping disabled; the messages wait in the queue");
        }
        MappingAction::Enable => {
            mappings.set_enabled(uuid, true).await?;
            info!(
                mapping = uuid,
                "database reachable again: event source mapping enabled"
            );
        }
        MappingAction::Nothing => {}
    }
    let report = ProbeReport {
        event_source_mapping: uuid.to_owned(),
        database_reachable,
        paused: paused_after(action, &state),
        mapping_state: state,
        action: match action {
            MappingAction::Disable => "disable",
            MappingAction::Enable => "enable",
            MappingAction::Nothing => "nothing",
        },
    };
    info!(
        mapping = uuid,
        database_reachable,
        mapping_state = %report.mapping_state,
        action = report.action,
        paused = report.paused,
        "breaker probe"
    );
    Ok(report)
}

/// The probe's EMF record: `ConsumerPaused` (0 or 1) and `DatabaseReachable` (0 or 1), with
/// the `Service` dimension of the handler's records.
pub fn probe_emf(
    namespace: &str,
    service: &str,
    report: &ProbeReport,
    timestamp: DateTime<Utc>,
) -> String {
    json!({
        "Service": service,
        "ConsumerPaused": u8::from(report.paused),
        "DatabaseReachable": u8::from(report.database_reachable),
        "_aws": {
            "Timestamp": timestamp.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Service"]],
                "Metrics": [
                    {"Name": "ConsumerPaused", "Unit": "Count"},
                    {"Name": "DatabaseReachable", "Unit": "Count"},
                ],
            }],
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemStore;
    use std::sync::Mutex;

    /// A mapping in a given state that records the updates asked of it.
    struct FakeMapping {
        state: &'static str,
        updates: Mutex<Vec<(String, bool)>>,
    }

    impl FakeMapping {
        fn new(state: &'static str) -> Self {
            Self {
                state,
                updates: Mutex::new(Vec::new()),
            }
        }

        fn updates(&self) -> Vec<(String, bool)> {
            self.updates.lock().expect("lock").clone()
        }
    }

    impl MappingApi for FakeMapping {
        async fn state(&self, _uuid: &str) -> Result<String, ProbeError> {
            Ok(self.state.to_owned())
        }

        async fn set_enabled(&self, uuid: &str, enabled: bool) -> Result<(), ProbeError> {
            self.updates
                .lock()
                .expect("lock")
                .push((uuid.to_owned(), enabled));
            Ok(())
        }
    }

    fn request() -> ProbeRequest {
        ProbeRequest {
            event_source_mapping: "esm-1".into(),
        }
    }

    #[tokio::test]
    async fn a_database_down_disables_the_named_mapping() {
        let store = MemStore {
            down: true,
            ..MemStore::default()
        };
        let mapping = FakeMapping::new("Enabled");
        let report = run_probe(&store, &mapping, &request())
            .await
            .expect("probe");
        assert_eq!(mapping.updates(), [("esm-1".to_owned(), false)]);
        assert!(!report.database_reachable);
        assert_eq!((report.action, report.paused), ("disable", true));
        // Already disabled: nothing more to do, still paused.
        let mapping = FakeMapping::new("Disabled");
        let report = run_probe(&store, &mapping, &request())
            .await
            .expect("probe");
        assert!(mapping.updates().is_empty());
        assert_eq!((report.action, report.paused), ("nothing", true));
    }

    #[tokio::test]
    async fn a_database_back_enables_it_and_a_healthy_one_is_left_alone() {
        let store = MemStore::default();
        let mapping = FakeMapping::new("Disabled");
        let report = run_probe(&store, &mapping, &request())
            .await
            .expect("probe");
        assert_eq!(mapping.updates(), [("esm-1".to_owned(), true)]);
        assert_eq!((report.action, report.paused), ("enable", false));
        let mapping = FakeMapping::new("Enabled");
        let report = run_probe(&store, &mapping, &request())
            .await
            .expect("probe");
        assert!(mapping.updates().is_empty());
        assert_eq!((report.action, report.paused), ("nothing", false));
    }

    #[test]
    fn the_probe_record_is_emf_with_the_handlers_dimension() {
        let report = ProbeReport {
            event_source_mapping: "u".into(),
            database_reachable: false,
            mapping_state: "Enabled".into(),
            action: "disable",
            paused: true,
        };
        let at = DateTime::from_timestamp_millis(1_000).unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(&probe_emf("Spillway", "svc", &report, at)).expect("json");
        assert_eq!(v["ConsumerPaused"], 1);
        assert_eq!(v["DatabaseReachable"], 0);
        assert_eq!(v["Service"], "svc");
        assert_eq!(v["_aws"]["Timestamp"], 1_000);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Spillway");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ConsumerPaused"
        );
    }
}
