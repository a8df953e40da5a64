//! The one error type of `cache-compilation`.

use std::path::PathBuf;

use cache_core::CacheError;

/// Everything that can go wrong in `cache-compilation`.
///
/// Messages are lower case and name the path, repository or archive entry involved. A wrapped
/// error is returned from `source()` and not repeated in the message, as in
/// [`CacheError`]: print the chain (anyhow's `{:#}`, [`cache_core::ErrorChain`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompilationError {
    /// The cache underneath failed; its message names the tag, key or path.
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// A filesystem operation outside the cache failed (reading a workspace, writing an archive,
    /// restoring artifacts).
    #[error("{operation} {path}")]
    Io {
        /// What was being done, as a verb phrase ("copying").
        operation: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A directory given as a workspace that is not a usable ZMK west workspace (it has no real
    /// `zmk/` directory).
    #[error("{path} is not a usable zmk workspace: {reason}")]
    NotAWorkspace {
        /// The directory or archive given.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },

    /// No workspace is cached for the repository (and branch) asked for.
    #[error("no cached workspace for repository {repository:?}{}", branch_suffix(.branch))]
    WorkspaceNotCached {
        /// The repository.
        repository: String,
        /// The branch, if one was asked for.
        branch: Option<String>,
    },

    /// An archive entry that would land outside the target, or that cannot be unpacked safely
    /// (absolute path, `..`, a symlink pointing outside, a hard link, a device). Nothing of the
    /// archive is stored.
    #[error("unsafe entry {entry:?} in archive {archive}: {reason}")]
    UnsafeArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's name as stored in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },

    /// A symlink in a workspace given to the cache that points outside the workspace (an
    /// absolute target, or `..` beyond its top). Refused on every way in unless
    /// [`CompilationOptions::allow_escaping_symlinks`](crate::CompilationOptions::allow_escaping_symlinks);
    /// nothing is stored.
    #[error(
        "symlink {link} points outside the workspace ({reason}); remove or fix it, or allow such links \
         (CompilationOptions::allow_escaping_symlinks, --allow-escaping-symlinks)"
    )]
    EscapingSymlink {
        /// The symlink, as a path in the source given.
        link: PathBuf,
        /// Its target, as written.
        target: PathBuf,
        /// Why it leaves the workspace.
        reason: String,
    },

    /// Content that does not fit in the tag's size limit even alone: refused before anything
    /// is copied (or, for what the filesystem allocates beyond the content, when stored), and
    /// nothing cached is evicted for it.
    #[error(
        "{what} needs {bytes} bytes, more than tag '{tag}' may hold: its size limit is {limit} \
         bytes. Raise it with --max-size on `glovebox-cache workspace add` or `import` (for \
         example --max-size 32GiB), or, in a program, the max_size_bytes of the options the \
         compilation tag is opened with"
    )]
    OverSizeLimit {
        /// The tag.
        tag: String,
        /// What was to be stored ("workspace of repository "r"").
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// The tag's size limit in bytes.
        limit: u64,
    },

    /// Content whose copy would leave the disk holding the cache with less free space than the
    /// cache's `min_free_space` setting, by more than evicting the whole tag could give back.
    /// Refused before anything is copied.
    #[error(
        "{what} needs {bytes} bytes, but the disk holding the cache has {free_bytes} bytes \
         free and the min_free_space setting keeps {min_free_bytes} of them free; evicting \
         every entry of tag '{tag}' ({tag_bytes} bytes) would not make room. Free space on \
         that disk, or lower min_free_space"
    )]
    NoDiskRoom {
        /// The tag.
        tag: String,
        /// What was to be stored.
        what: String,
        /// Bytes it needs.
        bytes: u64,
        /// Free bytes on the disk now.
        free_bytes: u64,
        /// What `min_free_space` keeps free there.
        min_free_bytes: u64,
        /// What the tag's entries take (all evictable).
        tag_bytes: u64,
    },

    /// A copy-on-write clone (reflink) asked for where the filesystem cannot make one.
    #[error(
        "cannot clone (reflink) to {path}: {reason}; the filesystem has no copy-on-write clones here, use --link auto or copy"
    )]
    ReflinkUnsupported {
        /// The file that was to be cloned to.
        path: PathBuf,
        /// The system's answer.
        reason: String,
    },

    /// An archive that cannot be read or written (corrupt, truncated, unsupported feature).
    #[error("archive {path}: {message}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// The archive library's message.
        message: String,
    },

    /// A file whose name does not say which archive format it is.
    #[error(
        "unknown archive format for {path}: expected a name ending in .tar.gz, .tgz, .tar or .zip"
    )]
    UnknownArchiveFormat {
        /// The file.
        path: PathBuf,
    },

    /// An input the caller gave that cannot be used (an empty repository name, for example).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What the input is ("repository", "branch", ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A build directory that holds no firmware artifact (`*.uf2`, `*.hex`, ...).
    #[error("no firmware artifacts under {path}")]
    NoArtifacts {
        /// The build directory.
        path: PathBuf,
    },

    /// Metadata that could not be encoded for storing.
    #[error("cannot encode the metadata of {what}")]
    Metadata {
        /// What the metadata describes.
        what: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

fn branch_suffix(branch: &Option<String>) -> String {
    branch
        .as_ref()
        .map(|branch| format!(" and branch {branch:?}"))
        .unwrap_or_default()
}

impl CompilationError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CompilationError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

/// Result alias used throughout `cache-compilation`.
pub type Result<T, E = CompilationError> = std::result::Result<T, E>;
