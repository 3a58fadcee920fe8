//! Keeps ingest keys out of `wrangler dev`'s own request lines.
//!
//! wrangler prints one line per request, `[wrangler:info] POST /v1/events?key=... 202 Accepted`,
//! with the path and query as the client sent them: a beacon's `?key=` or a mistyped
//! `/v1/events&key=...` would put the key in `.spillway/logs/edge.log`. wrangler has no switch
//! for these lines alone (`--log-level warn` also hides the edge's own JSON log line), so the
//! local stack rewrites them as they pass: the query is dropped and a path that is not one of
//! the edge's routes is written as `(unknown)`, as the edge's own log line does.

use std::borrow::Cow;

const MARK: &str = "[wrangler:info] ";

/// The paths the edge serves; anything else is logged as `(unknown)`.
const ROUTES: &[&str] = &["/v1/events", "/healthz"];

/// `line` with the request target of a wrangler request line made safe to keep.
pub fn access_line(line: &str) -> Cow<'_, str> {
    let Some(at) = line.find(MARK) else {
        return Cow::Borrowed(line);
    };
    let rest = &line[at + MARK.len()..];
    let Some((method, after)) = rest.split_once(' ') else {
        return Cow::Borrowed(line);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(line); // "Ready on http://..." and other info lines
    }
    let (target, tail) = after.split_once(' ').unwrap_or((after, ""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let safe = if ROUTES.contains(&path) {
        path
    } else {
        "(unknown)"
    };
    if safe == target {
        return Cow::Borrowed(line);
    }
    let sep = if tail.is_empty() { "" } else { " " };
    Cow::Owned(format!("{}{MARK}{method} {safe}{sep}{tail}", &line[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_the_request_target_never_pass() {
        let key = "c1eb030b0ec126dd0a49bd27";
        for (line, want) in [
            (
                format!("[wrangler:info] POST /v1/events&key={key} 404 Not Found (17ms)"),
                "[wrangler:info] POST (unknown) 404 Not Found (17ms)",
            ),
            (
                format!("[wrangler:info] POST /v1/events?key={key} 202 Accepted (3ms)"),
                "[wrangler:info] POST /v1/events 202 Accepted (3ms)",
            ),
            (
                format!("\u{1b}[2m[wrangler:info] GET /{key} 404 Not Found (1ms)"),
                "\u{1b}[2m[wrangler:info] GET (unknown) 404 Not Found (1ms)",
            ),
        ] {
            let out = access_line(&line);
            assert_eq!(out, want);
            assert!(!out.contains(key));
        }
    }

    #[test]
    fn other_lines_pass_unchanged() {
        for line in [
            "[wrangler:info] Ready on http://127.0.0.1:8787",
            "[wrangler:info] GET /healthz 200 OK (500ms)",
            r#"{"request_id":"x","path":"/v1/events","status":202}"#,
            "",
        ] {
            assert!(matches!(access_line(line), Cow::Borrowed(_)), "{line}");
        }
    }
}
