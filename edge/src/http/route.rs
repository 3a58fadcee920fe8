//! Where a request goes, from its method and path alone, and the path as the log names it.
//! It does not read headers or the body.

use http::Method;

use crate::error::EdgeError;
use crate::protocol::{protocol_route, Protocol};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A path that takes events, in its protocol (`/v1/events`, Segment, PostHog).
    Ingest(Protocol),
    Health,
    /// CORS preflight on a known path.
    Preflight,
    /// The test hook: the handler panics, to prove a panic still answers a JSON `500`.
    Panic,
}

/// The path as the log line names it: a known route, or `(unknown)`. A mistyped path can hold
/// anything the client typed, an ingest key included (`/v1/events&key=...`), so it is never
/// logged as sent.
pub fn log_path(path: &str) -> &'static str {
    match path {
        "/v1/events" => "/v1/events",
        "/healthz" => "/healthz",
        _ => protocol_route(path).map_or("(unknown)", |(_, known)| known),
    }
}

pub(crate) const INGEST_ALLOW: &str = "POST, OPTIONS";
pub(crate) const HEALTH_ALLOW: &str = "GET, HEAD, OPTIONS";

/// The path of the test hook that panics (see [`crate::config::Config::panic_route`]).
pub const PANIC_PATH: &str = "/__spillway/panic";

/// What a request is for. `panic_route` turns on the test hook at [`PANIC_PATH`].
pub fn route(method: &Method, path: &str, panic_route: bool) -> Result<Route, EdgeError> {
    let (allow, route) = match path {
        PANIC_PATH if panic_route => return Ok(Route::Panic),
        "/healthz" => (
            HEALTH_ALLOW,
            (method == Method::GET || method == Method::HEAD).then_some(Route::Health),
        ),
        _ => match protocol_route(path) {
            Some((protocol, _)) => (
                INGEST_ALLOW,
                (method == Method::POST).then_some(Route::Ingest(protocol)),
            ),
            None => return Err(EdgeError::NotFound),
        },
    };
    match route {
        Some(r) => Ok(r),
        None if method == Method::OPTIONS => Ok(Route::Preflight),
        None => Err(EdgeError::MethodNotAllowed { allow }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Collector;
    use spillway_shared::collector::segment::Call;

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/v1/events", false),
            Ok(Route::Ingest(Protocol::Events))
        );
        assert_eq!(route(&Method::GET, "/healthz", false), Ok(Route::Health));
        assert_eq!(route(&Method::HEAD, "/healthz", false), Ok(Route::Health));
        assert_eq!(
            route(&Method::OPTIONS, "/v1/events", false),
            Ok(Route::Preflight)
        );
        assert_eq!(
            route(&Method::GET, "/v1/events", false),
            Err(EdgeError::MethodNotAllowed {
                allow: "POST, OPTIONS"
            })
        );
        assert_eq!(
            route(&Method::POST, "/healthz", false),
            Err(EdgeError::MethodNotAllowed {
                allow: "GET, HEAD, OPTIONS"
            })
        );
        assert_eq!(
            route(&Method::POST, "/v1/events/", false),
            Err(EdgeError::NotFound)
        );
        assert_eq!(
            route(&Method::OPTIONS, "/nope", false),
            Err(EdgeError::NotFound)
        );
        // The test hook exists only when the configuration turns it on.
        assert_eq!(
            route(&Method::GET, PANIC_PATH, false),
            Err(EdgeError::NotFound)
        );
        assert_eq!(route(&Method::GET, PANIC_PATH, true), Ok(Route::Panic));
    }

    #[test]
    fn collector_paths_route_to_their_protocol() {
        assert_eq!(
            route(&Method::POST, "/v1/b", false),
            Ok(Route::Ingest(Protocol::Collector(Collector::Segment(
                Call::Batch
            ))))
        );
        assert_eq!(
            route(&Method::POST, "/capture/", false),
            Ok(Route::Ingest(Protocol::Collector(Collector::Posthog)))
        );
        assert_eq!(route(&Method::OPTIONS, "/e", false), Ok(Route::Preflight));
        assert_eq!(log_path("/e"), "/e");
        assert_eq!(log_path("/v1/events&key=k-web"), "(unknown)");
    }
}
