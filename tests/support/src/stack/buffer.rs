//! Which buffer sits between the edge and the consumer (`--buffer sqs|kinesis`, `BUFFER=` in
//! `dev.env`), and which one a built Worker carries.
//!
//! A deployable Worker carries exactly one buffer's SDK (cargo features `sqs`, the default, and
//! `kinesis`), and the build tool writes either to `edge/build`: so before serving a build, the
//! stack checks that it is the one its buffer needs. The check reads the wasm for the one
//! string each SDK cannot do without, the service name in its JSON protocol's `X-Amz-Target`
//! (`AmazonSQS` for SQS, `Kinesis_20131202` for Kinesis; the optimised build keeps the name apart
//! from the operation's, so the name alone is looked for): no stamp file to go stale, and a
//! build made by hand (`wrangler dev --env kinesis`) is recognised as well.

use std::fmt;
use std::str::FromStr;

/// The buffer. Default [`BufferKind::Sqs`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BufferKind {
    /// An SQS queue (the local SQS: moto or LocalStack).
    #[default]
    Sqs,
    /// A Kinesis data stream (the local Kinesis: kinesis-local).
    Kinesis,
}

impl BufferKind {
    /// The name on command lines, in `dev.env` (`BUFFER=`) and in the edge's `BUFFER` var.
    pub fn as_str(self) -> &'static str {
        match self {
            BufferKind::Sqs => "sqs",
            BufferKind::Kinesis => "kinesis",
        }
    }

    /// The wrangler environment whose build and bindings serve this buffer (`--env`), if not
    /// the top level.
    pub fn wrangler_env(self) -> Option<&'static str> {
        match self {
            BufferKind::Sqs => None,
            BufferKind::Kinesis => Some("kinesis"),
        }
    }

    /// The string every Worker build carrying this buffer's SDK contains.
    fn marker(self) -> &'static [u8] {
        match self {
            BufferKind::Sqs => b"AmazonSQS",
            BufferKind::Kinesis => b"Kinesis_20131202",
        }
    }
}

impl fmt::Display for BufferKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a name that is neither `sqs` nor `kinesis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBuffer(pub String);

impl fmt::Display for UnknownBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown buffer `{}` (known: sqs, kinesis)", self.0)
    }
}

impl std::error::Error for UnknownBuffer {}

impl FromStr for BufferKind {
    type Err = UnknownBuffer;

    fn from_str(s: &str) -> Result<Self, UnknownBuffer> {
        match s {
            "sqs" => Ok(BufferKind::Sqs),
            "kinesis" => Ok(BufferKind::Kinesis),
            other => Err(UnknownBuffer(other.to_owned())),
        }
    }
}

/// The buffers whose SDK a built Worker's wasm carries (a deployable build carries one; a
/// native test build is never served).
pub fn buffers_in_wasm(wasm: &[u8]) -> Vec<BufferKind> {
    [BufferKind::Sqs, BufferKind::Kinesis]
        .into_iter()
        .filter(|b| {
            let m = b.marker();
            wasm.windows(m.len()).any(|w| w == m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print_and_others_are_refused() {
        for kind in [BufferKind::Sqs, BufferKind::Kinesis] {
            assert_eq!(kind.as_str().parse::<BufferKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(BufferKind::default(), BufferKind::Sqs);
        let err = "kafka".parse::<BufferKind>().expect_err("not a buffer");
        assert_eq!(
            err.to_string(),
            "unknown buffer `kafka` (known: sqs, kinesis)"
        );
        assert!("Kinesis".parse::<BufferKind>().is_err(), "names are exact");
        assert_eq!(BufferKind::Sqs.wrangler_env(), None);
        assert_eq!(BufferKind::Kinesis.wrangler_env(), Some("kinesis"));
    }

    #[test]
    fn a_build_is_known_by_its_sdk_target_prefix() {
        // As the optimised builds hold them (measured on both).
        let sqs = b"\0\0asm...RequestEntryAmazonSQSServiceRuntimePluginaws_sdk_sqs...".to_vec();
        let kinesis = b"\0\0asm...messageKinesis_201312022013-12-02http://kinesis...".to_vec();
        assert_eq!(buffers_in_wasm(&sqs), [BufferKind::Sqs]);
        assert_eq!(buffers_in_wasm(&kinesis), [BufferKind::Kinesis]);
        let both = [sqs, kinesis].concat();
        assert_eq!(
            buffers_in_wasm(&both),
            [BufferKind::Sqs, BufferKind::Kinesis]
        );
        assert!(buffers_in_wasm(b"\0asm AmazonSQ Kinesis_2013").is_empty());
    }
}
