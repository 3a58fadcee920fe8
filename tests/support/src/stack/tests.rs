//! Tests of what the stack hands the poller and the edge for each buffer.

use super::*;

fn env(buffer: BufferKind) -> DevEnv {
    DevEnv {
        ingest_url: "http://127.0.0.1:8787/v1/events".into(),
        ingest_key: "k".into(),
        database_url: "postgres://u@127.0.0.1:54329/spillway".into(),
        sqs_endpoint: "http://127.0.0.1:9324".into(),
        sqs_queue_url: match buffer {
            BufferKind::Sqs => "http://127.0.0.1:9324/123456789012/spillway-events".into(),
            BufferKind::Kinesis => String::new(),
        },
        sqs_dlq_url: "http://127.0.0.1:9324/123456789012/spillway-events-dlq".into(),
        sqs_server: SqsKind::Moto,
        aws_secret_access_key: "s".into(),
        envelope_keys: "local-1:e".into(),
        token_secrets: "web:t".into(),
        buffer,
        kinesis: (buffer == BufferKind::Kinesis).then(|| KinesisEnv {
            endpoint: "http://127.0.0.1:40123".into(),
            stream_arn: "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events".into(),
            on_failure_url: "http://127.0.0.1:9324/123456789012/spillway-events-failures".into(),
        }),
    }
}

fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(name, _)| name == k)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_sqs_poller_gets_the_queue_as_before() {
    let vars = poller_buffer_env(&env(BufferKind::Sqs), Path::new("/x")).expect("env");
    assert_eq!(get(&vars, "BUFFER"), Some("sqs"));
    assert_eq!(
        get(&vars, "SQS_QUEUE_URL"),
        Some("http://127.0.0.1:9324/123456789012/spillway-events")
    );
    assert_eq!(get(&vars, "SQS_ENDPOINT"), Some("http://127.0.0.1:9324"));
    assert!(
        vars.iter().all(|(k, _)| !k.starts_with("KINESIS")),
        "{vars:?}"
    );
    assert_eq!(get(&vars, "CHECKPOINT_FILE"), None);
}

#[test]
fn the_kinesis_poller_gets_the_stream_the_mapping_settings_and_where_failures_go() {
    let vars = poller_buffer_env(&env(BufferKind::Kinesis), Path::new("/state")).expect("env");
    for (k, v) in [
        ("BUFFER", "kinesis"),
        (
            "KINESIS_STREAM_ARN",
            "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events",
        ),
        ("KINESIS_ENDPOINT", "http://127.0.0.1:40123"),
        // The deployed template's settings.
        ("BATCH_SIZE", "100"),
        ("PARALLELIZATION_FACTOR", "1"),
        ("BISECT_BATCH_ON_FUNCTION_ERROR", "true"),
        ("MAXIMUM_RETRY_ATTEMPTS", "-1"),
        ("MAXIMUM_RECORD_AGE_IN_SECONDS", "-1"),
        ("STARTING_POSITION", "TRIM_HORIZON"),
        (
            "ON_FAILURE_DESTINATION",
            "http://127.0.0.1:9324/123456789012/spillway-events-failures",
        ),
        (
            "DEAD_LETTER_QUEUE_URL",
            "http://127.0.0.1:9324/123456789012/spillway-events-dlq",
        ),
        ("CHECKPOINT_FILE", "/state/kinesis/checkpoint.json"),
        ("SQS_ENDPOINT", "http://127.0.0.1:9324"),
    ] {
        assert_eq!(get(&vars, k), Some(v), "{k} in {vars:?}");
    }
    assert_eq!(get(&vars, "SQS_QUEUE_URL"), None, "no main queue");
    let mut no_stream = env(BufferKind::Kinesis);
    no_stream.kinesis = None;
    assert!(poller_buffer_env(&no_stream, Path::new("/state")).is_err());
}

#[test]
fn the_edge_sends_to_the_endpoint_it_is_given() {
    let vars = edge_buffer_vars(&env(BufferKind::Sqs), "http://127.0.0.1:1".into()).expect("sqs");
    assert_eq!(
        vars,
        [
            (
                "SQS_QUEUE_URL".to_owned(),
                "http://127.0.0.1:9324/123456789012/spillway-events".to_owned()
            ),
            ("SQS_ENDPOINT".to_owned(), "http://127.0.0.1:1".to_owned()),
        ]
    );
    let vars =
        edge_buffer_vars(&env(BufferKind::Kinesis), "http://127.0.0.1:2".into()).expect("kinesis");
    assert_eq!(
        vars,
        [
            ("BUFFER".to_owned(), "kinesis".to_owned()),
            (
                "KINESIS_STREAM_ARN".to_owned(),
                "arn:aws:kinesis:us-east-1:000000000000:stream/spillway-events".to_owned()
            ),
            (
                "KINESIS_ENDPOINT".to_owned(),
                "http://127.0.0.1:2".to_owned()
            ),
        ]
    );
}

#[test]
fn a_worker_build_for_the_other_buffer_is_refused_by_name() {
    let root = crate::run_dir().join(crate::unique("build-check"));
    for buffer in [BufferKind::Sqs, BufferKind::Kinesis] {
        fs::create_dir_all(built_wasm(&root, buffer).parent().expect("parent")).expect("dir");
    }
    assert_eq!(
        built_wasm(&root, BufferKind::Sqs),
        root.join("edge/build/index_bg.wasm")
    );
    assert_eq!(
        built_wasm(&root, BufferKind::Kinesis),
        root.join("target/worker-kinesis/build/index_bg.wasm")
    );
    let err = check_worker_build(&root, BufferKind::Sqs).expect_err("no build");
    assert!(format!("{err:#}").contains("index_bg.wasm"), "{err:#}");
    // A Kinesis build where the SQS one belongs (`wrangler dev --env kinesis` run by hand).
    let kinesis_wasm = b"\0asm Kinesis_20131202.PutRecords";
    fs::write(built_wasm(&root, BufferKind::Sqs), kinesis_wasm).expect("wasm");
    let err = check_worker_build(&root, BufferKind::Sqs).expect_err("not the sqs build");
    let msg = format!("{err:#}");
    assert!(msg.contains("is not the sqs build"), "{msg}");
    assert!(msg.contains("it carries: kinesis"), "{msg}");
    assert!(msg.contains("--buffer sqs"), "{msg}");
    let sqs_wasm = b"\0asm AmazonSQS.SendMessageBatch";
    fs::write(built_wasm(&root, BufferKind::Sqs), sqs_wasm).expect("wasm");
    check_worker_build(&root, BufferKind::Sqs).expect("the SQS build serves SQS");
    assert!(
        check_worker_build(&root, BufferKind::Kinesis).is_err(),
        "none yet"
    );
    fs::write(built_wasm(&root, BufferKind::Kinesis), kinesis_wasm).expect("wasm");
    check_worker_build(&root, BufferKind::Kinesis).expect("the Kinesis build serves Kinesis");
    fs::remove_dir_all(&root).ok();
}
