//! What the edge speaks: its own API (`/v1/events`), Segment's tracking API and PostHog's
//! capture API, as one [`Protocol`]; the table of paths that take events; and how each
//! protocol's body becomes the raw text of its events or messages.
//!
//! The bottom of the request path: bytes and strings in, events' text or an [`EdgeError`] out.
//! It does not know HTTP headers as such (`http`), keys (`http::auth`), the request as a whole
//! (`request`) nor where the events go (`deliver`).

pub mod collector;
pub mod events;
pub mod gzip;

use spillway_shared::collector::segment;
use spillway_shared::Source;

use crate::error::EdgeError;

/// A protocol the edge takes events in, as its route says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Spillway's own API: `POST /v1/events`.
    Events,
    /// A collector protocol (Segment, PostHog), so their SDKs deliver to Spillway unchanged.
    Collector(Collector),
}

/// A collector protocol and, for Segment, which call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    Segment(segment::Call),
    Posthog,
}

impl Collector {
    pub fn source(self) -> Source {
        match self {
            Collector::Segment(_) => Source::Segment,
            Collector::Posthog => Source::Posthog,
        }
    }
}

/// Every path that takes events, and its protocol. The path strings are also what the log
/// names (a static string, never what the client typed).
const ROUTES: &[(&str, Protocol)] = {
    use segment::{Call::*, MessageType::*};
    use Collector::{Posthog as P, Segment as S};
    use Protocol::Collector as C;
    &[
        ("/v1/events", Protocol::Events),
        ("/v1/batch", C(S(Batch))),
        ("/v1/b", C(S(Batch))),
        ("/v1/import", C(S(Import))),
        ("/v1/track", C(S(Single(Track)))),
        ("/v1/t", C(S(Single(Track)))),
        ("/v1/identify", C(S(Single(Identify)))),
        ("/v1/i", C(S(Single(Identify)))),
        ("/v1/page", C(S(Single(Page)))),
        ("/v1/p", C(S(Single(Page)))),
        ("/v1/screen", C(S(Single(Screen)))),
        ("/v1/s", C(S(Single(Screen)))),
        ("/v1/group", C(S(Single(Group)))),
        ("/v1/g", C(S(Single(Group)))),
        ("/v1/alias", C(S(Single(Alias)))),
        ("/v1/a", C(S(Single(Alias)))),
        ("/batch", C(P)),
        ("/batch/", C(P)),
        ("/capture", C(P)),
        ("/capture/", C(P)),
        ("/e", C(P)),
        ("/e/", C(P)),
        ("/i/v0/e", C(P)),
        ("/i/v0/e/", C(P)),
    ]
};

/// The protocol a path belongs to, and the path as a static string (for the log).
pub fn protocol_route(path: &str) -> Option<(Protocol, &'static str)> {
    ROUTES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(p, protocol)| (*protocol, *p))
}

/// A decoded body as text: a UTF-8 byte-order mark is tolerated (and dropped), anything not
/// UTF-8 is invalid JSON. Every protocol reads its body through here.
pub fn body_text(body: &[u8]) -> Result<&str, EdgeError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| EdgeError::InvalidJson {
        message: format!("body is not UTF-8 (at byte {})", e.valid_up_to()),
        index: None,
    })
}

#[cfg(test)]
mod tests;
