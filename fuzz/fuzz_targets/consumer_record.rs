//! The consumer's per-record decoding (`Plan::from_records`) on arbitrary SQS records.
//!
//! Two input shapes, both tried:
//! - an SQS event as Lambda delivers it (`{"Records":[...]}`), parsed like the runtime does,
//!   so the recorded fixtures are seeds;
//! - records separated by the byte 0x1E, each `message id` newline `body`. An empty id line is
//!   a record without a message id; a record without a newline has no body.
//!
//! Properties: never panics; every record ends up exactly once, accepted or failed, in
//! order; the Lambda answer lists exactly the failed records by their ids (a missing id as the
//! empty string, which fails the whole batch); rows hold each decoded event id once; failing
//! accepted records afterwards keeps all of that true.
#![no_main]

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use libfuzzer_sys::fuzz_target;
use spillway_consumer::keys::testing::test_key;
use spillway_consumer::plan::Plan;
use spillway_consumer::store::StoreError;
use spillway_consumer::write::rows_of;
use spillway_shared::{Keyring, Unsigned};

fn records_from_split(data: &[u8]) -> Option<Vec<SqsMessage>> {
    let text = std::str::from_utf8(data).ok()?;
    Some(
        text.split('\u{1e}')
            .map(|chunk| {
                let mut m = SqsMessage::default();
                let (id, body) = match chunk.split_once('\n') {
                    Some((id, body)) => (id, Some(body)),
                    None => (chunk, None),
                };
                m.message_id = (!id.is_empty()).then(|| id.to_owned());
                m.body = body.map(str::to_owned);
                m
            })
            .collect(),
    )
}

fn check(plan: &Plan, records: &[SqsMessage]) {
    assert_eq!(plan.batch_size, records.len());
    let mut indexes: Vec<usize> = plan
        .accepted
        .iter()
        .map(|a| a.index)
        .chain(plan.failed.iter().map(|f| f.index))
        .collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..records.len()).collect::<Vec<_>>(),
        "records lost or doubled"
    );
    assert!(plan.accepted.windows(2).all(|w| w[0].index < w[1].index));
    assert!(plan.failed.windows(2).all(|w| w[0].index < w[1].index));
    for a in &plan.accepted {
        assert!(!a.events.is_empty());
        assert_eq!(Some(&a.record_id), records[a.index].message_id.as_ref());
    }
    for f in &plan.failed {
        assert_eq!(f.record_id.as_ref(), records[f.index].message_id.as_ref());
    }

    let response = plan.response();
    let answered: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let expected: Vec<&str> = plan
        .failed
        .iter()
        .map(|f| f.record_id.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(answered, expected);

    let (rows, duplicates) = rows_of(&plan.accepted);
    let total: usize = plan.accepted.iter().map(|a| a.events.len()).sum();
    assert_eq!(rows.len() as u64 + duplicates, total as u64);
    let mut ids = HashSet::new();
    // Ids are unique within their key (the table's key is `(key_id, id)`).
    assert!(
        rows.iter()
            .all(|r| ids.insert((r.event.key_id.as_str(), r.event.id))),
        "a key's id in two rows"
    );
    if let Some(oldest) = plan.oldest_received_at() {
        assert!(rows.iter().all(|r| r.event.received_at >= oldest));
    }
}

fuzz_target!(|data: &[u8]| {
    let records = match serde_json::from_slice::<SqsEvent>(data) {
        Ok(event) => event.records,
        Err(_) => match records_from_split(data) {
            Some(r) => r,
            None => return,
        },
    };
    // Unsigned (version 1) bodies accepted: the seeds are version 1, and what follows the
    // check (rows, failures) is the same for a body that verified.
    let keys = Keyring::new(vec![test_key()], Unsigned::Accept);
    let mut plan = Plan::from_records(&records, &keys);
    check(&plan, &records);

    // The database then refuses every other accepted record (and one index that is not).
    let failures: Vec<(usize, StoreError)> = plan
        .accepted
        .iter()
        .step_by(2)
        .map(|a| a.index)
        .chain([records.len() + 7])
        .map(|i| (i, StoreError::unavailable("fuzz")))
        .collect();
    let refused = failures.len() - 1;
    let before = plan.failed.len();
    plan.fail_accepted(failures);
    assert_eq!(plan.failed.len(), before + refused);
    check(&plan, &records);
});
