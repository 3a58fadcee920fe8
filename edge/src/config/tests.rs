//! Tests of the edge configuration (`config/mod.rs`).

use super::*;
use std::collections::HashMap;

pub(crate) const KEY_WEB: &str = "web-secret-key-0123456789";
pub(crate) const KEY_APP: &str = "app-secret-key-abcdefghij";

pub(crate) fn env() -> HashMap<&'static str, String> {
    HashMap::from([
        (
            "SQS_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/events".to_owned(),
        ),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "aws-secret-do-not-print".to_owned(),
        ),
        ("INGEST_KEYS", format!("web:{KEY_WEB},app:{KEY_APP}")),
        ("ENVELOPE_KEYS", crate::testkit::ENVELOPE_KEYS.to_owned()),
        ("ALLOWED_ORIGINS", "https://app.example.com".to_owned()),
    ])
}

pub(crate) fn config_with(overrides: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    let mut e = env();
    for (k, v) in overrides {
        e.insert(k, (*v).to_owned());
    }
    Config::from_env(|k| e.get(k).cloned())
}

#[test]
fn complete_environment_parses_with_defaults() {
    let c = config_with(&[]).expect("valid");
    let Target::Sqs(sqs) = &c.target else {
        panic!("SQS is the default buffer")
    };
    assert_eq!(sqs.endpoint, "https://sqs.eu-west-1.amazonaws.com");
    assert!(!sqs.queue.is_fifo());
    assert_eq!(c.ingest_keys.len(), 2);
    assert_eq!(c.ingest_keys[1].key_id, "app");
    assert_eq!(c.limits, RequestLimits::default());
    assert_eq!(c.buffer, spillway_shared::BufferLimits::default());
    assert_eq!(c.retry, RetryPolicy::default());
    assert_eq!(c.retry_after_secs, 5);
}

#[test]
fn endpoint_override_and_fifo() {
    let c = config_with(&[
        (
            "SQS_QUEUE_URL",
            "http://127.0.0.1:5000/123456789012/events.fifo",
        ),
        ("SQS_ENDPOINT", "http://127.0.0.1:6000/"),
    ])
    .expect("valid");
    let Target::Sqs(sqs) = &c.target else {
        panic!("SQS")
    };
    assert!(sqs.queue.is_fifo());
    assert!(c.target.orders_by_group());
    assert_eq!(sqs.queue.origin(), "http://127.0.0.1:5000");
    assert_eq!(sqs.endpoint, "http://127.0.0.1:6000");
    let bad = config_with(&[("SQS_ENDPOINT", "http://127.0.0.1:6000/queue")]);
    assert!(bad.is_err());
}

#[test]
fn every_problem_is_reported_and_names_only_the_variable() {
    let mut e = env();
    e.remove("AWS_REGION");
    e.insert("INGEST_KEYS", "web".to_owned());
    e.insert("SQS_DEADLINE_MS", "soon".to_owned());
    e.insert("AWS_SECRET_ACCESS_KEY", String::new());
    let err = Config::from_env(|k| e.get(k).cloned()).expect_err("invalid");
    let text = err.to_string();
    assert!(
        err.0.contains(&ConfigProblem::Missing("AWS_REGION")),
        "{text}"
    );
    assert!(
        err.0
            .contains(&ConfigProblem::Missing("AWS_SECRET_ACCESS_KEY")),
        "{text}"
    );
    assert!(text.contains("INGEST_KEYS"), "{text}");
    assert!(text.contains("SQS_DEADLINE_MS"), "{text}");
    assert_eq!(err.0.len(), 4, "{text}");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let err = config_with(&[("INGEST_KEYS", "web:short-secret")]).expect_err("too short");
    assert!(!err.to_string().contains("short-secret"), "{err}");
    let c = config_with(&[]).expect("valid");
    let debug = format!("{c:?}");
    assert!(!debug.contains(KEY_WEB), "{debug}");
    assert!(!debug.contains("aws-secret-do-not-print"), "{debug}");
}

#[test]
fn ingest_keys_rules() {
    let keys = parse_ingest_keys(&format!(" web : {KEY_WEB} ,, app:{KEY_APP}:x ")).expect("ok");
    assert_eq!(keys[0].key_id, "web");
    assert_eq!(keys[0].key.expose(), KEY_WEB);
    assert_eq!(keys[1].key.expose(), format!("{KEY_APP}:x"));
    assert!(parse_ingest_keys("").is_err());
    assert!(parse_ingest_keys(&format!("web:{KEY_WEB},web:{KEY_APP}")).is_err());
    assert!(parse_ingest_keys(&format!("web:{KEY_WEB},app:{KEY_WEB}")).is_err());
    assert!(parse_ingest_keys(&format!("we b:{KEY_WEB}")).is_err());
    assert!(parse_ingest_keys(&format!(":{KEY_WEB}")).is_err());
}

#[test]
fn origins() {
    assert_eq!(parse_origins("*"), Ok(AllowedOrigins::Any));
    let list = parse_origins("https://a.example, http://localhost:3000").expect("ok");
    assert_eq!(
        list.allow("http://localhost:3000"),
        Some("http://localhost:3000")
    );
    assert_eq!(list.allow("https://evil.example"), None);
    assert_eq!(AllowedOrigins::Any.allow("https://x"), Some("*"));
    assert!(parse_origins("https://a.example/path").is_err());
    assert!(parse_origins("a.example").is_err());
    assert!(parse_origins("*,https://a.example").is_err());
}

#[test]
fn limits_are_read_and_validated_together() {
    let c = config_with(&[("MAX_BODY_BYTES", "2048"), ("MAX_EVENTS_PER_REQUEST", "10")])
        .expect("valid");
    assert_eq!(c.limits.max_body_bytes, 2048);
    assert_eq!(c.limits.max_events_per_request, 10);
    // The buffer's settings land in the buffer's limits, not the request's.
    let c = config_with(&[
        ("MAX_MESSAGE_BYTES", "131072"),
        ("MAX_BATCH_BYTES", "524288"),
    ])
    .expect("valid");
    assert_eq!(c.buffer.bytes_per_entry, 128 * 1024);
    assert_eq!(c.buffer.bytes_per_call, 512 * 1024);
    assert_eq!(c.buffer.entries_per_call, 10);
    assert_eq!(c.limits, RequestLimits::default());
    let err = config_with(&[("MAX_DECOMPRESSED_BYTES", "10")]).expect_err("smaller than body");
    assert!(matches!(err.0[0], ConfigProblem::RequestLimits(_)), "{err}");
    assert!(config_with(&[("SQS_CONCURRENCY", "7")]).is_err());
    assert!(config_with(&[("SQS_RETRY_BASE_MS", "5000"), ("SQS_RETRY_MAX_MS", "100")]).is_err());
}

#[test]
fn queue_url_shapes() {
    assert!(QueueUrl::parse("sqs.example.com/1/q").is_err());
    assert!(QueueUrl::parse("ftp://sqs.example.com/1/q").is_err());
    assert!(QueueUrl::parse("https://sqs.example.com").is_err());
    assert!(QueueUrl::parse("https://user:pw@sqs.example.com/1/q").is_err());
    let q = QueueUrl::parse("https://sqs.example.com/1/q.fifo").expect("ok");
    assert!(q.is_fifo());
}

#[test]
fn every_numeric_setting_is_read_and_bounded() {
    let mut names = std::collections::HashSet::new();
    for s in NUMERIC_SETTINGS {
        assert!(names.insert(s.name), "{} is in the table twice", s.name);
        let above = (s.max + 1).to_string();
        let below = s.min.saturating_sub(1).to_string();
        for bad in [above.as_str(), below.as_str(), "ten", "-1", "1.5"] {
            if bad == s.min.to_string() {
                continue;
            }
            let err = config_with(&[(s.name, bad)]).expect_err(s.name);
            assert!(
                err.0
                    .iter()
                    .any(|p| matches!(p, ConfigProblem::Invalid { name, .. } if *name == s.name)),
                "{}={bad}: {err}",
                s.name
            );
        }
    }
    // A value within the bounds lands where it belongs.
    let c = config_with(&[
        ("SQS_DEADLINE_MS", "2500"),
        ("SQS_CONCURRENCY", "3"),
        ("RETRY_AFTER_SECS", "7"),
        ("RATE_LIMIT_PERIOD_SECS", "10"),
        ("MAX_JSON_DEPTH", "16"),
        ("MAX_EVENTS_PER_REQUEST", "50"),
        ("BATCH_WINDOW_MS", "35"),
        ("BATCH_SHARDS", "4"),
    ])
    .expect("valid");
    assert_eq!(c.group_commit.window, Duration::from_millis(35));
    assert_eq!(c.group_commit.shards, 4);
    assert!(c.group_commit.enabled());
    assert_eq!(c.retry.deadline, Duration::from_millis(2_500));
    assert_eq!(c.retry.concurrency, 3);
    assert_eq!((c.retry_after_secs, c.rate_limit_period_secs), (7, 10));
    assert_eq!(c.limits.max_json_depth, 16);
    assert_eq!(c.limits.max_events_per_request, 50);
    // Batching is on by default and off with a window of 0.
    let defaults = config_with(&[]).expect("valid");
    assert!(defaults.group_commit.enabled());
    assert_eq!(
        defaults.group_commit,
        crate::config::GroupCommitPolicy::default()
    );
    let off = config_with(&[("BATCH_WINDOW_MS", "0")]).expect("valid");
    assert!(!off.group_commit.enabled());
}

#[test]
fn envelope_keys_are_required_and_the_first_one_seals() {
    let mut e = env();
    e.remove("ENVELOPE_KEYS");
    let err = Config::from_env(|k| e.get(k).cloned()).expect_err("required");
    assert!(
        err.0.contains(&ConfigProblem::Missing("ENVELOPE_KEYS")),
        "{err}"
    );

    let rotating = format!("new:{},old:{}", "n".repeat(32), "o".repeat(32));
    let c = config_with(&[("ENVELOPE_KEYS", &rotating)]).expect("valid");
    assert_eq!(c.envelope_key.kid(), "new");

    let err = config_with(&[("ENVELOPE_KEYS", "k1:too-short")]).expect_err("weak");
    let text = err.to_string();
    assert!(
        text.contains("ENVELOPE_KEYS") && text.contains("32 bytes"),
        "{text}"
    );
    assert!(
        !text.contains("too-short"),
        "never quotes the secret: {text}"
    );
}

// ---------------------------------------------------------------- BUFFER=kinesis

fn kinesis_with(overrides: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    let mut all = crate::testkit::KINESIS_ENV.to_vec();
    all.extend_from_slice(overrides);
    config_with(&all)
}

#[test]
fn kinesis_needs_a_stream_not_a_queue() {
    let mut e = env();
    e.remove("SQS_QUEUE_URL");
    e.insert("BUFFER", "kinesis".to_owned());
    e.insert("KINESIS_STREAM_ARN", crate::testkit::STREAM_ARN.to_owned());
    let c = Config::from_env(|k| e.get(k).cloned()).expect("no SQS_QUEUE_URL needed");
    let Target::Kinesis(k) = &c.target else {
        panic!("kinesis")
    };
    assert_eq!(k.stream.name(), "spillway-events");
    assert_eq!(k.endpoint, "https://kinesis.eu-west-1.amazonaws.com");
    assert_eq!(k.partition_key, PartitionKey::Request);
    assert_eq!(c.region, "eu-west-1");
    assert!(!c.target.orders_by_group());
    assert_eq!(c.buffer, c.target.default_limits());
    assert_eq!(c.buffer.entries_per_call, 500);
    assert_eq!(c.buffer.bytes_per_entry, 256 * 1024);

    e.remove("KINESIS_STREAM_ARN");
    let err = Config::from_env(|k| e.get(k).cloned()).expect_err("no stream");
    assert_eq!(err.0, vec![ConfigProblem::Missing("KINESIS_STREAM_ARN")]);
}

#[test]
fn kinesis_settings_are_read_and_validated() {
    let c = kinesis_with(&[("KINESIS_PARTITION_KEY", "key_id")]).expect("valid");
    let Target::Kinesis(k) = &c.target else {
        panic!("kinesis")
    };
    assert_eq!(k.endpoint, "http://127.0.0.1:4567");
    assert_eq!(k.partition_key, PartitionKey::KeyId);
    assert!(c.target.orders_by_group());
    // AWS_REGION may be left out (the ARN's region is used) but not contradict the ARN.
    let mut e = env();
    e.remove("AWS_REGION");
    for (k, v) in crate::testkit::KINESIS_ENV {
        e.insert(k, (*v).to_owned());
    }
    assert_eq!(
        Config::from_env(|k| e.get(k).cloned())
            .expect("valid")
            .region,
        "eu-west-1"
    );
    let err = kinesis_with(&[("AWS_REGION", "us-east-1")]).expect_err("other region");
    assert!(err.to_string().contains("AWS_REGION"), "{err}");
    for (name, bad) in [
        ("KINESIS_PARTITION_KEY", "shard"),
        ("KINESIS_ENDPOINT", "http://127.0.0.1:4567/path"),
        ("KINESIS_ENDPOINT", "kinesis.local"),
        ("BUFFER", "kafka"),
    ] {
        let err = kinesis_with(&[(name, bad)]).expect_err(bad);
        assert!(err.to_string().contains(name), "{err}");
        assert!(
            !err.to_string().contains(bad),
            "never quotes the value: {err}"
        );
    }
    // 5 MiB of data leaves no room for the partition keys.
    let err = kinesis_with(&[("MAX_BATCH_BYTES", "5242880")]).expect_err("keys do not fit");
    assert!(
        err.0.contains(&ConfigProblem::RequestLimits(
            spillway_shared::LimitsError::OverCeiling {
                name: "max_batch_bytes",
                value: 5_242_880,
                max: 5_114_880
            }
        )),
        "{err}"
    );
    // The call cap is the ceiling less a full-length key per record.
    let c = kinesis_with(&[
        ("MAX_BATCH_BYTES", "5114880"),
        ("MAX_MESSAGE_BYTES", "1048320"),
    ])
    .expect("at the ceiling");
    assert_eq!(c.buffer, spillway_shared::limits::KINESIS_CEILING);
    let err = kinesis_with(&[("MAX_MESSAGE_BYTES", "1048321")]).expect_err("over");
    assert!(matches!(err.0[0], ConfigProblem::RequestLimits(_)), "{err}");
}

#[test]
fn a_buffer_the_build_lacks_is_a_start_up_error_naming_the_build() {
    // Native tests build both buffers, so the check is exercised on its parts: what each
    // build carries and the error's wording.
    assert!(BufferKind::Sqs.built() && BufferKind::Kinesis.built());
    let problem = ConfigProblem::NotBuiltWith {
        buffer: BufferKind::Kinesis.name(),
        build: BufferKind::Kinesis.build_hint(),
    };
    let text = problem.to_string();
    assert!(text.contains("BUFFER is kinesis"), "{text}");
    assert!(
        text.contains("--no-default-features --features kinesis"),
        "{text}"
    );
    assert!(text.contains("--env kinesis"), "{text}");
}

#[test]
fn group_commit_shards_are_a_range_and_kinesis_batches_only_when_asked() {
    let c = config_with(&[("BATCH_SHARDS", "2"), ("BATCH_MAX_SHARDS", "8")]).expect("valid");
    assert_eq!((c.group_commit.shards, c.group_commit.max_shards), (2, 8));
    let defaults = config_with(&[]).expect("valid");
    assert_eq!(
        (
            defaults.group_commit.shards,
            defaults.group_commit.max_shards
        ),
        (1, 32)
    );
    let err = config_with(&[("BATCH_MAX_SHARDS", "0")]).expect_err("0 shards");
    assert!(err.to_string().contains("BATCH_MAX_SHARDS"), "{err}");
    // A batcher never pays with Kinesis: off unless a window is set.
    let k = kinesis_with(&[]).expect("valid");
    assert!(!k.group_commit.enabled());
    let k = kinesis_with(&[("BATCH_WINDOW_MS", "20")]).expect("valid");
    assert_eq!(k.group_commit.window, Duration::from_millis(20));
    // Batching where it pays, unless told always.
    assert!(!defaults.group_commit.always);
    let c = config_with(&[("BATCH_WHEN", "always")]).expect("valid");
    assert!(c.group_commit.always);
    assert!(
        !config_with(&[("BATCH_WHEN", "pays")])
            .expect("valid")
            .group_commit
            .always
    );
    let err = config_with(&[("BATCH_WHEN", "sometimes")]).expect_err("not a choice");
    assert!(err.to_string().contains("BATCH_WHEN"), "{err}");
}
