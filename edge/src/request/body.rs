//! Reading a request's body: within the body cap, and exactly as long as its head declared.
//! It does not decode the body (`protocol`).

use crate::error::EdgeError;
use crate::ports::{read_capped, BodyError, BodySource};

/// Reads the body within `cap`; a body that is not as long as its head declared is refused
/// (a truncated or padded body must not be half-read into events).
pub async fn read_body<B: BodySource>(
    body: B,
    declared_len: Option<u64>,
    cap: usize,
) -> Result<Vec<u8>, EdgeError> {
    let raw = read_capped(body, cap).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => EdgeError::BodyTooLarge { limit },
        BodyError::Read(why) => EdgeError::BodyRead(why),
    })?;
    if let Some(len) = declared_len.filter(|&len| len != raw.len() as u64) {
        return Err(EdgeError::BodyRead(format!(
            "the body has {} bytes but Content-Length says {len}",
            raw.len()
        )));
    }
    Ok(raw)
}
