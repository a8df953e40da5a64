//! Errors of setting a remote up. Errors of using one never reach a caller of the cache: they
//! are logged, counted and turned into misses (see the crate docs).

use std::path::PathBuf;

/// Why a remote could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteSetupError {
    /// A setting is malformed.
    #[error("{variable}: {message}")]
    Invalid {
        /// The variable (or config key) at fault.
        variable: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A key file could not be read or parsed.
    #[error("key file {}: {message}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The endpoint is not one the client understands.
    #[error("remote endpoint `{endpoint}`: {message}")]
    Endpoint {
        /// The endpoint, without credentials.
        endpoint: String,
        /// The client's reason.
        message: String,
    },
}
