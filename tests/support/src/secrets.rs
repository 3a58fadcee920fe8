//! The leak check of the secret tests (edge and consumer): a list of secrets, each with
//! distinctive fragments so that a truncated or re-encoded copy is caught too, and one
//! assertion that none of them is in a text.

/// Secrets a test must never find in what it checks.
#[derive(Debug, Clone)]
pub struct Secrets(Vec<&'static str>);

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = &'static str>) -> Self {
        Self(secrets.into_iter().collect())
    }

    /// The secrets (or fragments) found in `text`, in list order.
    pub fn found_in(&self, text: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .copied()
            .filter(|s| text.contains(s))
            .collect()
    }

    /// Fails, naming `what`, the secrets found and the text, if any secret is in `text`.
    #[track_caller]
    pub fn assert_absent(&self, what: &str, text: &str) {
        let found = self.found_in(text);
        assert!(found.is_empty(), "{what} leaks {found:?}:\n{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_fragment_and_nothing_else() {
        let s = Secrets::new(["sk_live_ABCDEF0123", "ABCDEF0123"]);
        assert_eq!(
            s.found_in("x sk_live_ABCDEF0123 y"),
            ["sk_live_ABCDEF0123", "ABCDEF0123"]
        );
        assert_eq!(s.found_in("ABCDEF0123%2F"), ["ABCDEF0123"]);
        assert!(s.found_in("key_id web").is_empty());
        s.assert_absent("a clean line", "key_id web");
        let caught = std::panic::catch_unwind(|| s.assert_absent("a leaking line", "ABCDEF0123"));
        assert!(caught.is_err());
    }
}
