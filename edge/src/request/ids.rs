//! The randomness and the names a request gets from the runtime: the random bytes of a UUIDv7,
//! and the request id (Cloudflare's `cf-ray`, or a UUIDv7). Event ids themselves are
//! `request::prepare`'s.

use http::HeaderMap;
use spillway_shared::uuid_v7;

use crate::http::headers::header;
use crate::ports::Runtime;

/// The random part of a UUIDv7 (ten bytes, of which the id keeps 74 bits), from the runtime.
pub fn uuid_random_bytes<R: Runtime>(rt: &R) -> [u8; 10] {
    let b = rt.random_bytes();
    let mut ten = [0u8; 10];
    ten.copy_from_slice(&b[..10]);
    ten
}

/// The request's id, for the log and `X-Request-Id`: the `cf-ray` the runtime put in the head
/// when it is usable, else a fresh UUIDv7.
pub fn request_id<R: Runtime>(headers: &HeaderMap, rt: &R, now_ms: u64) -> String {
    match header(headers, "cf-ray") {
        Some(ray) if !ray.is_empty() && ray.len() <= 64 => ray.to_owned(),
        _ => uuid_v7(now_ms, uuid_random_bytes(rt)).to_string(),
    }
}
