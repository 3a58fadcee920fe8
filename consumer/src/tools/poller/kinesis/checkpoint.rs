//! The checkpoint file (`CHECKPOINT_FILE`): each shard's checkpoint and how far behind the
//! stream's tip its reader is, rewritten after every change and read back at start, so a
//! killed poller resumes after its last checkpoint.
//!
//! The rewrite is atomic (write a temporary file beside it, then rename): a reader, or a
//! poller killed mid-write, sees the old file or the new one, never half of one. There is no
//! fsync: it survives the process being killed, not the machine losing power (then the
//! checkpoint may go back and batches are delivered again; the consumer skips duplicates).
//! Shape (the contract; the stack's status line reads `millis_behind_latest`):
//! `{"stream_arn": "...", "shards": {"shardId-...": {"checkpoint": "<seq>|null",
//! "millis_behind_latest": 0, "updated_at_ms": 0}}}`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kinesis::SeqNum;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    pub checkpoint: Option<String>,
    pub millis_behind_latest: u64,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    pub stream_arn: String,
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a checkpoint file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} holds checkpoints of {found}, not of {expected}: use another CHECKPOINT_FILE")]
    OtherStream {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Reads the file at `path`; an absent file is a first start (empty checkpoints).
pub fn load(path: &Path, stream_arn: &str) -> Result<CheckpointFile, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(CheckpointFile {
                stream_arn: stream_arn.to_owned(),
                shards: BTreeMap::new(),
            })
        }
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: CheckpointFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.stream_arn != stream_arn {
        return Err(CheckpointError::OtherStream {
            path: path.to_owned(),
            found: file.stream_arn,
            expected: stream_arn.to_owned(),
        });
    }
    for (shard, c) in &file.shards {
        if let Some(s) = &c.checkpoint {
            if SeqNum::parse(s).is_none() {
                return Err(invalid(format!("{shard}: `{s}` is not a sequence number")));
            }
        }
    }
    Ok(file)
}

/// Writes `file` to `path` atomically.
pub fn save(path: &Path, file: &CheckpointFile) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The checkpoints of every shard, shared by the shard readers; written through to the file
/// when there is one.
#[derive(Debug)]
pub struct Checkpoints {
    path: Option<PathBuf>,
    state: Mutex<CheckpointFile>,
}

impl Checkpoints {
    pub fn new(path: Option<PathBuf>, initial: CheckpointFile) -> Self {
        Self {
            path,
            state: Mutex::new(initial),
        }
    }

    /// The checkpoint a shard resumes after, if it has one.
    pub fn of(&self, shard_id: &str) -> Option<SeqNum> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .shards
            .get(shard_id)
            .and_then(|c| c.checkpoint.as_deref())
            .and_then(SeqNum::parse)
    }

    pub fn snapshot(&self) -> CheckpointFile {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a shard's state and rewrites the file if anything changed. A failed write is
    /// returned for the caller to log: the next change writes again, and until then a restart
    /// only goes back further (redelivery, never loss).
    pub fn update(
        &self,
        shard_id: &str,
        checkpoint: Option<&SeqNum>,
        millis_behind_latest: Option<u64>,
        now_ms: u64,
    ) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = state.shards.entry(shard_id.to_owned()).or_default();
        // Never move a checkpoint back to "nothing" (a shard that has not finished anything
        // since the restart keeps the one it resumed from).
        let cp = checkpoint
            .map(ToString::to_string)
            .or_else(|| entry.checkpoint.clone());
        let changed = entry.checkpoint != cp
            || millis_behind_latest.is_some_and(|m| m != entry.millis_behind_latest)
            || entry.updated_at_ms == 0;
        if !changed {
            return Ok(());
        }
        entry.checkpoint = cp;
        if let Some(m) = millis_behind_latest {
            entry.millis_behind_latest = m;
        }
        entry.updated_at_ms = now_ms;
        match &self.path {
            Some(p) => save(p, &state),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_atomically_and_belongs_to_one_stream() {
        let dir = std::env::temp_dir().join(format!("spillway-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("checkpoints.json");
        let _ = std::fs::remove_file(&path);
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
        let first = load(&path, arn).expect("absent file is a first start");
        assert!(first.shards.is_empty());
        let cps = Checkpoints::new(Some(path.clone()), first);
        let seq = SeqNum::parse(&"7".repeat(56)).expect("seq");
        cps.update("shardId-000000000001", Some(&seq), Some(1_500), 42)
            .expect("write");
        cps.update("shardId-000000000002", None, Some(0), 43)
            .expect("write");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"stream_arn": arn, "shards": {
                "shardId-000000000001": {"checkpoint": "7".repeat(56), "millis_behind_latest": 1500, "updated_at_ms": 42},
                "shardId-000000000002": {"checkpoint": null, "millis_behind_latest": 0, "updated_at_ms": 43}
            }})
        );
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(&dir).expect("ls").collect();
        assert_eq!(names.len(), 1);
        // A restart reads it back; "no progress yet" never erases a checkpoint.
        let again = Checkpoints::new(Some(path.clone()), load(&path, arn).expect("load"));
        assert_eq!(again.of("shardId-000000000001"), Some(seq.clone()));
        again
            .update("shardId-000000000001", None, Some(10), 44)
            .expect("write");
        assert_eq!(again.of("shardId-000000000001"), Some(seq.clone()));
        // Nothing new: the file is not rewritten (its time stays).
        again
            .update("shardId-000000000001", None, Some(10), 45)
            .expect("write");
        assert_eq!(
            load(&path, arn).expect("load").shards["shardId-000000000001"].updated_at_ms,
            44
        );
        assert!(matches!(
            load(&path, "arn:aws:kinesis:us-east-1:000000000000:stream/other"),
            Err(CheckpointError::OtherStream { .. })
        ));
        std::fs::write(&path, r#"{"stream_arn": "x", "shards": 3}"#).expect("write");
        assert!(matches!(
            load(&path, "x"),
            Err(CheckpointError::Invalid { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
