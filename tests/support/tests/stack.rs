//! The local stack (`cargo xtask dev|up`, the end-to-end tests) keeps its secrets off command
//! lines, which every user of the machine can read, and in files only its owner can read; and
//! its status reads the right figures for the Kinesis buffer.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use spillway_support::stack::{dev_vars, write_private};
use spillway_support::{run_dir, Stack, StackConfig};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every process's command line, as `ps` shows them to anyone.
fn command_lines() -> Vec<(u32, String)> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&raw).replace('\0', " ")))
        })
        .collect()
}

#[test]
fn secrets_stay_off_command_lines_and_out_of_logs_and_unreadable_headers_are_refused() {
    if !spillway_support::worker_built(
        "secrets_stay_off_command_lines_and_out_of_logs_and_unreadable_headers_are_refused",
    ) {
        return;
    }
    let cfg = StackConfig::ephemeral("secrets").expect("ports");
    let stack = Stack::start(cfg, &mut |line| eprintln!("[secrets] {line}")).expect("starts");
    let secrets = [
        stack.env.ingest_key.as_str(),
        stack.env.aws_secret_access_key.as_str(),
    ];
    let lines = command_lines();
    // Positive control: the edge's processes are among those looked at.
    let port = format!("127.0.0.1:{}", stack.config.edge_port);
    assert!(
        lines
            .iter()
            .any(|(_, l)| l.contains("workerd") && l.contains(&port)),
        "workerd serving {port} not found"
    );
    for (pid, line) in &lines {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "pid {pid} has a secret on its command line: {line}"
            );
        }
    }
    // The edge got them from its vars file, and still accepts the key.
    let vars = stack.config.dir.join(".dev.vars");
    assert_eq!(
        mode(&vars),
        0o600,
        "{} is readable by others",
        vars.display()
    );
    let text = fs::read_to_string(&vars).expect("vars");
    assert!(secrets.iter().all(|s| text.contains(s)), "{text}");
    assert_eq!(mode(&stack.config.dir.join("dev.env")), 0o600);
    let port = stack.config.edge_port;
    let key = stack.env.ingest_key.as_str();
    let (status, body) = post_event(port, "/v1/events", &format!("Authorization: Bearer {key}"));
    assert_eq!(status, 202, "{body}");

    // Keys in the request target stay out of the logs: the edge's own line and wrangler's.
    let (status, body) = post_event(port, &format!("/v1/events&key={key}"), "X-Test: typo");
    assert_eq!(status, 404, "{body}");
    let (status, body) = post_event(port, &format!("/v1/events?key={key}"), "X-Test: beacon");
    assert_eq!(status, 202, "{body}");

    // Headers workerd passes but `http` cannot hold are refused, not ignored (the adapter).
    for header in [
        "Idempotency-Key: a\x7fb",
        "Content-Type: application/json; charset=utf-8\x01",
    ] {
        let auth = format!("Authorization: Bearer {key}\r\n{header}");
        let (status, body) = post_event(port, "/v1/events", &auth);
        assert_eq!(status, 400, "{header:?}: {body}");
        assert!(body.contains("invalid_header"), "{header:?}: {body}");
    }

    // Five requests: wait until wrangler and the edge have logged all of them.
    let log = stack.config.dir.join("logs/edge.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let edge_lines = text.matches("\"request_id\"").count();
        let wrangler_lines = text.matches("[wrangler:info] POST ").count();
        if edge_lines >= 5 && wrangler_lines >= 5 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "{edge_lines} edge and {wrangler_lines} wrangler request lines within 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !text.contains(key),
        "the ingest key is in {}:\n{text}",
        log.display()
    );
    assert!(
        text.contains("[wrangler:info] POST (unknown) 404"),
        "{text}"
    );
    let dir = stack.config.dir.clone();
    drop(stack);
    let _ = fs::remove_dir_all(dir);
}

/// One event to `target`, over a plain HTTP/1.1 connection (header bytes exactly as given).
fn post_event(port: u16, target: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let body = r#"{"type":"secrets_test"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[test]
fn private_files_are_private_from_the_start_and_replace_open_ones() {
    let dir = run_dir().join(format!("private-file-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(".dev.vars");
    fs::write(&path, "OLD=1\n").expect("old file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    write_private(&path, "NEW=2\n").expect("write");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read_to_string(&path).expect("read"), "NEW=2\n");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn dev_vars_quote_values_and_refuse_what_cannot_be_quoted() {
    let text = dev_vars(&[
        ("INGEST_KEYS", "dev:ab#cd ef".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "x/y+z=".to_owned()),
    ])
    .expect("quotable");
    assert_eq!(
        text,
        "INGEST_KEYS='dev:ab#cd ef'\nAWS_SECRET_ACCESS_KEY='x/y+z='\n"
    );
    assert!(dev_vars(&[("K", "it's".to_owned())]).is_err());
    assert!(dev_vars(&[("K", "a\nB=c".to_owned())]).is_err());
}

/// `cargo xtask status` with the Kinesis buffer, on the real services (the edge and the poller
/// are not needed to read a status): the stream's name and shards from the local Kinesis, how
/// far behind the consumer is from the poller's checkpoint file, the failed batches and dead
/// letters from the local SQS.
#[test]
fn the_kinesis_status_shows_the_stream_and_how_far_the_consumer_is_behind() {
    use spillway_support::stack::{checkpoint_file, read_status, DevEnv, KinesisEnv};
    use spillway_support::{
        BufferKind, KinesisOptions, KinesisServer, LocalSqs, Moto, Postgres, SqsKind,
    };

    let dir = run_dir().join(format!("kinesis-status-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).expect("dir");
    let pg = Postgres::start().expect("PostgreSQL");
    pg.psql("create table events (id uuid)").expect("table");
    let moto = Moto::start().expect("moto");
    let sqs = LocalSqs::new(moto.port(), "us-east-1");
    let dlq = sqs.create_queue("s-dlq", &[]).expect("dlq");
    let failures = sqs.create_queue("s-failures", &[]).expect("failures");
    sqs.send(&failures, "{\"batch\": 1}")
        .expect("a failed batch");
    let kinesis = KinesisServer::start(&KinesisOptions {
        stream: "status-stream".into(),
        shards: 3,
        persist_dir: None,
    })
    .expect("kinesis-local");
    let env = DevEnv {
        ingest_url: "http://127.0.0.1:1/v1/events".into(),
        ingest_key: "k".into(),
        database_url: pg.url(),
        sqs_endpoint: moto.endpoint(),
        sqs_queue_url: String::new(),
        sqs_dlq_url: dlq,
        sqs_server: SqsKind::Moto,
        aws_secret_access_key: "s".into(),
        envelope_keys: String::new(),
        token_secrets: String::new(),
        buffer: BufferKind::Kinesis,
        kinesis: Some(KinesisEnv {
            endpoint: kinesis.endpoint(),
            stream_arn: kinesis.stream_arn(),
            on_failure_url: failures,
        }),
    };
    let status = read_status(&env, &dir).expect("status before any checkpoint");
    let stream = status.stream.clone().expect("the stream's part");
    assert_eq!(
        (stream.name.as_str(), stream.shards, stream.millis_behind),
        ("status-stream", 3, None)
    );
    assert_eq!(stream.failed_batches, 1);
    assert_eq!((status.visible, status.in_flight, status.dlq), (0, 0, 0));

    let file = checkpoint_file(&dir);
    fs::create_dir_all(file.parent().expect("parent")).expect("dir");
    fs::write(
        &file,
        format!(
            r#"{{"stream_arn": "{}", "shards": {{
                "shardId-000000000000": {{"checkpoint": null, "millis_behind_latest": 800, "updated_at_ms": 1}},
                "shardId-000000000001": {{"checkpoint": "1", "millis_behind_latest": 2500, "updated_at_ms": 1}}}}}}"#,
            kinesis.stream_arn()
        ),
    )
    .expect("checkpoint file");
    let status = read_status(&env, &dir).expect("status");
    assert_eq!(status.stream.expect("stream").millis_behind, Some(2500));
    let _ = fs::remove_dir_all(&dir);
}
