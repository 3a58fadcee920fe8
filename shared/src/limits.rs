//! The one place that knows Spillway's size limits: the request's ([`RequestLimits`]: what a client
//! may send) and the buffer's ([`BufferLimits`]: what one call to the durable buffer takes),
//! and the one rule that ties them ([`validate`]: an enriched event fits in one entry).
//!
//! It does not know how a buffer is called; a buffer's hard ceilings are a [`BufferLimits`]
//! value too ([`SQS_CEILING`] for SQS), so a second buffer brings its own.

use thiserror::Error;

/// SQS's hard ceiling for one message body (and for the sum of a `SendMessageBatch` request).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// SQS's hard ceiling on entries in one `SendMessageBatch` request.
pub const SQS_MAX_BATCH_ENTRIES: usize = 10;
/// What SQS accepts at most in one `SendMessageBatch`: the ceiling configured buffer limits are
/// validated against.
pub const SQS_CEILING: BufferLimits = BufferLimits {
    entries_per_call: SQS_MAX_BATCH_ENTRIES,
    bytes_per_entry: SQS_MAX_MESSAGE_BYTES,
    bytes_per_call: SQS_MAX_MESSAGE_BYTES,
};
/// Kinesis Data Streams' `PutRecords` ceilings (AWS documentation, checked 2026-12): at most
/// 500 records per call; a record's data plus its partition key at most 1 MiB (the default
/// maximum record size; a stream can be raised above it, the edge does not assume so); the
/// whole call, data plus keys, at most 5 MiB (what every emulator and older region enforces).
pub const KINESIS_MAX_RECORDS: usize = 500;
/// Data plus partition key of one record.
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Data plus partition keys of one `PutRecords` call.
pub const KINESIS_MAX_CALL_BYTES: usize = 5 * 1024 * 1024;
/// The longest partition key Kinesis takes (256 characters; the edge's keys are ASCII, so
/// bytes), reserved in every record of [`KINESIS_CEILING`] so data plus key always fit.
pub const KINESIS_MAX_PARTITION_KEY_BYTES: usize = 256;
/// What one `PutRecords` takes, as the packer counts (record data only): the service's ceilings
/// less a full-length partition key per record. Counting the key at its longest costs at most
/// 128,000 bytes of a 5 MiB call and keeps the packer unaware of keys.
pub const KINESIS_CEILING: BufferLimits = BufferLimits {
    entries_per_call: KINESIS_MAX_RECORDS,
    bytes_per_entry: KINESIS_MAX_RECORD_BYTES - KINESIS_MAX_PARTITION_KEY_BYTES,
    bytes_per_call: KINESIS_MAX_CALL_BYTES - KINESIS_MAX_RECORDS * KINESIS_MAX_PARTITION_KEY_BYTES,
};
/// Bytes an envelope adds around its events, with room to spare: the sealed envelope's
/// `{"v":2,"kid":"<up to 32>","events":[` + `],"sig":"<64 hex>"}` (133 bytes at most,
/// `envelope::WRAPPER_MAX`, held below this by a compile-time check).
pub const ENVELOPE_OVERHEAD_BYTES: usize = 160;
/// Bytes the edge may add to an event when it enriches it (`id`, `received_at`, `key_id` of up
/// to 64 characters, `edge`), with room to spare. The event limit applies to what the client
/// sent; the packer allows this much on top.
pub const ENRICHMENT_BYTES: usize = 512;

/// The request's size limits, shared by the edge (which refuses what breaks them with `413`)
/// and the collector parsers.
///
/// Every field has a default chosen for a public ingest endpoint; the edge reads overrides from
/// its environment and calls [`validate`] before serving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Largest request body as received, before any decompression. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest body after `Content-Encoding: gzip` is inflated. Default 4 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest single event as the client sent it. Default 64 KiB. Once enriched it may be up
    /// to [`ENRICHMENT_BYTES`] larger.
    pub max_event_bytes: usize,
    /// Most events in one request. Default 1,000.
    pub max_events_per_request: usize,
    /// Deepest nesting of arrays and objects inside one event. Default 32.
    pub max_json_depth: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_decompressed_bytes: 4 * 1024 * 1024,
            max_event_bytes: 64 * 1024,
            max_events_per_request: 1_000,
            max_json_depth: 32,
        }
    }
}

/// What one call to the durable buffer takes: the packer fills calls up to these, and a group
/// commit is full when one more event would need a second call.
///
/// An entry is one envelope of several events (an SQS message); a call is one request to the
/// buffer (a `SendMessageBatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Most entries in one call (SQS: 10).
    pub entries_per_call: usize,
    /// Cap for one entry's body (`MAX_MESSAGE_BYTES`). Default 256 KiB, under SQS's 1 MiB so
    /// that queues created with a smaller `MaximumMessageSize` still work.
    pub bytes_per_entry: usize,
    /// Cap for the sum of the entry bodies of one call (`MAX_BATCH_BYTES`). Default 1 MiB
    /// (SQS's limit).
    pub bytes_per_call: usize,
}

impl Default for BufferLimits {
    /// SQS's, as configured by default.
    fn default() -> Self {
        Self {
            entries_per_call: SQS_MAX_BATCH_ENTRIES,
            bytes_per_entry: 256 * 1024,
            bytes_per_call: SQS_MAX_MESSAGE_BYTES,
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
    /// Over the ceiling given to [`validate_within`] (a buffer other than SQS).
    #[error("{name} = {value} exceeds the buffer's limit of {max}")]
    OverCeiling {
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

/// Checks that the limits are consistent: every event fits in an entry, every entry in a call,
/// and nothing exceeds what SQS accepts ([`SQS_CEILING`]). The first problem found is returned,
/// named by the setting it comes from.
pub fn validate(request: &RequestLimits, buffer: &BufferLimits) -> Result<(), LimitsError> {
    validate_within(request, buffer, &SQS_CEILING).map_err(|e| match e {
        LimitsError::OverCeiling { name, value, max } => LimitsError::OverSqs { name, value, max },
        other => other,
    })
}

/// [`validate`] against another buffer's ceiling (such as [`KINESIS_CEILING`]); exceeding it
/// is [`LimitsError::OverCeiling`].
pub fn validate_within(
    request: &RequestLimits,
    buffer: &BufferLimits,
    ceiling: &BufferLimits,
) -> Result<(), LimitsError> {
    let named = [
        ("max_body_bytes", request.max_body_bytes),
        ("max_decompressed_bytes", request.max_decompressed_bytes),
        ("max_event_bytes", request.max_event_bytes),
        ("max_events_per_request", request.max_events_per_request),
        ("max_message_bytes", buffer.bytes_per_entry),
        ("max_batch_bytes", buffer.bytes_per_call),
        ("max_json_depth", request.max_json_depth),
        ("entries_per_call", buffer.entries_per_call),
    ];
    if let Some((name, _)) = named.iter().find(|(_, v)| *v == 0) {
        return Err(LimitsError::Zero { name });
    }
    for (name, value, max) in [
        (
            "max_message_bytes",
            buffer.bytes_per_entry,
            ceiling.bytes_per_entry,
        ),
        (
            "max_batch_bytes",
            buffer.bytes_per_call,
            ceiling.bytes_per_call,
        ),
        (
            "entries_per_call",
            buffer.entries_per_call,
            ceiling.entries_per_call,
        ),
    ] {
        if value > max {
            return Err(LimitsError::OverCeiling { name, value, max });
        }
    }
    if request.max_event_bytes + ENRICHMENT_BYTES + ENVELOPE_OVERHEAD_BYTES > buffer.bytes_per_entry
    {
        return Err(LimitsError::EventLargerThanMessage {
            event: request.max_event_bytes,
            message: buffer.bytes_per_entry,
        });
    }
    if buffer.bytes_per_entry > buffer.bytes_per_call {
        return Err(LimitsError::MessageLargerThanBatch {
            message: buffer.bytes_per_entry,
            batch: buffer.bytes_per_call,
        });
    }
    if request.max_decompressed_bytes < request.max_body_bytes {
        return Err(LimitsError::DecompressedSmallerThanBody {
            decompressed: request.max_decompressed_bytes,
            body: request.max_body_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(request: RequestLimits, buffer: BufferLimits) -> Result<(), LimitsError> {
        validate(&request, &buffer)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            check(RequestLimits::default(), BufferLimits::default()),
            Ok(())
        );
        assert_eq!(check(RequestLimits::default(), SQS_CEILING), Ok(()));
    }

    #[test]
    fn the_kinesis_ceiling_counts_a_full_partition_key_per_record() {
        assert_eq!(KINESIS_CEILING.entries_per_call, 500);
        assert_eq!(
            KINESIS_CEILING.bytes_per_entry + KINESIS_MAX_PARTITION_KEY_BYTES,
            1024 * 1024
        );
        assert_eq!(
            KINESIS_CEILING.bytes_per_call + 500 * KINESIS_MAX_PARTITION_KEY_BYTES,
            5 * 1024 * 1024
        );
        let r = RequestLimits::default();
        assert_eq!(
            validate_within(&r, &KINESIS_CEILING, &KINESIS_CEILING),
            Ok(())
        );
        // Within Kinesis's ceiling, over SQS's.
        assert!(matches!(
            validate(&r, &KINESIS_CEILING),
            Err(LimitsError::OverSqs { .. })
        ));
        let over = BufferLimits {
            entries_per_call: 501,
            ..KINESIS_CEILING
        };
        assert_eq!(
            validate_within(&r, &over, &KINESIS_CEILING),
            Err(LimitsError::OverCeiling {
                name: "entries_per_call",
                value: 501,
                max: 500
            })
        );
        let over = BufferLimits {
            bytes_per_call: KINESIS_CEILING.bytes_per_call + 1,
            ..KINESIS_CEILING
        };
        assert!(matches!(
            validate_within(&r, &over, &KINESIS_CEILING),
            Err(LimitsError::OverCeiling {
                name: "max_batch_bytes",
                ..
            })
        ));
    }

    #[test]
    fn zero_is_refused() {
        let l = RequestLimits {
            max_events_per_request: 0,
            ..RequestLimits::default()
        };
        assert_eq!(
            check(l, BufferLimits::default()),
            Err(LimitsError::Zero {
                name: "max_events_per_request"
            })
        );
    }

    #[test]
    fn message_over_sqs_limit_is_refused() {
        let b = BufferLimits {
            bytes_per_entry: SQS_MAX_MESSAGE_BYTES + 1,
            ..BufferLimits::default()
        };
        assert!(matches!(
            check(RequestLimits::default(), b),
            Err(LimitsError::OverSqs { .. })
        ));
        let b = BufferLimits {
            entries_per_call: SQS_MAX_BATCH_ENTRIES + 1,
            ..BufferLimits::default()
        };
        assert!(matches!(
            check(RequestLimits::default(), b),
            Err(LimitsError::OverSqs {
                name: "entries_per_call",
                ..
            })
        ));
    }

    #[test]
    fn event_must_fit_in_message() {
        let l = RequestLimits {
            max_event_bytes: 256 * 1024,
            ..RequestLimits::default()
        };
        assert!(matches!(
            check(l, BufferLimits::default()),
            Err(LimitsError::EventLargerThanMessage { .. })
        ));
    }

    #[test]
    fn message_must_fit_in_batch() {
        let b = BufferLimits {
            bytes_per_call: 128 * 1024,
            ..BufferLimits::default()
        };
        assert!(matches!(
            check(RequestLimits::default(), b),
            Err(LimitsError::MessageLargerThanBatch { .. })
        ));
    }

    #[test]
    fn decompressed_at_least_body() {
        let l = RequestLimits {
            max_decompressed_bytes: 1024,
            ..RequestLimits::default()
        };
        assert!(matches!(
            check(l, BufferLimits::default()),
            Err(LimitsError::DecompressedSmallerThanBody { .. })
        ));
    }
}
