//! Rows per second of the consumer's bulk write (`INSERT ... SELECT FROM UNNEST(...) ON
//! CONFLICT (id) DO NOTHING`, through `PgStore`) against `COPY` of the same rows into the same
//! throwaway PostgreSQL, in one run.
//!
//! ```text
//! cargo run --release -p spillway-consumer --example bench_write [-- ROWS BATCH]
//! ```
//! Defaults: 100,000 rows in batches of 1,000 (one Lambda invocation of 10 messages of 100
//! events). Three ways are timed, each on an empty table:
//! - `unnest`: what the consumer does (duplicates skipped by the primary key);
//! - `copy`: binary `COPY events FROM STDIN`, no duplicate handling (the raw ceiling);
//! - `copy+staging`: `COPY` into a temporary table, then `INSERT ... ON CONFLICT DO NOTHING`
//!   (the same semantics as `unnest`, the other shape the issue allows).
//!
//! With `BENCH_WRITE_ROWS_FROM` set to a database URL, the rows are instead the ROWS rows that
//! database's (migrated) `events` table already holds, read back and written into the same
//! table the three ways: `cargo xtask bench` times the write of the very rows its drain figure
//! (figure 10) stored, in the PostgreSQL that stored them. The table holds them again at the end.

use std::pin::pin;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::json;
use spillway_consumer::config::DbConfig;
use spillway_consumer::migrate;
use spillway_consumer::pg::PgStore;
use spillway_consumer::store::{EventStore, Row};
use spillway_shared::{EdgeInfo, Event};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::Transaction;
use uuid::Uuid;

const COLUMNS: &str =
    "id, type, occurred_at, received_at, key_id, data, edge_colo, edge_country, sqs_message_id";
const TYPES: [Type; 9] = [
    Type::UUID,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

fn events(n: usize) -> Vec<Event> {
    let base = DateTime::<Utc>::from_timestamp_millis(1_795_852_800_000).unwrap_or_default();
    (0..n)
        .map(|i| Event {
            id: Uuid::from_u128(0x0192_f0c1_7a44_7cc3_9e2b_0000_0000_0000 + i as u128),
            event_type: ["page_view", "click", "signup"][i % 3].to_owned(),
            occurred_at: (i % 2 == 0).then(|| base - chrono::Duration::milliseconds(i as i64)),
            received_at: base,
            event_time: None,
            key_id: "web".to_owned(),
            edge: Some(EdgeInfo {
                colo: Some("FRA".to_owned()),
                country: Some("DE".to_owned()),
                ..Default::default()
            }),
            source: Default::default(),
            data: json!({
                "path": format!("/docs/page-{i}"),
                "referrer": "https://example.com/",
                "viewport": [1280, 720],
                "session": format!("s-{}", i / 10),
            })
            .to_string()
            .parse()
            .unwrap_or_default(),
        })
        .collect()
}

async fn copy_rows(client: &Transaction<'_>, table: &str, batch: &[Event]) -> anyhow::Result<u64> {
    let sink = client
        .copy_in(&format!("COPY {table} ({COLUMNS}) FROM STDIN BINARY"))
        .await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &TYPES));
    for e in batch {
        let colo = e.edge.as_ref().and_then(|x| x.colo.as_deref());
        let country = e.edge.as_ref().and_then(|x| x.country.as_deref());
        let row: [&(dyn ToSql + Sync); 9] = [
            &e.id,
            &e.event_type,
            &e.occurred_at,
            &e.received_at,
            &e.key_id,
            &Json(&e.data),
            &colo,
            &country,
            &"bench",
        ];
        writer.as_mut().write(&row).await?;
    }
    Ok(writer.finish().await?)
}

/// The rows `events` holds, as the events they were stored from (the columns this example writes).
async fn stored_events(client: &tokio_postgres::Client) -> anyhow::Result<Vec<Event>> {
    let rows = client
        .query(
            "SELECT id, type, occurred_at, received_at, key_id, data::text, edge_colo, edge_country \
             FROM events ORDER BY key_id, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                id: r.try_get(0)?,
                event_type: r.try_get(1)?,
                occurred_at: r.try_get(2)?,
                received_at: r.try_get(3)?,
                event_time: None,
                key_id: r.try_get(4)?,
                edge: Some(EdgeInfo {
                    colo: r.try_get(6)?,
                    country: r.try_get(7)?,
                    ..Default::default()
                }),
                source: Default::default(),
                data: r.try_get::<_, String>(5)?.parse()?,
            })
        })
        .collect()
}

fn report(name: &str, rows: usize, started: Instant) -> f64 {
    let secs = started.elapsed().as_secs_f64();
    let rate = rows as f64 / secs;
    println!("{name:<14} {rows:>9} rows  {secs:>7.3} s  {rate:>10.0} rows/s");
    rate
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let stored_in = std::env::var("BENCH_WRITE_ROWS_FROM")
        .ok()
        .filter(|v| !v.is_empty());
    // Kept until the end: dropping it stops the throwaway server.
    let (throwaway, url) = match stored_in {
        Some(url) => (None, url),
        None => {
            let pg = spillway_support::Postgres::start().context("starting PostgreSQL")?;
            let url = pg.url();
            (Some(pg), url)
        }
    };
    let db = DbConfig::from_lookup(&|k| (k == "DATABASE_URL").then(|| url.clone()))?;
    let store = PgStore::new(&db)?;
    let mut client = store.open().await?;
    migrate::run(&mut client, migrate::MIGRATIONS).await?;
    let all = if throwaway.is_none() {
        let stored = stored_events(&client).await?;
        anyhow::ensure!(
            stored.len() == rows,
            "BENCH_WRITE_ROWS_FROM: expected {rows} stored rows, found {}",
            stored.len()
        );
        println!("rows: the {rows} stored in the database given");
        stored
    } else {
        events(rows)
    };
    println!(
        "PostgreSQL {}; {rows} rows in batches of {batch}",
        client
            .query_one("SHOW server_version", &[])
            .await?
            .get::<_, String>(0)
    );

    // Warm-up (connection, plan, catalog caches), then an empty table for each run.
    let warm: Vec<Row<'_>> = all[..batch.min(rows)]
        .iter()
        .map(|event| Row {
            event,
            record_id: "bench",
        })
        .collect();
    store.write(&warm).await?;

    client.batch_execute("TRUNCATE events").await?;
    let t = Instant::now();
    for chunk in all.chunks(batch) {
        let rows: Vec<Row<'_>> = chunk
            .iter()
            .map(|event| Row {
                event,
                record_id: "bench",
            })
            .collect();
        store.write(&rows).await?;
    }
    let unnest = report("unnest", rows, t);

    client.batch_execute("TRUNCATE events").await?;
    let t = Instant::now();
    for chunk in all.chunks(batch) {
        let tx = client.transaction().await?;
        copy_rows(&tx, "events", chunk).await?;
        tx.commit().await?;
    }
    let copy = report("copy", rows, t);

    client.batch_execute("TRUNCATE events").await?;
    let t = Instant::now();
    for chunk in all.chunks(batch) {
        let tx = client.transaction().await?;
        tx.batch_execute(
            "CREATE TEMP TABLE staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DROP",
        )
        .await?;
        copy_rows(&tx, "staging", chunk).await?;
        tx.execute(
            &format!(
                "INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM staging ON CONFLICT (key_id, id) DO NOTHING"
            ),
            &[],
        )
        .await?;
        tx.commit().await?;
    }
    let staged = report("copy+staging", rows, t);

    let n: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    anyhow::ensure!(n as usize == rows, "expected {rows} rows, found {n}");
    println!(
        "unnest is {:.0}% of copy and {:.0}% of copy+staging",
        100.0 * unnest / copy,
        100.0 * unnest / staged
    );
    Ok(())
}
