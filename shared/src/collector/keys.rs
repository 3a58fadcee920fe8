//! Ingest keys inside collector bodies: where each protocol carries one in a message, taking
//! it out of what is stored, and refusing a body that names two different keys. Which key
//! authenticates is the edge's business; this module only reads and removes text.

use std::borrow::Cow;
use std::collections::HashSet;

use super::BodyProblem;
use crate::json::{edit_members, JsonIssue, MemberEdit};

/// Where a protocol's messages carry an ingest key, by member name: in the message itself, and
/// in an object one level down (PostHog's `properties.token`). Matched against keys as decoded
/// (`"tok\u0065n"` is `token`), whatever the value's type: these names hold the key in the
/// protocol, so nothing else of the client's is lost.
#[derive(Debug, Clone, Copy)]
pub struct KeyPlaces {
    pub top: &'static [&'static str],
    pub nested: &'static [(&'static str, &'static [&'static str])],
}

impl KeyPlaces {
    /// Whether `raw` may hold one of these members. Without a `\u` escape, a key is spelled
    /// as it decodes, so a message in which no name appears holds none of them; this spares
    /// almost every message a second scan.
    fn may_hold(&self, raw: &str) -> bool {
        raw.contains("\\u")
            || self.top.iter().any(|n| raw.contains(n))
            || self
                .nested
                .iter()
                .any(|(_, names)| names.iter().any(|n| raw.contains(n)))
    }
}

/// A message (a JSON object [`check_storable`](crate::json::check_storable) accepted) less every member where `places` says
/// an ingest key sits; every other byte as written ([`edit_members`]). A nested place is edited
/// only when its member is an object.
pub fn without_keys<'a>(raw: &'a str, places: &KeyPlaces) -> Result<Cow<'a, str>, JsonIssue> {
    if !places.may_hold(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    // The first problem inside a nested object, kept to be returned after the outer edit.
    let mut inner_issue = None;
    let out = edit_members(raw, |name, value| {
        if places.top.contains(&name) {
            return MemberEdit::Drop;
        }
        let Some((_, names)) = places.nested.iter().find(|(n, _)| *n == name) else {
            return MemberEdit::Keep;
        };
        if !value.starts_with('{') {
            return MemberEdit::Keep;
        }
        match edit_members(value, |n, _| {
            if names.contains(&n) {
                MemberEdit::Drop
            } else {
                MemberEdit::Keep
            }
        }) {
            Ok(v) => MemberEdit::Replace(v),
            Err(e) => {
                inner_issue.get_or_insert(e);
                MemberEdit::Keep
            }
        }
    })?;
    match inner_issue {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The one key among those found, refusing two different ones.
pub(crate) fn one_key(
    keys: impl IntoIterator<Item = String>,
) -> Result<Option<String>, BodyProblem> {
    let distinct: HashSet<String> = keys.into_iter().filter(|k| !k.is_empty()).collect();
    match distinct.len() {
        0 => Ok(None),
        1 => Ok(distinct.into_iter().next()),
        _ => Err(BodyProblem::ConflictingKeys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_agree() {
        assert_eq!(one_key(Vec::new()), Ok(None));
        assert_eq!(
            one_key(["k".to_owned(), "k".to_owned(), String::new()]),
            Ok(Some("k".to_owned()))
        );
        assert_eq!(
            one_key(["k".to_owned(), "j".to_owned()]),
            Err(BodyProblem::ConflictingKeys)
        );
    }
}
