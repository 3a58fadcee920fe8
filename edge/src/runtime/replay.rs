//! The replay consumer: `#[event(queue)]` for the spill queue. It reads the batch's message
//! bodies, hands them to [`crate::deliver::spill::replay`], acknowledges or retries each message as that
//! decides (a retry waits [`retry_delay`] of the message's age), and writes one log line.

use std::time::Duration;

use worker::{event, js_sys, Context, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

use super::{app, WorkerRuntime};
use crate::deliver::spill::{replay, retry_delay, Disposition, ReplayReport};

#[event(queue)]
async fn replay_spill(
    batch: MessageBatch<serde_json::Value>,
    env: Env,
    _ctx: Context,
) -> worker::Result<()> {
    let started = js_sys::Date::now();
    let messages: Vec<worker::RawMessage> = batch.raw_iter().collect();
    let app = app(&env);
    let (dispositions, report) = match app.as_ref() {
        Ok(app) => {
            let bodies: Vec<Option<String>> =
                messages.iter().map(|m| m.body().as_string()).collect();
            replay(
                &app.queue,
                &WorkerRuntime,
                &bodies,
                &app.config.buffer,
                &app.config.envelope_key,
                &app.config.retry,
            )
            .await
        }
        // Nothing can be sent: every message waits for a fixed configuration.
        Err(error) => (
            vec![Disposition::Retry; messages.len()],
            ReplayReport {
                messages: messages.len(),
                retried: messages.len(),
                last_error: Some(error.to_string()),
                ..ReplayReport::default()
            },
        ),
    };
    let now = js_sys::Date::now();
    for (message, disposition) in messages.iter().zip(dispositions) {
        match disposition {
            Disposition::Ack => message.ack(),
            Disposition::Retry => {
                let age_ms = (now - message.timestamp().as_millis() as f64).max(0.0);
                let delay = retry_delay(Duration::from_millis(age_ms as u64));
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(u32::try_from(delay.as_secs()).unwrap_or(u32::MAX))
                        .build(),
                );
            }
        }
    }
    worker::console_log!(
        "{}",
        report.log_line((js_sys::Date::now() - started).max(0.0) as u64)
    );
    Ok(())
}
