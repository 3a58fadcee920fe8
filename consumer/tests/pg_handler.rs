//! The handler against a real PostgreSQL: documented and recorded SQS events, exactly-once
//! delivery cases, data the database refuses, the database down or restarted, timeouts, TLS,
//! and migrations.

mod common;

use aws_lambda_events::event::sqs::SqsEvent;
use common::*;
use spillway_consumer::handler::handle;
use spillway_consumer::store::{EventStore, FailureKind, Row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_documented_event_reports_both_records_and_stores_nothing() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let raw = std::fs::read_to_string(fixture("aws_documented.json")).expect("fixture");
    let event: SqsEvent = serde_json::from_str(&raw).expect("the documented shape parses");
    let o = handle(&d, &event, "doc").await;
    // "Test message." is not a Spillway envelope: both records fail on their own.
    assert_eq!(
        failed_ids(&o),
        [
            "059f36b4-87a3-44ab-83d2-661975830a7d",
            "2e1424d4-f796-459a-8184-9c92662be6da"
        ]
    );
    assert_eq!(o.metrics.records_failed, 2);
    assert_eq!(o.metrics.records_rejected, 2);
    assert_eq!(o.metrics.batch_size, 2);
    assert_eq!(stored(&pg), 0);
    // SentTimestamp is from 2018: the lag is years.
    assert!(o.metrics.queue_lag_ms.unwrap_or(0) > 200 * 24 * 3_600_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_event_stores_rows_as_the_contract_says() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let raw = std::fs::read_to_string(fixture("spillway_mixed.json")).expect("fixture");
    let event: SqsEvent = serde_json::from_str(&raw).expect("parse");
    let o = handle(&d, &event, "rec").await;
    // The version-2 envelope is refused; the third message repeats an event of the first.
    assert_eq!(failed_ids(&o), ["c0ffee00-1111-4222-8333-944455556666"]);
    assert_eq!(o.metrics.events_stored, 2);
    assert_eq!(o.metrics.duplicates_skipped, 1);
    assert_eq!(stored(&pg), 2);
    let row = pg
        .psql(
            "SELECT type, occurred_at AT TIME ZONE 'UTC', received_at AT TIME ZONE 'UTC', key_id,
                    data::text, edge_colo, edge_country, sqs_message_id, stored_at IS NOT NULL
             FROM events WHERE id = '0192f0c1-7a44-7cc3-9e2b-6d1c4b6f2a10'",
        )
        .expect("psql");
    assert_eq!(
        row,
        "page_view|2026-11-28 07:59:58.25|2026-11-28 08:00:00.123|web|\
         {\"ref\": null, \"path\": \"/pricing\", \"size\": [1280, 720]}|FRA|DE|\
         7b8d7d2e-2f39-4c57-9d53-6f4b3b0a1c01|t"
    );
    // No client timestamp: NULL; no edge info: NULL; the odd character survives.
    let row = pg
        .psql(
            "SELECT type = E'signup \\uFFFE odd', occurred_at IS NULL, edge_colo IS NULL, data::text
             FROM events WHERE id = '3a59cd1f-d5a5-5bf5-bb62-d239ef258e96'",
        )
        .expect("psql");
    assert_eq!(row, "t|t|t|{}");
    // An envelope from before the edge context had more than colo and country: those two
    // are its context; no edge info at all is NULL.
    assert_eq!(
        pg.psql("SELECT coalesce(context::text, 'NULL') FROM events ORDER BY id")
            .expect("psql"),
        "{\"colo\": \"FRA\", \"country\": \"DE\"}\nNULL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_context_has_a_column_of_its_own() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let mut e = event(1);
    e.edge = Some(spillway_shared::EdgeInfo {
        colo: Some("DFW".into()),
        country: Some("US".into()),
        city: Some("Austin".into()),
        latitude: Some(30.2713),
        asn: Some(395_747),
        ip: Some("127.45.67.0".into()),
        ..Default::default()
    });
    let o = handle(&d, &sqs_event(vec![record("m1", &body(&[e]))]), "ctx").await;
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(
        pg.psql(
            "SELECT edge_colo, edge_country, context->>'city', jsonb_typeof(context->'latitude'),
                    context->'asn', context->>'ip', data ? 'city' FROM events"
        )
        .expect("psql"),
        "DFW|US|Austin|number|395747|127.45.67.0|f"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_recorded_from_the_local_sqs_is_handled() {
    // Built by the poller from messages received from moto (see poller_moto.rs).
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let raw = std::fs::read_to_string(fixture("moto_recorded.json")).expect("fixture");
    let event: SqsEvent = serde_json::from_str(&raw).expect("parse");
    let o = handle(&d, &event, "moto").await;
    assert_eq!(failed_ids(&o), ["ec4859f3-029c-4245-a129-b618469afe59"]);
    assert_eq!(o.metrics.events_stored, 2);
    assert_eq!(
        pg.psql("SELECT string_agg(sqs_message_id, ',') FROM events")
            .expect("psql"),
        "74eaa432-e782-42e0-a484-4105b387c5f3,74eaa432-e782-42e0-a484-4105b387c5f3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_twice_stores_each_event_once() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let e = sqs_event(vec![
        record("m1", &body(&[event(1), event(2), event(3)])),
        record("m2", &body(&[event(4)])),
    ]);
    let first = handle(&d, &e, "1").await;
    assert!(first.response.batch_item_failures.is_empty());
    assert_eq!(first.metrics.events_stored, 4);
    let second = handle(&d, &e, "2").await;
    assert!(second.response.batch_item_failures.is_empty());
    assert_eq!(second.metrics.events_stored, 0);
    assert_eq!(second.metrics.duplicates_skipped, 4);
    assert_eq!(stored(&pg), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_column_says_which_protocol_an_event_came_by() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let mut segment = event(1);
    segment.source = spillway_shared::Source::Segment;
    let mut posthog = event(2);
    posthog.source = spillway_shared::Source::Posthog;
    let e = sqs_event(vec![record("m1", &body(&[segment, posthog, event(3)]))]);
    let o = handle(&d, &e, "src").await;
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(
        pg.psql("SELECT string_agg(source, ',' ORDER BY id) FROM events")
            .expect("psql"),
        "segment,posthog,spillway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_store_each_event_once() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let a = sqs_event(vec![
        record("a1", &body(&[event(1), event(2)])),
        record("a2", &body(&[event(3), event(4)])),
    ]);
    // Redelivery of a2 with a new message id, next to new events, one repeated inside.
    let b = sqs_event(vec![
        record("b1", &body(&[event(3), event(4)])),
        record("b2", &body(&[event(5), event(6), event(5)])),
    ]);
    let oa = handle(&d, &a, "a").await;
    let ob = handle(&d, &b, "b").await;
    assert!(oa.response.batch_item_failures.is_empty());
    assert!(ob.response.batch_item_failures.is_empty());
    assert_eq!(oa.metrics.events_stored, 4);
    assert_eq!(ob.metrics.events_stored, 2);
    assert_eq!(ob.metrics.duplicates_skipped, 3);
    assert_eq!(stored(&pg), 6);
    assert_eq!(count(&pg, "SELECT count(DISTINCT id) FROM events"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_batches_store_each_event_once() {
    // Two execution environments (two connections) write the same events at the same time.
    let pg = migrated_pg().await;
    let d1 = deps(&pg.url());
    let d2 = deps(&pg.url());
    let events: Vec<_> = (1..=200).map(event).collect();
    let e1 = sqs_event(vec![record("x", &body(&events[..150]))]);
    let e2 = sqs_event(vec![record("y", &body(&events[50..]))]);
    let (o1, o2) = tokio::join!(handle(&d1, &e1, "x"), handle(&d2, &e2, "y"));
    assert!(o1.response.batch_item_failures.is_empty());
    assert!(o2.response.batch_item_failures.is_empty());
    assert_eq!(o1.metrics.events_stored + o2.metrics.events_stored, 200);
    assert_eq!(
        o1.metrics.duplicates_skipped + o2.metrics.duplicates_skipped,
        100
    );
    assert_eq!(stored(&pg), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_duplicate_and_poison_records_are_each_handled_on_their_own() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    handle(&d, &sqs_event(vec![record("old", &body(&[event(9)]))]), "0").await;
    let e = sqs_event(vec![
        record("good", &body(&[event(1), event(2)])),
        record("dup", &body(&[event(9)])),
        record("not-json", "{{{"),
        record("v7", r#"{"v":7,"events":[]}"#),
        record("nul", &body(&[event(3), nul_event(4)])),
        record("good2", &body(&[event(5)])),
    ]);
    let o = handle(&d, &e, "mix").await;
    // Exactly the poison is reported: two undecodable bodies and the message PostgreSQL
    // refuses (a NUL in jsonb), found by the message-by-message fallback.
    assert_eq!(failed_ids(&o), ["not-json", "nul", "v7"]);
    assert_eq!(o.metrics.records_failed, 3);
    assert_eq!(o.metrics.records_rejected, 3);
    assert_eq!(o.metrics.events_stored, 3);
    assert_eq!(o.metrics.duplicates_skipped, 1);
    assert_eq!(stored(&pg), 4);
    // The refused message is all or nothing: its good event 3 is not stored alone.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE id IN ('00000000-0000-0000-0000-000000000003',
                                                  '00000000-0000-0000-0000-000000000004')"
        ),
        0
    );
    // Delivered again, only the poison is reported again and nothing is stored twice.
    let again = handle(&d, &e, "mix2").await;
    assert_eq!(failed_ids(&again), ["not-json", "nul", "v7"]);
    assert_eq!(again.metrics.events_stored, 0);
    assert_eq!(stored(&pg), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_then_back() {
    let pg = migrated_pg().await;
    pg.stop().expect("stop");
    let d = deps(&pg.url());
    let e = sqs_event(vec![
        record("a", &body(&[event(1), event(2)])),
        record("b", &body(&[event(3)])),
        record("bad", "nope"),
    ]);
    let o = handle(&d, &e, "down").await;
    assert_eq!(failed_ids(&o), ["a", "b", "bad"]);
    // The two good records are retryable; only the bad body is permanent.
    assert_eq!(o.metrics.records_rejected, 1);
    assert!(!d.store.is_connected().await);

    pg.start_again().expect("start");
    let o = handle(&d, &e, "up").await;
    assert_eq!(failed_ids(&o), ["bad"]);
    assert_eq!(o.metrics.events_stored, 3);
    assert_eq!(stored(&pg), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_run_loses_nothing_and_stores_nothing_twice() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    // 12 "SQS messages" of 5 events; failed ones are delivered again, as SQS would.
    let mut pending: Vec<(String, String)> = (0..12u128)
        .map(|m| {
            let events: Vec<_> = (m * 5 + 1..=m * 5 + 5).map(event).collect();
            (format!("m{m}"), body(&events))
        })
        .collect();
    let mut round = 0;
    let mut saw_failure = false;
    let mut reconnects_checked = false;
    while !pending.is_empty() {
        round += 1;
        assert!(round < 40, "not drained after 40 rounds: {pending:?}");
        // Three messages per invocation.
        let take = pending.len().min(3);
        let batch: Vec<_> = pending.drain(..take).collect();
        let e = sqs_event(batch.iter().map(|(id, b)| record(id, b)).collect());
        if round == 2 {
            pg.stop().expect("stop");
        }
        if round == 5 {
            pg.start_again().expect("start again");
        }
        let o = handle(&d, &e, &format!("r{round}")).await;
        let failed = failed_ids(&o);
        if !failed.is_empty() {
            saw_failure = true;
            assert_eq!(
                o.metrics.records_rejected, 0,
                "a restart is not the data's fault"
            );
        }
        if round >= 5 && failed.is_empty() && !reconnects_checked {
            assert!(d.store.is_connected().await, "a new connection was opened");
            reconnects_checked = true;
        }
        pending.extend(batch.into_iter().filter(|(id, _)| failed.contains(id)));
    }
    assert!(saw_failure, "the restart was noticed");
    assert!(reconnects_checked);
    assert_eq!(stored(&pg), 60);
    assert_eq!(count(&pg, "SELECT count(DISTINCT id) FROM events"), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_fails_the_batch_for_a_retry() {
    let pg = migrated_pg().await;
    let d = deps_with_timeout(&pg.url(), 300);
    // Someone holds a lock on the table for longer than the statement timeout.
    let locker = deps(&pg.url());
    let mut client = locker.store.open().await.expect("connect");
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    let e = sqs_event(vec![record("a", &body(&[event(1)]))]);
    let o = handle(&d, &e, "t").await;
    assert_eq!(failed_ids(&o), ["a"]);
    assert_eq!(o.metrics.records_rejected, 0, "a timeout is retryable");
    assert!(o.metrics.db_write_ms >= 250, "waited for the timeout");
    tx.rollback().await.expect("rollback");
    // The same store writes once the lock is gone.
    let o = handle(&d, &e, "t2").await;
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(stored(&pg), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_never_falls_back_to_plain_text() {
    // The throwaway cluster has no TLS: a store told to require it must refuse to write.
    let pg = migrated_pg().await;
    let url = format!("{}?sslmode=require", pg.url());
    let d = deps(&url);
    let e = event(1);
    let err = d
        .store
        .write(&[Row {
            event: &e,
            record_id: "m",
        }])
        .await
        .expect_err("no TLS, no write");
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert_eq!(stored(&pg), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_run_concurrently() {
    let pg = spillway_support::Postgres::start().expect("pg");
    let url = pg.url();
    let (a, b) = tokio::join!(migrate_url(&url), migrate_url(&url));
    // One run applied every version, the other waited for the lock and found them applied.
    // Every migration this build knows (1, 2, 3, ... as `list_matches_the_folder` holds).
    let all: Vec<i64> = spillway_consumer::migrate::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .collect();
    let mut applied = [a.applied.clone(), b.applied.clone()].concat();
    applied.sort();
    assert_eq!(applied, all);
    let again = migrate_url(&url).await;
    assert!(again.applied.is_empty());
    assert_eq!(again.already, all);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM schema_migrations"),
        all.len() as u64
    );
    // The table has the columns of the contract, with its types and nullability.
    let columns = pg
        .psql(
            "SELECT string_agg(column_name || ':' || data_type || ':' || is_nullable, ',' ORDER BY column_name)
             FROM information_schema.columns WHERE table_name = 'events'
               AND column_name IN ('id','type','occurred_at','received_at','stored_at','data','key_id')",
        )
        .expect("psql");
    assert_eq!(
        columns,
        "data:jsonb:NO,id:uuid:NO,key_id:text:NO,occurred_at:timestamp with time zone:YES,\
         received_at:timestamp with time zone:NO,stored_at:timestamp with time zone:NO,type:text:NO"
    );
    // The edge's context (0004): nullable, since rows stored before it have none.
    assert_eq!(
        pg.psql(
            "SELECT data_type || ':' || is_nullable FROM information_schema.columns
             WHERE table_name = 'events' AND column_name = 'context'"
        )
        .expect("psql"),
        "jsonb:YES"
    );
    assert_eq!(
        primary_key(&pg),
        // An id is unique within its key (pg_keys.rs).
        "key_id,id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_command_works_twice() {
    let pg = spillway_support::Postgres::start().expect("pg");
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
            .arg("migrate")
            .env("DATABASE_URL", pg.url())
            .env("RUST_LOG", "info")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(log.contains("migrations done"), "{log}");
    }
    assert_eq!(
        count(&pg, "SELECT count(*) FROM schema_migrations"),
        spillway_consumer::migrate::MIGRATIONS.len() as u64
    );
    assert_eq!(stored(&pg), 0);
    // A bad configuration fails loudly before doing anything.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spillway-consumer"))
        .arg("migrate")
        .env("DATABASE_URL", pg.url())
        .env("DB_STATEMENT_TIMEOUT_MS", "soon")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DB_STATEMENT_TIMEOUT_MS"));
}

/// A TCP proxy to PostgreSQL that can make its open connections stale: a stale connection is
/// cut only when the client next sends something, as a connection that died silently while a
/// Lambda environment was frozen is found dead only when used.
struct StaleProxy {
    port: u16,
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StaleProxy {
    async fn start(upstream: u16) -> StaleProxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let epoch = Arc::new(AtomicU64::new(0));
        let shared = epoch.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = shared.load(Ordering::SeqCst);
                let epoch = shared.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if epoch.load(Ordering::SeqCst) != born {
                                return; // stale: drop both directions
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        StaleProxy { port, epoch }
    }

    fn make_stale(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_died_unnoticed_is_replaced_without_failing_records() {
    let pg = migrated_pg().await;
    let proxy = StaleProxy::start(pg.port()).await;
    let d = deps(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        proxy.port
    ));
    let first = handle(&d, &sqs_event(vec![record("a", &body(&[event(1)]))]), "1").await;
    assert!(first.response.batch_item_failures.is_empty());
    proxy.make_stale();
    // The kept connection looks fine until it is used.
    assert!(d.store.is_connected().await);
    let second = handle(&d, &sqs_event(vec![record("b", &body(&[event(2)]))]), "2").await;
    assert!(
        second.response.batch_item_failures.is_empty(),
        "a dead kept connection must not fail the batch"
    );
    assert_eq!(second.metrics.events_stored, 1);
    assert_eq!(stored(&pg), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_between_invocations_is_replaced_without_failing_records() {
    let pg = migrated_pg().await;
    // The store's sessions carry their own name, so they are found exactly: other backends
    // (the migration's, whose backend may still be exiting) never count.
    let app = "spillway-killed-between";
    let d = deps(&with_application_name(&pg.url(), app));
    let backends = || -> Vec<String> {
        pg.psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name = '{app}' ORDER BY pid"
        ))
        .expect("psql")
        .lines()
        .map(str::to_owned)
        .collect()
    };
    let first = handle(&d, &sqs_event(vec![record("a", &body(&[event(1)]))]), "1").await;
    assert!(first.response.batch_item_failures.is_empty());
    assert!(d.store.is_connected().await);
    let kept = backends();
    assert_eq!(kept.len(), 1, "the store keeps one session: {kept:?}");
    // As an idle timeout or a failover would: the server ends our session between two
    // invocations.
    assert_eq!(
        pg.psql(&format!("SELECT pg_terminate_backend({})", kept[0]))
            .expect("psql"),
        "t"
    );
    // pg_terminate_backend only signals: wait until the session is really gone.
    assert!(
        eventually(std::time::Duration::from_secs(20), || backends().is_empty()).await,
        "the killed session is still there: {:?}",
        backends()
    );
    let second = handle(&d, &sqs_event(vec![record("b", &body(&[event(2)]))]), "2").await;
    assert!(second.response.batch_item_failures.is_empty());
    assert_eq!(second.metrics.events_stored, 1);
    assert!(d.store.is_connected().await);
    let now = backends();
    assert!(
        now.len() == 1 && now[0] != kept[0],
        "a new session replaced {kept:?}: {now:?}"
    );
    assert_eq!(stored(&pg), 2);
}

/// Runs a command, failing the test with its output if it fails.
fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_uses_verified_tls() {
    use std::process::Command;
    let pg = migrated_pg().await;
    // A private CA and a server certificate for 127.0.0.1, made with openssl (PostgreSQL's
    // Debian package depends on it through ssl-cert).
    // In the cluster's directory: the server must read these, and it runs as another user
    // (`postgres`, when we are root) that may not enter the clone.
    let dir = pg.dir().join("tls");
    std::fs::create_dir_all(&dir).expect("dir");
    let p = |f: &str| dir.join(f).display().to_string();
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=spillway test CA",
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]));
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("server.crt"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]));
    // PostgreSQL insists on owning its key, unreadable by others.
    run(Command::new("chmod").args(["600", &p("server.key")]));
    let _ = Command::new("chown")
        .args(["postgres:postgres", &p("server.key"), &p("server.crt")])
        .status();
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", p("server.crt")),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", p("server.key")),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        pg.psql(&sql).expect("configure TLS");
    }
    assert!(
        eventually(std::time::Duration::from_secs(10), || pg
            .psql("SHOW ssl")
            .is_ok_and(|s| s == "on"))
        .await
    );

    // Its own application_name: only this test's TLS session is looked at below (the
    // migration's plain-text one may still be exiting).
    let app = "spillway-tls-test";
    let url = with_application_name(&format!("{}?sslmode=require", pg.url()), app);
    let e = event(1);
    let rows = [Row {
        event: &e,
        record_id: "m",
    }];

    // Mozilla's roots alone do not trust the private CA: no write, no plain-text fallback.
    let untrusted = deps(&url);
    let err = untrusted.store.write(&rows).await.expect_err("untrusted");
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.to_lowercase().contains("certificate"), "{err}");

    // With the CA bundle the write goes through, over TLS.
    let db = spillway_consumer::config::DbConfig::from_lookup(&|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DB_CA_CERT_PATH" => Some(p("ca.pem")),
        _ => None,
    })
    .expect("config");
    let store = spillway_consumer::pg::PgStore::new(&db).expect("store");
    let counts = store.write(&rows).await.expect("TLS write");
    assert_eq!(counts.inserted, 1);
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) || '|' || bool_and(s.ssl) FROM pg_stat_ssl s
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
        ))
        .expect("psql"),
        "1|true",
        "one session, over TLS"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_copes_with_an_event_repeated_inside_one_message() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    let e = sqs_event(vec![
        record("repeats", &body(&[event(1), event(2), event(1)])),
        record("nul", &body(&[nul_event(3)])),
        record("also", &body(&[event(2), event(4)])),
    ]);
    let o = handle(&d, &e, "fallback").await;
    assert_eq!(failed_ids(&o), ["nul"]);
    assert_eq!(o.metrics.events_stored, 3);
    assert_eq!(o.metrics.duplicates_skipped, 2);
    assert_eq!(stored(&pg), 3);
}
