//! Every way a request can fail, as one enum for the whole request path. Turning each into a
//! status and a body is `http::answer`'s, in one place.

use spillway_shared::token::TokenError;
use spillway_shared::{PackError, Problem};
use thiserror::Error;
use uuid::Uuid;

/// A request the edge refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EdgeError {
    #[error("no such path")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("no ingest key")]
    MissingKey,
    #[error("wrong ingest key")]
    InvalidKey,
    /// A browser token refused, and why.
    #[error("token refused: {0}")]
    Token(TokenError),
    /// The raw key of a key that browsers may use only through a token (`TOKEN_REQUIRED`),
    /// sent with an `Origin` header.
    #[error("this key takes a token from browsers")]
    TokenRequired,
    /// The key is limited to other origins (`KEY_ORIGINS`).
    #[error("origin not allowed for this key")]
    OriginNotAllowed,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u32 },
    #[error("body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("decompressed body over {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("corrupt gzip: {0}")]
    InvalidGzip(String),
    #[error("invalid JSON: {message}")]
    InvalidJson {
        message: String,
        index: Option<usize>,
    },
    #[error("no events")]
    NoEvents,
    #[error("invalid Idempotency-Key")]
    InvalidIdempotencyKey,
    /// A header the request path reads holds bytes no header value may hold.
    #[error("the {0} header cannot be read")]
    InvalidHeader(&'static str),
    #[error("could not read the body: {0}")]
    BodyRead(String),
    /// Validation problems, in event order (never empty).
    #[error("{} invalid event(s)", .0.len())]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Pack(PackError),
    /// The queue did not acknowledge these events (request order).
    #[error("queue unavailable")]
    QueueUnavailable {
        unacknowledged: Vec<Uuid>,
        total: usize,
        timed_out: bool,
        retry_after_secs: u32,
    },
    #[error("misconfigured")]
    Misconfigured,
    /// A request names two different keys (two head forms, head and body, or two messages).
    #[error("two different ingest keys")]
    ConflictingKeys,
    /// A collector body sent with `?compression=base64` is not base64.
    #[error("invalid base64: {0}")]
    InvalidBase64(String),
}
