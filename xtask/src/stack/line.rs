//! The one-line status of `cargo xtask dev` and `cargo xtask status`: the figures of each part,
//! `?` for a figure that could not be read, then what could not be read and what the supervisor
//! found and did. Formatting only: the figures come from `spillway_support::stack::read_status`.

use spillway_support::Status;

/// `v` right-aligned in `width`, or `?` when it could not be read.
fn figure(v: u64, unread: bool, width: usize) -> String {
    if unread {
        format!("{:>width$}", "?")
    } else {
        format!("{v:>width$}")
    }
}

/// One status line: the queue's figures with SQS; with Kinesis, the stream (name, shards), how
/// far the consumer is behind it (the poller's largest `millis_behind_latest`, and the events
/// accepted but not stored yet) and the batches given up on. Then, after `|`, each part that
/// could not be read (`SQS unreachable`) and the supervisor's notes (`poller restarted 2x, last
/// 12 s ago`).
pub fn status_line(s: &Status) -> String {
    let lag = s
        .lag_ms
        .map(|ms| format!("{ms} ms"))
        .unwrap_or_else(|| "-".into());
    let rows = figure(s.rows, s.rows_unread, 7);
    let mut line = match &s.stream {
        None => format!(
            "accepted {:>7} | spilled {:>5} replayed {:>5} | queue {} visible {} in flight | dlq {} | stored {rows} | lag {} | sqs {}",
            s.accepted,
            s.spilled,
            s.replayed,
            figure(s.visible, s.queue_unread, 5),
            figure(s.in_flight, s.queue_unread, 4),
            figure(s.dlq, s.queue_unread, 4),
            lag,
            s.sqs
        ),
        Some(k) => format!(
            "accepted {:>7} | spilled {:>5} replayed {:>5} | stream {} ({} shards) behind {} / {} events | failed batches {:>3} | dlq {:>4} | stored {rows} | lag {}",
            s.accepted,
            s.spilled,
            s.replayed,
            k.name,
            k.shards,
            k.millis_behind
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "-".into()),
            figure(s.unstored(), s.rows_unread, 5),
            k.failed_batches,
            s.dlq,
            lag
        ),
    };
    for note in s.problems.iter().chain(&s.supervision) {
        line.push_str(" | ");
        line.push_str(note);
    }
    line
}

#[cfg(test)]
mod tests {
    use spillway_support::stack::StreamStatus;

    use super::*;

    #[test]
    fn the_status_line_shows_the_queue_or_the_stream() {
        let sqs = Status {
            accepted: 12,
            visible: 3,
            in_flight: 1,
            rows: 8,
            lag_ms: Some(40),
            ..Status::default()
        };
        let line = status_line(&sqs);
        assert!(
            line.contains("queue     3 visible    1 in flight"),
            "{line}"
        );
        assert!(line.ends_with("lag 40 ms | sqs moto"), "{line}");
        assert!(!line.contains("stream"), "{line}");

        let kinesis = Status {
            accepted: 1200,
            rows: 1000,
            dlq: 1,
            stream: Some(StreamStatus {
                name: "spillway-events".into(),
                shards: 4,
                millis_behind: Some(2300),
                failed_batches: 0,
            }),
            ..Status::default()
        };
        let line = status_line(&kinesis);
        assert!(
            line.contains("stream spillway-events (4 shards) behind 2300 ms /   200 events"),
            "{line}"
        );
        assert!(
            line.contains("failed batches   0 | dlq    1 | stored    1000"),
            "{line}"
        );
        assert!(!line.contains("queue"), "{line}");
        let before_first_checkpoint = Status {
            stream: Some(StreamStatus {
                millis_behind: None,
                ..kinesis.stream.clone().expect("stream")
            }),
            ..kinesis
        };
        assert!(status_line(&before_first_checkpoint).contains("behind - /"));
    }

    #[test]
    fn what_could_not_be_read_is_a_question_mark_and_named() {
        let s = Status {
            accepted: 5,
            rows: 0,
            queue_unread: true,
            problems: vec!["SQS unreachable".into()],
            supervision: vec![
                "local SQS down 3 s (exited: signal: 9 (SIGKILL)), restarting".into(),
                "poller restarted 2x, last 12 s ago".into(),
            ],
            ..Status::default()
        };
        let line = status_line(&s);
        assert!(
            line.contains("queue     ? visible    ? in flight | dlq    ?"),
            "{line}"
        );
        assert!(line.contains("stored       0"), "{line}");
        assert!(
            line.ends_with(
                "sqs moto | SQS unreachable | local SQS down 3 s (exited: signal: 9 (SIGKILL)), \
                 restarting | poller restarted 2x, last 12 s ago"
            ),
            "{line}"
        );
        let db = Status {
            rows_unread: true,
            problems: vec!["database unreachable".into()],
            ..Status::default()
        };
        let line = status_line(&db);
        assert!(line.contains("stored       ? | lag -"), "{line}");
        assert!(line.contains("queue     0 visible"), "{line}");
    }
}
