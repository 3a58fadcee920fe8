//! Schema migrations: the SQL files in `consumer/migrations/`, compiled into the binary and
//! applied by `spillway-consumer migrate`, never by the Lambda handler.
//!
//! Applied versions are recorded in `schema_migrations` with a checksum of their SQL, so a
//! second run does nothing and an edited, already applied migration is refused. The whole run
//! is one transaction under a transaction-level advisory lock: two migrators started at once
//! (two deploys, a developer and CI) apply each migration exactly once, and a failed migration
//! leaves nothing half-done.

use std::collections::BTreeMap;

use thiserror::Error;
use tokio_postgres::Client;

/// One migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The number the file name starts with.
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_create_events.sql",
        sql: include_str!("../migrations/0001_create_events.sql"),
    },
    Migration {
        version: 2,
        name: "0002_events_source.sql",
        sql: include_str!("../migrations/0002_events_source.sql"),
    },
    Migration {
        version: 3,
        name: "0003_events_id_per_key.sql",
        sql: include_str!("../migrations/0003_events_id_per_key.sql"),
    },
    Migration {
        version: 4,
        name: "0004_events_context.sql",
        sql: include_str!("../migrations/0004_events_context.sql"),
    },
    Migration {
        version: 5,
        name: "0005_events_event_time.sql",
        sql: include_str!("../migrations/0005_events_event_time.sql"),
    },
];

/// Key of the advisory lock (an arbitrary constant: "spillway" in ASCII).
pub const LOCK_KEY: i64 = 0x7370_696c_6c77_6179;

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error("migration {version} ({name}) was changed after it was applied; add a new migration instead")]
    Modified { version: i64, name: String },
    #[error("database error during migration: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Versions applied by this run.
    pub applied: Vec<i64>,
    /// Versions found already applied.
    pub already: Vec<i64>,
    /// Versions recorded in the database that this build does not know (a newer build ran).
    pub unknown: Vec<i64>,
}

/// FNV-1a (64 bit) of the SQL: enough to notice an edited file, no dependency needed.
pub fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Decides what to apply, given what the database has recorded (version -> checksum).
pub fn plan<'a>(
    known: &'a [Migration],
    recorded: &BTreeMap<i64, String>,
) -> Result<(Vec<&'a Migration>, Report), MigrateError> {
    let mut report = Report::default();
    let mut todo = Vec::new();
    for m in known {
        match recorded.get(&m.version) {
            Some(sum) if *sum == checksum(m.sql) => report.already.push(m.version),
            Some(_) => {
                return Err(MigrateError::Modified {
                    version: m.version,
                    name: m.name.to_owned(),
                })
            }
            None => todo.push(m),
        }
    }
    report.unknown = recorded
        .keys()
        .filter(|v| !known.iter().any(|m| m.version == **v))
        .copied()
        .collect();
    Ok((todo, report))
}

/// Applies what is missing, in one transaction under the advisory lock.
pub async fn run(client: &mut Client, migrations: &[Migration]) -> Result<Report, MigrateError> {
    // Index builds on a large table may take longer than the handler's statement timeout.
    client.batch_execute("SET statement_timeout = 0").await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    bigint      PRIMARY KEY,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let mut recorded: BTreeMap<i64, String> = BTreeMap::new();
    for r in tx
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
    {
        recorded.insert(r.try_get(0)?, r.try_get(1)?);
    }
    let (todo, mut report) = plan(migrations, &recorded)?;
    for m in todo {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        report.applied.push(m.version);
    }
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_matches_the_folder() {
        // At run time: a build from another clone may be reused (shared target directory).
        let dir = format!(
            "{}/migrations",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        );
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions are 1, 2, 3, ...");
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            let on_disk = std::fs::read_to_string(format!("{dir}/{}", m.name)).expect("read");
            assert_eq!(on_disk, m.sql);
        }
    }

    #[test]
    fn the_events_table_follows_the_contract() {
        let sql = MIGRATIONS[0].sql;
        for column in [
            "id             uuid        PRIMARY KEY",
            "type           text        NOT NULL",
            "occurred_at    timestamptz,",
            "received_at    timestamptz NOT NULL",
            "stored_at      timestamptz NOT NULL DEFAULT now()",
            "data           jsonb       NOT NULL",
            "key_id         text        NOT NULL",
        ] {
            assert!(sql.contains(column), "missing: {column}");
        }
    }

    #[test]
    fn ids_are_unique_within_their_key() {
        // The contract: two keys never share a row. The insert's conflict target must be
        // this key, or PostgreSQL refuses the insert (42P10).
        let last = MIGRATIONS
            .iter()
            .rev()
            .find(|m| m.sql.contains("PRIMARY KEY"))
            .expect("a migration sets the primary key");
        assert!(last.sql.contains("ADD PRIMARY KEY (key_id, id)"));
        assert!(crate::pg::INSERT_SQL.ends_with("ON CONFLICT (key_id, id) DO NOTHING"));
    }

    const A: Migration = Migration {
        version: 1,
        name: "0001_a.sql",
        sql: "CREATE TABLE a ();",
    };
    const B: Migration = Migration {
        version: 2,
        name: "0002_b.sql",
        sql: "CREATE TABLE b ();",
    };

    #[test]
    fn plan_applies_only_what_is_missing() {
        let known = [A, B];
        let (todo, report) = plan(&known, &BTreeMap::new()).expect("plan");
        assert_eq!(todo, [&A, &B]);
        assert!(report.already.is_empty());

        let recorded = BTreeMap::from([(1, checksum(A.sql)), (7, "x".to_owned())]);
        let (todo, report) = plan(&known, &recorded).expect("plan");
        assert_eq!(todo, [&B]);
        assert_eq!(report.already, [1]);
        assert_eq!(report.unknown, [7]);
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let recorded = BTreeMap::from([(1, checksum("CREATE TABLE a (x int);"))]);
        assert!(matches!(
            plan(&[A], &recorded),
            Err(MigrateError::Modified { version: 1, .. })
        ));
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
