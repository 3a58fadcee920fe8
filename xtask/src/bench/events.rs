//! The events every figure sends come from `spillway_support::events` (shared with
//! edge/benches/floor.rs); this adds the wall-clock timestamp the live runs stamp them with.

use std::process::Command;

pub(super) use spillway_support::events::{event, request_body, size_of_event, FIXED_TIMESTAMP};

use crate::step::output;

pub(super) fn now_rfc3339() -> String {
    output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.000Z"]))
        .unwrap_or_else(|| "2026-11-28T08:00:00.000Z".into())
}
