//! Keeps ingest keys out of `wrangler dev`'s own request lines.
//!
//! wrangler prints one line per request, `[wrangler:info] POST /v1/events?key=... 202 Accepted`,
//! with the path and query as the client sent them: a beacon's `?key=` or a mistyped
//! `/v1/events&key=...` would put the key in `.spillway/logs/edge.log`. wrangler has no switch
//! for these lines alone (`--log-level warn` also hides the edge's own JSON log line), so the
//! local stack passes wrangler's output through `sed`, which outlives `cargo xtask up` as
//! wrangler does: the query is dropped and a path that is not one of the edge's routes is
//! written as `(unknown)`, as the edge's own log line writes it.

use std::process::Command;

/// The paths the edge serves; anything else is logged as `(unknown)`.
const ROUTES: &[&str] = &["/v1/events", "/healthz"];

/// The `sed -E` program that rewrites wrangler's request lines (and leaves others alone).
pub fn sed_program() -> String {
    let routes = ROUTES.join("|");
    let line = r"\[wrangler:info\] [A-Z]+ ";
    [
        format!(r"\%{line}%{{"),
        // A known route: drop its query (and fragment).
        format!(r"s%({line})({routes})[?#][^ ]*%\1\2%"),
        // Anything else: the whole request target goes.
        format!(r"\%{line}({routes})( |$)%!s%({line})[^ ]*%\1(unknown)%"),
        "}".to_owned(),
    ]
    .join("\n")
}

/// `program` run by a shell: `sh -c '<program> 2>&1 | sed ...'`, so that everything the
/// program writes passes the redaction before it reaches the service's log.
pub fn through_sed(program: Command) -> Command {
    let mut cmd = Command::new("sh");
    cmd.current_dir(
        program
            .get_current_dir()
            .unwrap_or(std::path::Path::new(".")),
    )
    .arg("-c")
    .arg(r#"program="$1"; shift; "$program" "$@" 2>&1 | exec sed -u -E -e "$SPILLWAY_REDACT""#)
    .arg("sh")
    .arg(program.get_program())
    .args(program.get_args())
    .env("SPILLWAY_REDACT", sed_program());
    for (k, v) in program.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::Stdio;

    use super::*;

    fn redact(input: &str) -> String {
        let mut child = Command::new("sed")
            .args(["-u", "-E", "-e", &sed_program()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sed");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("sed output");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn keys_in_the_request_target_never_pass() {
        let key = "c1eb030b0ec126dd0a49bd27";
        let input = format!(
            "[wrangler:info] POST /v1/events&key={key} 404 Not Found (17ms)\n\
             [wrangler:info] POST /v1/events?key={key} 202 Accepted (3ms)\n\
             [wrangler:info] GET /{key} 404 Not Found (1ms)\n\
             [wrangler:info] GET /healthz?key={key}#x 200 OK (1ms)\n"
        );
        assert_eq!(
            redact(&input),
            "[wrangler:info] POST (unknown) 404 Not Found (17ms)\n\
             [wrangler:info] POST /v1/events 202 Accepted (3ms)\n\
             [wrangler:info] GET (unknown) 404 Not Found (1ms)\n\
             [wrangler:info] GET /healthz 200 OK (1ms)\n"
        );
    }

    #[test]
    fn other_lines_pass_unchanged() {
        let input = "[wrangler:info] Ready on http://127.0.0.1:8787\n\
                     [wrangler:info] GET /healthz 200 OK (500ms)\n\
                     [wrangler:info] POST /v1/events 202 Accepted (3ms)\n\
                     {\"request_id\":\"x\",\"path\":\"(unknown)\",\"status\":404}\n\
                     \n";
        assert_eq!(redact(input), input);
    }

    #[test]
    fn the_wrapped_program_keeps_its_arguments_and_environment() {
        let mut program = Command::new("sh");
        program
            .args([
                "-c",
                r#"echo "$0 $1 $X"; echo "[wrangler:info] GET /x?key=k 404" >&2"#,
            ])
            .args(["a b", "c"])
            .env("X", "y");
        let out = through_sed(program).output().expect("run");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "a b c y\n[wrangler:info] GET (unknown) 404\n"
        );
    }
}
