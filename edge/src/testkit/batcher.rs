//! A batcher on the test's own thread, reached the way the Worker reaches its Durable Objects:
//! through the wire format (single submissions and gathered bundles), so the request path's
//! side of group commit is tested whole.

use std::cell::{Cell, RefCell};

use futures_util::future::LocalBoxFuture;

use super::{FakeQueue, FakeRuntime};
use crate::config::Config;
use crate::deliver::group_commit::{
    decode_bundle, encode_answer, encode_answers, Batcher, BatcherSettings, FlushLog,
};
use crate::ports::{BatcherError, BatcherLink};

/// How the link to the batcher behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Answers as the batcher decides.
    Up,
    /// Cannot be reached (no such object, a reset during a deploy).
    Down,
    /// Never answers.
    Hang,
    /// Answers something that is not a report.
    Garbage,
}

/// A [`Batcher`] over its own [`FakeQueue`], behind a [`BatcherLink`].
#[derive(Debug)]
pub struct LocalBatcher {
    pub batcher: Batcher<FakeQueue, FakeRuntime>,
    link: Cell<Link>,
    names: RefCell<Vec<String>>,
    flushes: RefCell<Vec<FlushLog>>,
}

impl LocalBatcher {
    /// A batcher with the edge's settings, sending to `queue`.
    pub fn new(config: &Config, queue: FakeQueue) -> Self {
        Self {
            batcher: Batcher::new(
                queue,
                FakeRuntime::new(),
                BatcherSettings::from_config(config),
            ),
            link: Cell::new(Link::Up),
            names: RefCell::default(),
            flushes: RefCell::default(),
        }
    }

    pub fn set_link(&self, link: Link) {
        self.link.set(link);
    }

    /// The batcher names Durable Object requests went to, in order (one per request the
    /// batcher got: a gathered bundle is one).
    pub fn names(&self) -> Vec<String> {
        self.names.borrow().clone()
    }

    /// The flushes the batcher logged, as the Durable Object logs them.
    pub fn flushes(&self) -> Vec<FlushLog> {
        self.flushes.borrow().clone()
    }

    pub fn queue(&self) -> &FakeQueue {
        self.batcher.queue()
    }
}

impl BatcherLink for LocalBatcher {
    fn submit<'a>(
        &'a self,
        name: &'a str,
        submission: Vec<u8>,
    ) -> LocalBoxFuture<'a, Result<Vec<u8>, BatcherError>> {
        self.names.borrow_mut().push(name.to_owned());
        Box::pin(async move {
            match self.link.get() {
                Link::Down => Err(BatcherError("no such object".into())),
                Link::Hang => std::future::pending().await,
                Link::Garbage => Ok(b"<html>upstream error</html>".to_vec()),
                Link::Up => {
                    let (submissions, bundle) =
                        decode_bundle(&submission).map_err(|e| BatcherError(e.to_string()))?;
                    let (answers, flushes) = self.batcher.answer_all(submissions).await;
                    self.flushes.borrow_mut().extend(flushes);
                    Ok(match (bundle, answers.as_slice()) {
                        (false, [one]) => encode_answer(one),
                        _ => encode_answers(&answers),
                    })
                }
            }
        })
    }
}
