//! The one reading of a Kinesis stream ARN (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`)
//! and of a region name, so the edge (`KINESIS_STREAM_ARN`, `AWS_REGION`), the local poller
//! (`KINESIS_STREAM_ARN`) and the dead-letter tool (the stream a dead letter came from) accept
//! and refuse the same ARNs and find the same region and endpoint in them.
//!
//! It checks shape only: whether the stream exists, and whether the credentials may write to
//! it, only Kinesis can say. Endpoints are known for the `aws`, `aws-us-gov` and `aws-cn`
//! partitions; another partition's (`aws-iso`, ...) must be configured.

use thiserror::Error;

/// Why a string is not a Kinesis stream ARN. The message completes "NAME ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("must look like arn:aws:kinesis:eu-west-1:123456789012:stream/NAME")]
pub struct StreamArnError;

/// A Kinesis stream ARN, checked: partition `aws` or `aws-*`, a region such as `eu-west-1`, a
/// 12-digit account, and a stream name of 1 to 128 characters of `A-Z a-z 0-9 _ . -` (the
/// names Kinesis allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamArn {
    arn: String,
    partition: String,
    region: String,
    account: String,
    name: String,
}

impl StreamArn {
    pub fn parse(arn: &str) -> Result<Self, StreamArnError> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
            return Err(StreamArnError);
        };
        let partition_ok = *partition == "aws"
            || partition
                .strip_prefix("aws-")
                .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()));
        let region_ok = !region.is_empty() && valid_region(region);
        let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
        let name = resource.strip_prefix("stream/").unwrap_or("");
        let name_ok = (1..=128).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if *prefix != "arn"
            || !partition_ok
            || *service != "kinesis"
            || !region_ok
            || !account_ok
            || !name_ok
        {
            return Err(StreamArnError);
        }
        Ok(Self {
            arn: arn.to_owned(),
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    pub fn partition(&self) -> &str {
        &self.partition
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's regional endpoint, for the partitions whose domain is known; other
    /// partitions need an endpoint configured (`KINESIS_ENDPOINT`).
    pub fn default_endpoint(&self) -> Option<String> {
        let domain = match self.partition.as_str() {
            "aws" | "aws-us-gov" => "amazonaws.com",
            "aws-cn" => "amazonaws.com.cn",
            _ => return None,
        };
        Some(format!("https://kinesis.{}.{domain}", self.region))
    }
}

/// `eu-west-1`: lowercase letters, digits and dashes (emptiness is the caller's to refuse).
pub fn valid_region(region: &str) -> bool {
    region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_arn_names_its_partition_region_account_and_stream() {
        let ok = StreamArn::parse("arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b_c-1")
            .expect("ok");
        assert_eq!(ok.partition(), "aws-cn");
        assert_eq!(ok.region(), "cn-north-1");
        assert_eq!(ok.account(), "123456789012");
        assert_eq!(ok.name(), "a.b_c-1");
        assert_eq!(
            ok.as_str(),
            "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/a.b_c-1"
        );
        assert_eq!(
            ok.default_endpoint().as_deref(),
            Some("https://kinesis.cn-north-1.amazonaws.com.cn")
        );
        // The local emulator's account and region.
        let local =
            StreamArn::parse("arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events")
                .expect("ok");
        assert_eq!(
            local.default_endpoint().as_deref(),
            Some("https://kinesis.us-east-1.amazonaws.com")
        );
        assert!(StreamArn::parse(&format!(
            "arn:aws:kinesis:eu-west-1:123456789012:stream/{}",
            "n".repeat(128)
        ))
        .is_ok());
    }

    #[test]
    fn what_is_not_a_stream_arn_is_refused() {
        for bad in [
            "",
            "spillway-events",
            "arn:aws:sqs:eu-west-1:123456789012:stream/events",
            "arn:aws:kinesis:eu-west-1:12345678901:stream/events",
            "arn:aws:kinesis:EU:123456789012:stream/events",
            "arn:aws:kinesis::123456789012:stream/events",
            "arn:aws:kinesis:eu-west-1:123456789012:events",
            "arn:aws:kinesis:eu-west-1:123456789012:table/events",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/a/b",
            "arn:gcp:kinesis:eu-west-1:123456789012:stream/events",
            "arn:aws-:kinesis:eu-west-1:123456789012:stream/events",
            "https://kinesis.eu-west-1.amazonaws.com/events",
        ] {
            assert_eq!(StreamArn::parse(bad), Err(StreamArnError), "{bad}");
        }
        assert!(StreamArn::parse(&format!(
            "arn:aws:kinesis:eu-west-1:123456789012:stream/{}",
            "n".repeat(129)
        ))
        .is_err());
    }

    #[test]
    fn a_partition_without_a_known_domain_has_no_default_endpoint() {
        let iso = StreamArn::parse("arn:aws-iso:kinesis:us-iso-east-1:123456789012:stream/e")
            .expect("ok");
        assert_eq!(iso.default_endpoint(), None);
    }

    #[test]
    fn regions_are_lowercase_letters_digits_and_dashes() {
        assert!(valid_region("eu-west-1") && valid_region("us-gov-west-1"));
        assert!(!valid_region("EU") && !valid_region("eu_west") && !valid_region("eu west"));
    }
}
