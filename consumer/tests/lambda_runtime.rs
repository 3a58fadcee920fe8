//! The real Lambda runtime loop (`lambda_runtime::run` in the `spillway-consumer` binary) runs
//! the handler once, against a small Lambda Runtime API emulator of our own
//! ([`common::lambda`]) and a real PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::lambda::{response, run_function};
use common::*;
use serde_json::{json, Value};
use spillway_consumer::keys::testing::TEST_KEYS;
use spillway_support::Moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_runtime_loop_runs_the_handler_once() {
    let pg = migrated_pg().await;
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned();
    let run = run_function(
        &[("DATABASE_URL", pg.url())],
        vec![(request_id.clone(), event)],
    )
    .await;
    eprintln!(
        "cold start (spawn -> first /next): {:?}; spawn -> response: {:?}",
        run.init, run.first_answer
    );
    let out = &run.raw_log;
    let (got_id, body) = response(&run.replies[0], out);
    assert_eq!(got_id, request_id);
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "c0ffee00-1111-4222-8333-944455556666"}]})
    );
    assert_eq!(stored(&pg), 2);

    let lines = &run.lines;
    // One EMF record for the invocation, in the configured namespace.
    let emf: Vec<&Value> = lines.iter().filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 1, "{out}");
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SpillwayRuntimeTest"
    );
    assert_eq!(emf[0]["RequestId"], request_id.as_str());
    assert_eq!(emf[0]["EventsStored"], 2);
    assert_eq!(emf[0]["DuplicatesSkipped"], 1);
    assert_eq!(emf[0]["RecordsFailed"], 1);
    assert_eq!(emf[0]["BatchSize"], 3);
    assert!(emf[0]["QueueLagMs"].is_u64());
    assert!(emf[0]["EndToEndLagMs"].is_u64());
    // The rejected record is logged as JSON with the request id, message id and reason.
    let rejected = lines
        .iter()
        .find(|v| v["fields"]["message"] == "record rejected")
        .unwrap_or_else(|| panic!("no rejection logged: {out}"));
    assert_eq!(rejected["span"]["request_id"], request_id.as_str());
    assert_eq!(
        rejected["fields"]["message_id"],
        "c0ffee00-1111-4222-8333-944455556666"
    );
    assert!(rejected["fields"]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("version 3"));
    assert_eq!(rejected["level"], "WARN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_every_invocation_answers_with_all_records_failed() {
    let pg = migrated_pg().await;
    pg.stop().expect("stop PostgreSQL");
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let run = run_function(
        &[("DATABASE_URL", pg.url())],
        vec![
            ("req-1".to_owned(), event.clone()),
            ("req-2".to_owned(), event),
        ],
    )
    .await;
    for (reply, id) in run.replies.iter().zip(["req-1", "req-2"]) {
        let (got_id, body) = response(reply, &run.raw_log);
        assert_eq!(got_id, id);
        let mut failed: Vec<&str> = body["batchItemFailures"]
            .as_array()
            .expect("failures")
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str())
            .collect();
        failed.sort();
        assert_eq!(
            failed,
            [
                "5a1e0b7c-8d9e-4f00-a1b2-c3d4e5f60718",
                "7b8d7d2e-2f39-4c57-9d53-6f4b3b0a1c01",
                "c0ffee00-1111-4222-8333-944455556666"
            ]
        );
    }
    let message = |v: &&Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    // One summary line per invocation, not one line per record.
    let summaries: Vec<&Value> = run
        .lines
        .iter()
        .filter(|v| message(v) == "batch not stored, every record will be retried")
        .collect();
    assert_eq!(summaries.len(), 2, "{}", run.raw_log);
    assert_eq!(summaries[0]["fields"]["records"], 2);
    assert_eq!(summaries[1]["span"]["request_id"], "req-2");
    assert!(!run
        .lines
        .iter()
        .any(|v| message(&v) == "record not stored, will be retried"));
    let emf: Vec<&Value> = run
        .lines
        .iter()
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 2);
    assert!(emf
        .iter()
        .all(|v| v["RecordsFailed"] == 3 && v["EventsStored"] == 0));
    // Only the undecodable record is permanent.
    assert!(emf.iter().all(|v| v["RecordsRejected"] == 1));
}

#[test]
fn outside_lambda_the_function_says_what_to_run_instead() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_LAMBDA_RUNTIME_API"), "{err}");
    assert!(err.contains("spillway-poller"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .arg("migrat")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command `migrat`"));
}

const REGION: &str = "us-east-1";

/// What Lambda puts in the environment for the SDK (the execution role's keys, the region),
/// with the SDK pointed at moto.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID", "ASIATESTKEY".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_SESSION_TOKEN", "test".to_owned()),
    ]
}

/// Creates a secret in moto holding `value` as its SecretString; returns its ARN.
async fn create_secret(moto: &Moto, name: &str, value: &str) -> String {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("create the secret");
    out.arn().expect("the secret's ARN").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_is_read_from_its_secret_at_cold_start() {
    let pg = migrated_pg().await;
    let moto = Moto::start().expect("moto");
    // The test server trusts every local connection, so the password only marks the URL: it
    // must not appear anywhere in the function's output, even at the most verbose log level.
    let marker = "pw-never-logged-7f3a";
    let url = pg
        .url()
        .replace("postgres@", &format!("postgres:{marker}@"));
    assert!(url.contains(marker));
    let arn = create_secret(&moto, "spillway/database-url", &url).await;
    // The envelope keys come from a secret of their own, the same way.
    let keys_arn = create_secret(&moto, "spillway/envelope-keys", TEST_KEYS).await;

    let mut env = aws_env(&moto);
    env.push(("DATABASE_URL_SECRET_ARN", arn.clone()));
    env.push(("ENVELOPE_KEYS_SECRET_ARN", keys_arn.clone()));
    env.push(("RUST_LOG", "trace".to_owned()));
    let event = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let run = run_function(&env, vec![("req-secret".to_owned(), event)]).await;

    // It served the invocation with the database the secret names.
    let (got_id, body) = response(&run.replies[0], &run.raw_log);
    assert_eq!(got_id, "req-secret");
    assert_eq!(
        body,
        json!({"batchItemFailures": [{"itemIdentifier": "c0ffee00-1111-4222-8333-944455556666"}]})
    );
    assert_eq!(stored(&pg), 2);
    let read = run
        .lines
        .iter()
        .find(|v| v["fields"]["message"] == "database URL read from Secrets Manager")
        .unwrap_or_else(|| panic!("no log line about the secret: {}", run.raw_log));
    assert_eq!(read["fields"]["secret"], arn.as_str());
    let keys_read = run
        .lines
        .iter()
        .find(|v| v["fields"]["message"] == "envelope keys read from Secrets Manager")
        .unwrap_or_else(|| panic!("no log line about the keys' secret: {}", run.raw_log));
    assert_eq!(keys_read["fields"]["secret"], keys_arn.as_str());
    let secret_part = TEST_KEYS.split_once(':').map_or(TEST_KEYS, |(_, s)| s);
    assert!(
        !run.raw_log.contains(secret_part),
        "an envelope secret was logged:\n{}",
        run.raw_log
    );
    assert!(
        !run.raw_log.contains(marker),
        "the database URL was logged:\n{}",
        run.raw_log
    );

    // `spillway-consumer migrate` reads the same secret (the schema is already there).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .output()
        .expect("run migrate");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "migrations done")
        .unwrap_or_else(|| panic!("no `migrations done`: {log}"));
    assert_eq!(done["fields"]["applied"], "[]");
    assert!(!log.contains(marker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_conflicting_or_unreadable_database_url_stops_the_function_at_start() {
    let moto = Moto::start().expect("moto");
    let start = |env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"));
        cmd.env_remove("DATABASE_URL")
            .env_remove("DATABASE_URL_SECRET_ARN")
            // Nothing listens there: each case must stop before asking for work.
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:1")
            .envs(aws_env(&moto))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let out = cmd.output().expect("run the function");
        assert!(!out.status.success());
        (
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    };
    let arn =
        format!("arn:aws:secretsmanager:{REGION}:123456789012:secret:spillway/nothing-AbCdEf");

    let (err, _) = start(&[
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
        ),
        ("DATABASE_URL_SECRET_ARN", arn.clone()),
    ]);
    assert!(
        err.contains("DATABASE_URL and DATABASE_URL_SECRET_ARN are both set: set only one"),
        "{err}"
    );

    let (err, _) = start(&[]);
    assert!(
        err.contains("DATABASE_URL or DATABASE_URL_SECRET_ARN is required"),
        "{err}"
    );

    let (err, _) = start(&[(
        "DATABASE_URL_SECRET_ARN",
        "spillway/database-url".to_owned(),
    )]);
    assert!(err.contains("is not a Secrets Manager secret ARN"), "{err}");

    // A secret that does not exist: the error names it and what Secrets Manager said.
    let (err, took) = start(&[("DATABASE_URL_SECRET_ARN", arn.clone())]);
    assert!(
        err.contains(&format!("cannot read the secret {arn}")),
        "{err}"
    );
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: over Lambda's init limit"
    );
}
