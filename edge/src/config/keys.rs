//! The two types that hold a key: [`Secret`], whose `Debug` prints nothing of the value, and
//! an [`IngestKey`] of `INGEST_KEYS`. Parsing the settings is `config`'s; comparing keys is
//! `http::auth`'s.

use std::fmt;

/// A secret string. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the places that need it (key comparison, request signing, token
    /// checks).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One entry of `INGEST_KEYS`: the public `key_id` stored with every event, and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestKey {
    pub key_id: String,
    pub key: Secret,
}
