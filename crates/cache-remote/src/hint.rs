//! The breaker hint: `<root>/remote-breaker.hint`, written when the circuit breaker opens, so
//! that the processes that start while the endpoint is known down (short-lived command-line
//! runs above all) start with the breaker open instead of each paying a connect timeout.
//!
//! Content (text, at most [`MAX_HINT_BYTES`]):
//!
//! ```text
//! glovebox-cache remote breaker hint 1
//! endpoint <blake3 hex of the endpoint>
//! open-until-ms <ms since the epoch>
//! ```
//!
//! The endpoint is named by a hash, never by its URL (which the configuration keeps free of
//! credentials anyway). A hint is ignored when it is malformed, names another endpoint, has
//! expired, or claims longer than this process's open period. When the endpoint answers again,
//! the process that knows of the hint (it read or wrote it) removes it. The file is read and
//! written through the core's `RootFiles`: a symlink planted under its name is never followed,
//! and it is not synced (a crash may lose it: a hint).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::keys::hex;
use cache_core::{ErrorChain, RootFiles};

/// The file's name under the root.
pub(crate) const HINT_FILE_NAME: &str = "remote-breaker.hint";
/// A longer file is not a hint of ours.
pub(crate) const MAX_HINT_BYTES: usize = 512;
const FIRST_LINE: &str = "glovebox-cache remote breaker hint 1";

/// The hint file of one endpoint under one root.
#[derive(Debug)]
pub(crate) struct Hint {
    root: RootFiles,
    endpoint: String,
    /// Whether this process read or wrote a hint of its endpoint that it has not removed.
    known: AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The name of `endpoint` in a hint: a hash, so the file says nothing of where it is.
pub(crate) fn endpoint_identity(endpoint: &str) -> String {
    hex(&blake3::derive_key(
        "glovebox-cache remote breaker hint endpoint v1",
        endpoint.as_bytes(),
    ))
}

impl Hint {
    pub(crate) fn new(root: RootFiles, endpoint: &str) -> Self {
        Hint {
            root,
            endpoint: endpoint_identity(endpoint),
            known: AtomicBool::new(false),
        }
    }

    /// The time the breaker stays open by the hint, if it holds one for this endpoint that has
    /// not expired and claims no more than `open_for`.
    pub(crate) fn read_open_for(&self, open_for: Duration) -> Option<Duration> {
        let bytes = match self.root.read(HINT_FILE_NAME, MAX_HINT_BYTES) {
            Ok(bytes) => bytes?,
            Err(err) => {
                tracing::debug!(error = %ErrorChain(&err), "could not read the remote breaker hint; ignored");
                return None;
            }
        };
        let until = self.parse(&bytes)?;
        self.known.store(true, Ordering::Relaxed);
        let left = Duration::from_millis(until.checked_sub(now_ms())?);
        (left <= open_for).then_some(left)
    }

    /// The `open-until-ms` of a hint of this endpoint; `None` for anything else.
    fn parse(&self, bytes: &[u8]) -> Option<u64> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FIRST_LINE {
            return None;
        }
        let endpoint = lines.next()?.strip_prefix("endpoint ")?;
        let until = lines.next()?.strip_prefix("open-until-ms ")?.parse().ok()?;
        (endpoint == self.endpoint && lines.next().is_none()).then_some(until)
    }

    /// Writes (or overwrites) the hint: this endpoint is down for `open_for` from now.
    pub(crate) fn write(&self, open_for: Duration) {
        let until = now_ms().saturating_add(u64::try_from(open_for.as_millis()).unwrap_or(0));
        let text = format!(
            "{FIRST_LINE}\nendpoint {}\nopen-until-ms {until}\n",
            self.endpoint
        );
        match self.root.replace(HINT_FILE_NAME, text.as_bytes()) {
            Ok(()) => self.known.store(true, Ordering::Relaxed),
            Err(err) => {
                tracing::debug!(error = %ErrorChain(&err), "could not write the remote breaker hint")
            }
        }
    }

    /// The endpoint answered: removes the hint, if this process knows of one and it is still
    /// this endpoint's (another endpoint's process may have replaced it since).
    pub(crate) fn endpoint_answered(&self) {
        if !self.known.swap(false, Ordering::Relaxed) {
            return;
        }
        let ours = matches!(
            self.root.read(HINT_FILE_NAME, MAX_HINT_BYTES),
            Ok(Some(bytes)) if self.parse(&bytes).is_some()
        );
        if ours && let Err(err) = self.root.remove(HINT_FILE_NAME) {
            tracing::debug!(error = %ErrorChain(&err), "could not remove the remote breaker hint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(root: &std::path::Path, endpoint: &str) -> Hint {
        Hint::new(RootFiles::open_existing(root).unwrap().unwrap(), endpoint)
    }

    #[test]
    fn a_hint_is_read_back_for_its_endpoint_only_and_removed_when_the_endpoint_answers() {
        let root = tempfile::tempdir().unwrap();
        let open_for = Duration::from_secs(30);
        let writer = hint(root.path(), "redis://a:1/0");
        writer.write(open_for);
        let text = std::fs::read_to_string(root.path().join(HINT_FILE_NAME)).unwrap();
        assert!(!text.contains("redis://"), "the endpoint is hashed: {text}");

        let same = hint(root.path(), "redis://a:1/0");
        let left = same.read_open_for(open_for).unwrap();
        assert!(left <= open_for);
        assert_eq!(
            hint(root.path(), "redis://b:1/0").read_open_for(open_for),
            None
        );
        same.endpoint_answered();
        assert!(!root.path().join(HINT_FILE_NAME).exists());
    }

    #[rstest::rstest]
    #[case::expired(format!("{FIRST_LINE}\nendpoint {}\nopen-until-ms 1\n", endpoint_identity("e")))]
    #[case::too_long_a_claim(format!("{FIRST_LINE}\nendpoint {}\nopen-until-ms {}\n", endpoint_identity("e"), u64::MAX))]
    #[case::not_a_number(format!("{FIRST_LINE}\nendpoint {}\nopen-until-ms soon\n", endpoint_identity("e")))]
    #[case::another_version(format!("glovebox-cache remote breaker hint 9\nendpoint {}\nopen-until-ms 1\n", endpoint_identity("e")))]
    #[case::trailing(format!("{FIRST_LINE}\nendpoint {}\nopen-until-ms 1\nmore\n", endpoint_identity("e")))]
    #[case::empty(String::new())]
    fn a_stale_or_malformed_hint_is_ignored(#[case] text: String) {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(HINT_FILE_NAME), text).unwrap();
        assert_eq!(
            hint(root.path(), "e").read_open_for(Duration::from_secs(30)),
            None
        );
    }
}
