//! What can be wrong with the configuration: one [`ConfigProblem`] per unusable setting, all
//! of them together in a [`ConfigError`]. Messages name variables, never their values.

use spillway_shared::limits::LimitsError;
use thiserror::Error;

/// One unusable setting. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigProblem {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("limits: {0}")]
    RequestLimits(LimitsError),
    /// `BUFFER` names a buffer whose client this Worker was not built with.
    #[error(
        "BUFFER is {buffer}, but this Worker was built without it: deploy the build with {build}"
    )]
    NotBuiltWith {
        buffer: &'static str,
        build: &'static str,
    },
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError(pub Vec<ConfigProblem>);
