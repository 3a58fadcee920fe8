//! Event ids are unique within their ingest key (shared/CONTRACT.md: two keys never share a
//! row), against a real PostgreSQL: two keys sending the same client id are both stored, a
//! redelivery still adds nothing, and migration 0003 moves a table that already holds rows (and
//! a writer role granted as docs/deploy.md says) to the per-key primary key. A consumer and a
//! table of different releases fail retryably, never as refused data.

mod common;

use common::*;
use spillway_consumer::handler::handle;
use spillway_consumer::migrate::{self, MIGRATIONS};
use spillway_consumer::pg::{classify, PgStore};
use spillway_consumer::store::FailureKind;
use spillway_shared::Event;

/// Event `n` as sent with the key `key_id`: same id for every key, data saying which key.
fn keyed(n: u128, key_id: &str) -> Event {
    let mut e = event(n);
    e.key_id = key_id.into();
    e.data = serde_json::json!({"n": n as u64, "from": key_id})
        .to_string()
        .parse()
        .expect("json");
    e
}

/// `key_id|id|data->>'from'` of every row, in order.
fn rows(pg: &spillway_support::Postgres) -> Vec<String> {
    let out = pg
        .psql(
            "SELECT key_id || '|' || id || '|' || (data->>'from') FROM events ORDER BY key_id, id",
        )
        .expect("psql");
    out.lines().map(str::to_owned).collect()
}

const ID1: &str = "00000000-0000-0000-0000-000000000001";
const ID2: &str = "00000000-0000-0000-0000-000000000002";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_sending_the_same_id_are_two_rows_and_a_redelivery_adds_nothing() {
    let pg = migrated_pg().await;
    let d = deps(&pg.url());
    // In one batch: the bulk insert and the in-batch dedup both see the two keys' events.
    let together = sqs_event(vec![
        record("web-1", &body(&[keyed(1, "web"), keyed(2, "web")])),
        record("app-1", &body(&[keyed(1, "app")])),
    ]);
    let o = handle(&d, &together, "together").await;
    assert!(o.response.batch_item_failures.is_empty());
    assert_eq!(o.metrics.events_stored, 3);
    assert_eq!(o.metrics.duplicates_skipped, 0);
    // In a later batch: the table's key, not the batch, tells them apart.
    let later = sqs_event(vec![record("app-2", &body(&[keyed(2, "app")]))]);
    let o = handle(&d, &later, "later").await;
    assert_eq!(o.metrics.events_stored, 1);
    let expected = [
        format!("app|{ID1}|app"),
        format!("app|{ID2}|app"),
        format!("web|{ID1}|web"),
        format!("web|{ID2}|web"),
    ];
    assert_eq!(rows(&pg), expected);

    // SQS delivers everything again, and a client retries its request (a new message carrying
    // the same events): each key's event is already stored, once.
    for (n, e) in [&together, &later].into_iter().enumerate() {
        let o = handle(&d, e, &format!("again-{n}")).await;
        assert!(o.response.batch_item_failures.is_empty());
        assert_eq!(o.metrics.events_stored, 0);
    }
    let retry = sqs_event(vec![record(
        "web-retry",
        &body(&[keyed(2, "web"), keyed(1, "web")]),
    )]);
    let o = handle(&d, &retry, "retry").await;
    assert_eq!(o.metrics.events_stored, 0);
    assert_eq!(o.metrics.duplicates_skipped, 2);
    assert_eq!(rows(&pg), expected);
}

/// Applies the first `n` migrations only: a database as an older release left it.
async fn migrate_to(url: &str, n: usize) {
    let store = PgStore::new(&db_config(url, 10_000)).expect("store");
    let mut client = store.open().await.expect("connect");
    migrate::run(&mut client, &MIGRATIONS[..n])
        .await
        .expect("migrate");
}

/// The insert of the releases before migration 0003.
const OLD_INSERT: &str = "\
INSERT INTO events (id, type, received_at, key_id, data)
VALUES ($1, 't', now(), $2, '{}') ON CONFLICT (id) DO NOTHING";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_key_migration_keeps_the_rows_and_the_writer_role_of_a_running_table() {
    let pg = spillway_support::Postgres::start().expect("PostgreSQL");
    let url = pg.url();
    migrate_to(&url, 2).await;
    // The writer role of docs/deploy.md (section 1d) as it was granted before 0003.
    pg.psql(
        "CREATE ROLE spillway_writer LOGIN;
         GRANT INSERT ON events TO spillway_writer;
         GRANT SELECT (id) ON events TO spillway_writer;",
    )
    .expect("role");
    let writer_url = format!(
        "postgres://spillway_writer@127.0.0.1:{}/postgres",
        pg.port()
    );
    let d = deps(&writer_url);
    // The current consumer on the old table: refused (42P10), retryably, storing nothing.
    let first = sqs_event(vec![
        record("m1", &body(&[keyed(1, "web"), keyed(2, "web")])),
        record("m2", &body(&[keyed(3, "app")])),
    ]);
    let o = handle(&d, &first, "early").await;
    assert_eq!(failed_ids(&o), ["m1", "m2"], "{}", o.emf);
    assert_eq!(o.metrics.events_stored, 0);
    assert_eq!(stored(&pg), 0);
    // What the old release stored meanwhile.
    let admin = PgStore::new(&db_config(&url, 10_000))
        .expect("store")
        .open()
        .await
        .expect("connect");
    for (n, key) in [(1u128, "web"), (2, "web"), (3, "app")] {
        admin
            .execute(OLD_INSERT, &[&uuid::Uuid::from_u128(n), &key])
            .await
            .expect("old insert");
    }
    let before = pg
        .psql("SELECT string_agg(key_id || '|' || id || '|' || stored_at, ',' ORDER BY id) FROM events")
        .expect("psql");

    migrate_to(&url, MIGRATIONS.len()).await;

    let after = pg
        .psql("SELECT string_agg(key_id || '|' || id || '|' || stored_at, ',' ORDER BY id) FROM events")
        .expect("psql");
    assert_eq!(after, before, "every row is kept as it was");
    assert_eq!(primary_key(&pg), "key_id,id");
    // The old release's insert on the migrated table: 42P10, retried (never sent to the DLQ
    // as refused data).
    let err = admin
        .execute(OLD_INSERT, &[&uuid::Uuid::from_u128(9), &"web"])
        .await
        .expect_err("no unique constraint on id alone");
    let err = classify(&err);
    assert_eq!(err.code.as_deref(), Some("42P10"), "{err}");
    assert_eq!(err.kind, FailureKind::Transient);

    // The writer role, granted `SELECT (key_id)` by the migration, stores the other key's
    // events with the same ids; the first batch's redelivery adds nothing.
    let second = sqs_event(vec![record(
        "m3",
        &body(&[keyed(1, "app"), keyed(3, "web")]),
    )]);
    let o = handle(&d, &second, "after").await;
    assert!(o.response.batch_item_failures.is_empty(), "{}", o.emf);
    assert_eq!(o.metrics.events_stored, 2);
    let o = handle(&d, &first, "redelivered").await;
    assert!(o.response.batch_item_failures.is_empty(), "{}", o.emf);
    assert_eq!(o.metrics.events_stored, 0);
    assert_eq!(o.metrics.duplicates_skipped, 3);
    assert_eq!(stored(&pg), 5);
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM events WHERE id = '{ID1}'")
        ),
        2
    );
}
