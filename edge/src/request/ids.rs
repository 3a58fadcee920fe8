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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::FakeRuntime;

    #[test]
    fn the_request_id_is_cf_ray_when_usable_else_a_uuid_v7() {
        let rt = FakeRuntime::new();
        let mut h = HeaderMap::new();
        h.insert(
            "cf-ray",
            http::HeaderValue::from_static("8f1e2d3c4b5a6978-FRA"),
        );
        assert_eq!(request_id(&h, &rt, 1), "8f1e2d3c4b5a6978-FRA");
        for ray in ["", &"r".repeat(65)] {
            h.insert("cf-ray", http::HeaderValue::from_str(ray).expect("header"));
            let id = request_id(&h, &rt, 1_795_852_800_000);
            let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
        }
        // Two requests without a ray get two ids.
        assert_ne!(
            request_id(&HeaderMap::new(), &rt, 1),
            request_id(&HeaderMap::new(), &rt, 1)
        );
    }
}
