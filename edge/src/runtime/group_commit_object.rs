//! The group commit's batcher as a Durable Object (`Batcher`, bound as `BATCHER`), and the
//! edge's way to it. Both are thin: the object decodes a submission (or a bundle of the
//! submissions one isolate gathered), hands them to [`crate::deliver::group_commit::Batcher`],
//! encodes its answers (report and advice) and logs each flush they led
//! (`{"kind":"batch","requests","calls","events","active_ms"}`: what the bench bills the
//! batchers' requests and duration from); the link posts a body to the object named by the
//! request path.

use std::fmt;

use futures_util::future::LocalBoxFuture;
use worker::{durable_object, js_sys, DurableObject, Env, ObjectNamespace, State};

use super::{buffer_client, config_from, WorkerRuntime};
use crate::buffer::Configured;
use crate::deliver::group_commit::{
    decode_bundle, encode_answer, encode_answers, Batcher as Core, BatcherSettings,
};
use crate::ports::{BatcherError, BatcherLink};

/// Name of the Durable Object binding (`[[durable_objects.bindings]]` in `wrangler.toml`).
pub(crate) const BATCHER_BINDING: &str = "BATCHER";

/// One batcher: where the requests of one location and shard gather. It keeps nothing in
/// storage; a reset (a deploy) loses only batches in the making, whose requests then send
/// directly.
#[durable_object(fetch)]
pub struct Batcher {
    core: Result<Core<Configured, WorkerRuntime>, String>,
}

impl fmt::Debug for Batcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Batcher")
    }
}

impl DurableObject for Batcher {
    fn new(_state: State, env: Env) -> Self {
        let core = config_from(&env)
            .map(|config| {
                let settings = BatcherSettings::from_config(&config);
                Core::new(buffer_client(&config), WorkerRuntime, settings)
            })
            .map_err(|e| e.to_string());
        Self { core }
    }

    async fn fetch(&self, mut req: worker::Request) -> worker::Result<worker::Response> {
        let core = match &self.core {
            Ok(core) => core,
            Err(problem) => return worker::Response::error(problem.clone(), 500),
        };
        let body = req.bytes().await?;
        match decode_bundle(&body) {
            Ok((submissions, bundle)) => {
                let (answers, flushes) = core.answer_all(submissions).await;
                for flush in flushes {
                    worker::console_log!("{}", flush.to_json());
                }
                let body = match (bundle, answers.as_slice()) {
                    (false, [one]) => encode_answer(one),
                    _ => encode_answers(&answers),
                };
                worker::Response::from_bytes(body)
            }
            Err(e) => worker::Response::error(e.to_string(), 400),
        }
    }
}

/// The `BATCHER` namespace, as the request path's [`BatcherLink`].
pub(crate) struct DurableBatchers(pub(crate) ObjectNamespace);

impl fmt::Debug for DurableBatchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DurableBatchers")
    }
}

impl BatcherLink for DurableBatchers {
    fn submit<'a>(
        &'a self,
        name: &'a str,
        submission: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<Vec<u8>, BatcherError>> {
        Box::pin(async move {
            call(&self.0, name, submission)
                .await
                .map_err(|e| BatcherError(e.to_string()))
        })
    }
}

async fn call(ns: &ObjectNamespace, name: &str, submission: Vec<u8>) -> worker::Result<Vec<u8>> {
    let stub = ns.id_from_name(name)?.get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(js_sys::Uint8Array::from(submission.as_slice()).into()));
    let req = worker::Request::new_with_init("https://batcher.spillway.internal/submit", &init)?;
    let mut answer = stub.fetch_with_request(req).await?;
    if answer.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "the batcher answered {}",
            answer.status_code()
        )));
    }
    answer.bytes().await
}
