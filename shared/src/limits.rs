//! The one place that knows Spillway's size limits.

use thiserror::Error;

/// SQS's hard ceiling for one message body (and for the sum of a `SendMessageBatch` request).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// SQS's hard ceiling on entries in one `SendMessageBatch` request.
pub const SQS_MAX_BATCH_ENTRIES: usize = 10;
/// Bytes an envelope adds around its events, with room to spare: the sealed envelope's
/// `{"v":2,"kid":"<up to 32>","events":[` + `],"sig":"<64 hex>"}` (133 bytes at most,
/// `envelope::WRAPPER_MAX`, held below this by a compile-time check).
pub const ENVELOPE_OVERHEAD_BYTES: usize = 160;
/// Bytes the edge may add to an event when it enriches it (`id`, `received_at`, `key_id` of up
/// to 64 characters, `edge`), with room to spare. The event limit applies to what the client
/// sent; the packer allows this much on top.
pub const ENRICHMENT_BYTES: usize = 512;

/// Size limits, shared by the edge (which refuses what breaks them with `413`) and the consumer
/// (which refuses oversized messages as poison).
///
/// Every field has a default chosen for a public ingest endpoint; the edge reads overrides from
/// its environment and calls [`Limits::validate`] before serving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body as received, before any decompression. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest body after `Content-Encoding: gzip` is inflated. Default 4 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest single event as the client sent it. Default 64 KiB. Once enriched it may be up
    /// to [`ENRICHMENT_BYTES`] larger.
    pub max_event_bytes: usize,
    /// Most events in one request. Default 1,000.
    pub max_events_per_request: usize,
    /// Cap for one SQS message body (an envelope of several events). Default 256 KiB, under
    /// SQS's 1 MiB so that queues created with a smaller `MaximumMessageSize` still work.
    pub max_message_bytes: usize,
    /// Cap for the sum of bodies in one `SendMessageBatch` request. Default 1 MiB (SQS's limit).
    pub max_batch_bytes: usize,
    /// Deepest nesting of arrays and objects inside one event. Default 32.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 4 * 1024 * 1024,
            max_event_bytes: 64 * 1024,
            max_events_per_request: 1_000,
            max_message_bytes: 256 * 1024,
            max_batch_bytes: SQS_MAX_MESSAGE_BYTES,
            max_json_depth: 32,
        }
    }
}

/// A combination of limits that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitsError {
    #[error("{name} must be greater than zero")]
    Zero { name: &'static str },
    #[error("{name} = {value} exceeds the SQS limit of {max} bytes")]
    OverSqs {
        name: &'static str,
        value: usize,
        max: usize,
    },
    #[error("max_event_bytes ({event}) plus enrichment and envelope overhead must fit in max_message_bytes ({message})")]
    EventLargerThanMessage { event: usize, message: usize },
    #[error("max_message_bytes ({message}) must not exceed max_batch_bytes ({batch})")]
    MessageLargerThanBatch { message: usize, batch: usize },
    #[error("max_decompressed_bytes ({decompressed}) must be at least max_body_bytes ({body})")]
    DecompressedSmallerThanBody { decompressed: usize, body: usize },
}

impl Limits {
    /// Checks that the limits are consistent: every event fits in a message, every message in a
    /// batch request, and nothing exceeds what SQS accepts.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let named = [
            ("max_body_bytes", self.max_body_bytes),
            ("max_decompressed_bytes", self.max_decompressed_bytes),
            ("max_event_bytes", self.max_event_bytes),
            ("max_events_per_request", self.max_events_per_request),
            ("max_message_bytes", self.max_message_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
            ("max_json_depth", self.max_json_depth),
        ];
        if let Some((name, _)) = named.iter().find(|(_, v)| *v == 0) {
            return Err(LimitsError::Zero { name });
        }
        for (name, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if value > SQS_MAX_MESSAGE_BYTES {
                return Err(LimitsError::OverSqs {
                    name,
                    value,
                    max: SQS_MAX_MESSAGE_BYTES,
                });
            }
        }
        if self.max_event_bytes + ENRICHMENT_BYTES + ENVELOPE_OVERHEAD_BYTES
            > self.max_message_bytes
        {
            return Err(LimitsError::EventLargerThanMessage {
                event: self.max_event_bytes,
                message: self.max_message_bytes,
            });
        }
        if self.max_message_bytes > self.max_batch_bytes {
            return Err(LimitsError::MessageLargerThanBatch {
                message: self.max_message_bytes,
                batch: self.max_batch_bytes,
            });
        }
        if self.max_decompressed_bytes < self.max_body_bytes {
            return Err(LimitsError::DecompressedSmallerThanBody {
                decompressed: self.max_decompressed_bytes,
                body: self.max_body_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn zero_is_refused() {
        let l = Limits {
            max_events_per_request: 0,
            ..Limits::default()
        };
        assert_eq!(
            l.validate(),
            Err(LimitsError::Zero {
                name: "max_events_per_request"
            })
        );
    }

    #[test]
    fn message_over_sqs_limit_is_refused() {
        let l = Limits {
            max_message_bytes: SQS_MAX_MESSAGE_BYTES + 1,
            ..Limits::default()
        };
        assert!(matches!(l.validate(), Err(LimitsError::OverSqs { .. })));
    }

    #[test]
    fn event_must_fit_in_message() {
        let l = Limits {
            max_event_bytes: 256 * 1024,
            ..Limits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(LimitsError::EventLargerThanMessage { .. })
        ));
    }

    #[test]
    fn message_must_fit_in_batch() {
        let l = Limits {
            max_batch_bytes: 128 * 1024,
            ..Limits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(LimitsError::MessageLargerThanBatch { .. })
        ));
    }

    #[test]
    fn decompressed_at_least_body() {
        let l = Limits {
            max_decompressed_bytes: 1024,
            ..Limits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(LimitsError::DecompressedSmallerThanBody { .. })
        ));
    }
}
