//! The one error type of `cache-core`, a helper that renders keys readably in messages, and one
//! that renders an error with its causes.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in `cache-core`.
///
/// Every message is lower case and names the tag, key or path involved, so that a log line or a
/// CLI error is enough to find the problem without a debugger.
///
/// A variant that wraps an underlying error returns it from `source()` and does not repeat it in
/// its own message (the convention of the Rust API guidelines): a chain printer (anyhow's `{:#}`,
/// [`ErrorChain`]) shows each cause once. Display such an error with one of them, not with plain
/// `{}`, wherever its cause matters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A tag that is not `[a-z0-9_-]{1,64}`. Tags become directory names, so anything else is
    /// refused rather than sanitised.
    #[error("invalid cache tag {tag:?}: {reason}")]
    InvalidTag {
        /// The tag as given.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The cache root cannot be used (it is a file, cannot be created, cannot be resolved).
    #[error("cache root {path}: {reason}")]
    InvalidRoot {
        /// The root as given or resolved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A path under the cache root that the cache refuses to use: a symlink (or another kind of
    /// file) where it keeps a directory or file of its own, or a root or tag directory that
    /// another user could change (owned by someone else, or writable by group or others).
    /// Nothing was read, written or removed through it.
    #[error("refusing {path}: {reason}")]
    UnsafePath {
        /// The path refused.
        path: PathBuf,
        /// Why, and what to do about it.
        reason: String,
    },

    /// A key longer than the store accepts.
    #[error("key {key} in tag '{tag}' is {len} bytes, more than the limit of {max}")]
    KeyTooLarge {
        /// The tag written to.
        tag: String,
        /// The key, rendered readably and shortened.
        key: KeyDisplay,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// An empty key, which would be indistinguishable from "no key" in tooling.
    #[error("empty key in tag '{tag}'")]
    EmptyKey {
        /// The tag written to.
        tag: String,
    },

    /// A value larger than the tag accepts (its inline limit or its whole size limit).
    #[error("value for key {key} in tag '{tag}' is {len} bytes, more than the limit of {max}")]
    ValueTooLarge {
        /// The tag written to.
        tag: String,
        /// The key, rendered readably and shortened.
        key: KeyDisplay,
        /// The value's length in bytes.
        len: u64,
        /// The limit it passed.
        max: u64,
    },

    /// A typed key used with the instance of another tag.
    #[error("key type for tag '{key_tag}' used with the cache of tag '{tag}'")]
    WrongTag {
        /// The tag of the instance.
        tag: String,
        /// The tag the key type declares.
        key_tag: String,
    },

    /// A value that could not be encoded.
    #[error("cannot encode the value for key {key} in tag '{tag}': {message}")]
    Encode {
        /// The tag written to.
        tag: String,
        /// The key, rendered readably and shortened.
        key: KeyDisplay,
        /// The codec's own message.
        message: String,
    },

    /// A filesystem operation failed.
    #[error("{operation} {path}")]
    Io {
        /// What was being done, as a verb phrase ("creating directory").
        operation: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The redb database of a tag failed.
    #[error("cache database of tag '{tag}' at {path}")]
    Database {
        /// The tag.
        tag: String,
        /// Its database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },

    /// redb panicked inside an operation: the tag's file is damaged in a way redb does not
    /// report as an error. The file has been moved aside (`cache.redb.corrupt-<ms>`) and the tag
    /// goes on with a fresh, empty file; this process's unsaved writes are kept.
    #[error(
        "cache file of tag '{tag}' at {path} is damaged (redb panicked during {operation}); \
         it was moved aside and the tag starts empty"
    )]
    Damaged {
        /// The tag.
        tag: String,
        /// Its database file (the damaged one was renamed next to it).
        path: PathBuf,
        /// The operation that met the damage.
        operation: &'static str,
    },

    /// Another process (or thread) held a lock on the tag's file (its write lock, or the header
    /// while it commits) for longer than the instance's `timeout`: an open, a read or a commit
    /// gave up waiting.
    #[error(
        "timed out after {waited:?} waiting for another process's lock on the file of tag '{tag}' \
         at {path}"
    )]
    LockTimeout {
        /// The tag.
        tag: String,
        /// Its database file.
        path: PathBuf,
        /// How long this call waited.
        waited: Duration,
    },

    /// The tag's database is already open in this process through another [`crate::Coordinator`].
    /// redb allows one handle per file per process; share the coordinator instead.
    #[error(
        "cache file {path} is already open in this process through another coordinator; \
         share one coordinator per process"
    )]
    AlreadyOpenInProcess {
        /// The database file.
        path: PathBuf,
    },

    /// The instance was closed (by `close()` or a coordinator reset); ask the coordinator again.
    #[error("cache instance of tag '{tag}' is closed")]
    Closed {
        /// The tag.
        tag: String,
    },

    /// A registered `(root, tag)` was requested again with a different setting. The original
    /// silently ignored the second request's settings (its defect 8); we refuse.
    #[error(
        "cache instance {key} is already open with {setting} = {registered}, \
         but {requested} was requested"
    )]
    SettingsConflict {
        /// The registry key, `"{canonical root}:{tag}"`.
        key: String,
        /// The name of the setting that differs.
        setting: &'static str,
        /// Its value in the registered instance.
        registered: String,
        /// Its value in the request.
        requested: String,
    },

    /// Reading the caller's source of a streamed value failed; nothing was stored.
    #[error("reading the value for key {key} in tag '{tag}' from its source failed")]
    Source {
        /// The tag written to.
        tag: String,
        /// The key.
        key: KeyDisplay,
        /// The source's error.
        #[source]
        source: std::io::Error,
    },

    /// A staged directory handed to another tag's (or another instance's) `set_directory` than
    /// the one that staged it.
    #[error("directory {path} was not staged by the cache of tag '{tag}'")]
    ForeignStagedDirectory {
        /// The tag written to.
        tag: String,
        /// The staged directory.
        path: PathBuf,
    },

    /// A staged directory changed between its measurement and its move into place (files
    /// added or removed by another process): it was removed again and nothing was stored.
    #[error(
        "directory {path} changed while it was being stored: measured {measured_entries} \
         entries of {measured_bytes} bytes, found {found_entries} entries of {found_bytes} bytes \
         once in place; it was removed and not stored"
    )]
    StagedDirectoryChanged {
        /// Where the directory was moved (and removed from).
        path: PathBuf,
        /// Entries (files, directories, symlinks) measured before the move.
        measured_entries: u64,
        /// Their length in bytes, measured before the move.
        measured_bytes: u64,
        /// Entries found after the move.
        found_entries: u64,
        /// Their length in bytes, found after the move.
        found_bytes: u64,
    },

    /// An operation that needs the database to itself (compaction, integrity check) found it
    /// in use.
    #[error("cache of tag '{tag}' is busy: {reason}")]
    Busy {
        /// The tag.
        tag: String,
        /// Who is using it.
        reason: &'static str,
    },

    /// Storing a directory would leave the filesystem holding the cache with less free space
    /// than [`crate::CacheOptions::min_free_space`], even after evicting every other entry of
    /// the tag. Nothing is stored.
    #[error(
        "not storing in tag '{tag}': the filesystem holding {path} has {free_bytes} bytes free, \
         less than the min_free_space setting ({min_free_bytes} bytes), and evicting the whole \
         tag ({tag_bytes} bytes) would not make up the difference; free space on that disk or \
         lower min_free_space"
    )]
    InsufficientFreeSpace {
        /// The tag written to.
        tag: String,
        /// The tag's directory.
        path: PathBuf,
        /// Free bytes on its filesystem now.
        free_bytes: u64,
        /// What `min_free_space` asks to keep free there.
        min_free_bytes: u64,
        /// What the tag's entries take (all evictable).
        tag_bytes: u64,
    },

    /// An option value that cannot work (zero timeout, zero size limit...).
    #[error("invalid cache option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The configuration file cannot be read or is not valid: a TOML syntax error, an unknown
    /// key, or a value that cannot work. The message names the file and, when the error has a
    /// place in it, the line and the key (`defaults.max_size`, `tags.thumbnails.eviction`).
    #[error("{}", config_file_message(.path, *.line, .key.as_deref(), .message))]
    ConfigFile {
        /// The configuration file.
        path: PathBuf,
        /// The line (from 1) the error is on, when it has one.
        line: Option<usize>,
        /// The key the error is about, dotted from the top of the file, when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },

    /// A time to live that cannot work, from a config file or a `GLOVEBOX_CACHE_TTL_<NAME>`
    /// variable: not a whole number of seconds, zero, or a level name that is not lower-case
    /// `[a-z0-9_]`. `name` is the variable, or the level's name in a config file.
    #[error("invalid time to live {name}: {reason}")]
    InvalidTtl {
        /// The variable or the level name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A single-flight caller waited longer than the instance's `timeout` for the computation
    /// of a key that another thread or process was running.
    #[error(
        "timed out after {waited:?} waiting for process {owner_pid} to compute key {key} \
         in tag '{tag}'"
    )]
    FlightTimeout {
        /// The tag.
        tag: String,
        /// The key being computed.
        key: KeyDisplay,
        /// The process that held the key's lease when the wait ended (this process's own id when
        /// another of its threads was computing).
        owner_pid: u32,
        /// How long this caller waited.
        waited: Duration,
    },

    /// A single-flight computation this caller waited for failed (or panicked, or its process
    /// gave it up), and the caller had no retry left (`CacheOptions::flight_retries`).
    #[error("computing key {key} in tag '{tag}' failed in process {owner_pid}: {message}")]
    ComputationFailed {
        /// The tag.
        tag: String,
        /// The key whose computation failed.
        key: KeyDisplay,
        /// The process whose computation failed.
        owner_pid: u32,
        /// The computation's error, as it displayed.
        message: String,
    },
}

/// Result alias used throughout `cache-core`.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

impl CacheError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CacheError::Io {
            operation,
            path: path.into(),
            source,
        }
    }

    /// A redb error of `tag`'s file: [`CacheError::LockTimeout`] when it is a wait for another
    /// process's lock that ran out (see `store/backend.rs`), else [`CacheError::Database`].
    pub(crate) fn database(
        tag: &str,
        path: &std::path::Path,
        source: impl Into<redb::Error>,
    ) -> Self {
        let source = source.into();
        if let Some(waited) = lock_wait_timed_out(&source) {
            return CacheError::LockTimeout {
                tag: tag.to_owned(),
                path: path.to_owned(),
                waited,
            };
        }
        CacheError::Database {
            tag: tag.to_owned(),
            path: path.to_owned(),
            source: Box::new(source),
        }
    }
}

/// An error and its causes on one line, joined by `: ` (as anyhow's `{:#}` prints them): for log
/// fields and messages built from a [`CacheError`], whose own message leaves its cause to
/// `source()`.
///
/// ```
/// use cache_core::{CacheError, ErrorChain};
/// let err = std::fs::read("/no/such/file").map_err(|source| CacheError::Io {
///     operation: "reading",
///     path: "/no/such/file".into(),
///     source,
/// });
/// let shown = ErrorChain(&err.unwrap_err()).to_string();
/// assert!(shown.starts_with("reading /no/such/file: "), "{shown}");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

/// A key rendered for humans: UTF-8 text in quotes when it is printable, hex otherwise, shortened
/// to 64 characters so that a huge key cannot flood a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyDisplay(String);

impl KeyDisplay {
    const MAX_CHARS: usize = 64;

    /// Renders `key`.
    pub fn new(key: &[u8]) -> Self {
        let rendered = match std::str::from_utf8(key) {
            Ok(text) if !text.chars().any(char::is_control) => {
                let mut shown: String = text.chars().take(Self::MAX_CHARS).collect();
                if shown.len() < text.len() {
                    shown.push('…');
                }
                format!("{shown:?}")
            }
            _ => {
                let mut hex: String = key
                    .iter()
                    .take(Self::MAX_CHARS / 2)
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                if key.len() > Self::MAX_CHARS / 2 {
                    hex.push('…');
                }
                format!("0x{hex}")
            }
        };
        KeyDisplay(rendered)
    }
}

impl fmt::Display for KeyDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A wait for a lock that another process held past the deadline. The lock was not taken.
#[derive(Debug)]
pub(crate) struct LockWaitTimedOut {
    /// How long this wait lasted.
    pub(crate) waited: Duration,
}

impl std::fmt::Display for LockWaitTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another process held a lock on the file for more than {:?}",
            self.waited
        )
    }
}

impl std::error::Error for LockWaitTimedOut {}

/// How long the wait that failed `err` lasted, when `err` is a [`LockWaitTimedOut`] (as redb
/// passes a backend's error on: boxed, or inside an I/O error).
pub(crate) fn lock_wait_timed_out(err: &redb::Error) -> Option<Duration> {
    let inner: &(dyn std::error::Error + 'static) = match err {
        redb::Error::Backend(inner) => inner.as_ref(),
        redb::Error::Io(io) => io.get_ref()?,
        _ => return None,
    };
    inner
        .downcast_ref::<LockWaitTimedOut>()
        .map(|timed_out| timed_out.waited)
}

/// `config file PATH, line N, key `K`: MESSAGE`, leaving out what is unknown.
fn config_file_message(
    path: &std::path::Path,
    line: Option<usize>,
    key: Option<&str>,
    message: &str,
) -> String {
    let mut text = format!("invalid config file {}", path.display());
    if let Some(line) = line {
        text.push_str(&format!(", line {line}"));
    }
    if let Some(key) = key {
        text.push_str(&format!(", key `{key}`"));
    }
    text.push_str(": ");
    text.push_str(message);
    text
}

#[cfg(test)]
mod tests {
    use super::{CacheError, ErrorChain, KeyDisplay};

    /// Item 16 of issue 13: an error whose message printed its source and also returned it from
    /// `source()` showed the cause twice in every chain (`...: No space left on device (os error
    /// 28): No space left on device (os error 28)`).
    #[test]
    fn trust_16_an_error_chain_shows_each_cause_once() {
        let enospc = || std::io::Error::from_raw_os_error(28);
        let errors = [
            CacheError::Io {
                operation: "writing blob",
                path: "/root/t/blobs/tmp/1-0".into(),
                source: enospc(),
            },
            CacheError::Database {
                tag: "t".to_owned(),
                path: "/root/t/cache.redb".into(),
                source: Box::new(redb::Error::Io(enospc())),
            },
            CacheError::Source {
                tag: "t".to_owned(),
                key: KeyDisplay::new(b"k"),
                source: enospc(),
            },
        ];
        for err in errors {
            let chain = ErrorChain(&err).to_string();
            let cause = enospc().to_string();
            assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
            assert!(chain.starts_with(&format!("{err}: ")), "{chain}");
        }
    }

    #[test]
    fn key_display_quotes_text_and_hexes_binary() {
        assert_eq!(KeyDisplay::new(b"thumb:42").to_string(), "\"thumb:42\"");
        assert_eq!(KeyDisplay::new(&[0, 255, 16]).to_string(), "0x00ff10");
    }

    #[test]
    fn key_display_shortens_long_keys() {
        let long = "k".repeat(500);
        let shown = KeyDisplay::new(long.as_bytes()).to_string();
        assert!(shown.chars().count() < 70, "{shown}");
        assert!(shown.contains('…'));
    }
}
