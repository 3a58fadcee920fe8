//! [`Configured`]: the buffer the configuration names ([`Config::target`]), among those this
//! build carries, as one [`Buffer`]. In a deployed Worker (one buffer feature) it has one
//! variant; the native tests build both. It builds the client and forwards calls; nothing else.

use aws_smithy_async::rt::sleep::SharedAsyncSleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use spillway_shared::BufferEntry;

#[cfg(feature = "kinesis")]
use super::kinesis::KinesisSender;
#[cfg(feature = "sqs")]
use super::sqs::SqsSender;
use super::{Buffer, CallOutcome, SendError};
use crate::config::{Config, Target};

/// The buffer the configuration names ([`Config::target`]), among those this build carries.
#[derive(Debug, Clone)]
pub enum Configured {
    #[cfg(feature = "sqs")]
    Sqs(SqsSender),
    #[cfg(feature = "kinesis")]
    Kinesis(KinesisSender),
}

impl Configured {
    /// The configured buffer's client over `http`, `time` and `sleep`; `random` draws Kinesis's
    /// `request` partition keys (unused by SQS).
    #[cfg_attr(not(feature = "kinesis"), allow(unused_variables))]
    pub fn new(
        config: &Config,
        http: SharedHttpClient,
        time: SharedTimeSource,
        sleep: SharedAsyncSleep,
        random: fn() -> [u8; 16],
    ) -> Self {
        match &config.target {
            #[cfg(feature = "sqs")]
            Target::Sqs(t) => Configured::Sqs(SqsSender::new(config, t, http, time, sleep)),
            #[cfg(feature = "kinesis")]
            Target::Kinesis(t) => {
                Configured::Kinesis(KinesisSender::new(config, t, http, time, sleep, random))
            }
        }
    }
}

impl Buffer for Configured {
    async fn send(&self, entries: &[BufferEntry], group: &str) -> Result<CallOutcome, SendError> {
        match self {
            #[cfg(feature = "sqs")]
            Configured::Sqs(s) => s.send(entries, group).await,
            #[cfg(feature = "kinesis")]
            Configured::Kinesis(k) => k.send(entries, group).await,
        }
    }
}
