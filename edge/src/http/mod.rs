//! HTTP over the protocols: where a request goes ([`route`]), CORS ([`cors`]), ingest keys
//! ([`auth`]), reading headers ([`headers`]) and the answer ([`answer`]: every status, header
//! and body the edge sends, errors mapped in one place).
//!
//! Pure: headers and paths in, decisions out. It does not read bodies (`request`), nor
//! rate-limit or send (`handler`, `deliver`).

pub mod answer;
pub mod auth;
pub mod cors;
pub mod headers;
pub mod route;
