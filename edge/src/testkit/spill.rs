//! A spill queue in memory: it keeps what it is sent, or fails, or never answers.

use std::cell::{Cell, RefCell};

use futures_util::future::LocalBoxFuture;

use crate::deliver::spill::{decode_spill, Spilled};
use crate::ports::{SpillError, SpillQueue};

/// How the fake spill queue answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpillMode {
    /// Takes every batch.
    Up,
    /// Refuses every batch.
    Down,
    /// Never answers.
    Hang,
}

/// The fake spill queue: every `sendBatch` it took, in order.
#[derive(Debug)]
pub struct FakeSpill {
    mode: Cell<SpillMode>,
    batches: RefCell<Vec<Vec<String>>>,
}

impl FakeSpill {
    pub fn new() -> Self {
        Self {
            mode: Cell::new(SpillMode::Up),
            batches: RefCell::default(),
        }
    }

    pub fn set_mode(&self, mode: SpillMode) {
        self.mode.set(mode);
    }

    /// The batches taken.
    pub fn batches(&self) -> Vec<Vec<String>> {
        self.batches.borrow().clone()
    }

    /// Every message taken, in order.
    pub fn messages(&self) -> Vec<String> {
        self.batches.borrow().iter().flatten().cloned().collect()
    }

    /// Every message taken, decoded.
    pub fn spilled(&self) -> Vec<Spilled> {
        self.messages()
            .iter()
            .map(|m| decode_spill(m).expect("a spill message"))
            .collect()
    }
}

impl Default for FakeSpill {
    fn default() -> Self {
        Self::new()
    }
}

impl SpillQueue for FakeSpill {
    fn send_batch<'a>(
        &'a self,
        messages: &'a [String],
    ) -> LocalBoxFuture<'a, Result<(), SpillError>> {
        Box::pin(async move {
            match self.mode.get() {
                SpillMode::Up => {
                    self.batches.borrow_mut().push(messages.to_vec());
                    Ok(())
                }
                SpillMode::Down => Err(SpillError("Queue send failed: 500".into())),
                SpillMode::Hang => std::future::pending().await,
            }
        })
    }
}
