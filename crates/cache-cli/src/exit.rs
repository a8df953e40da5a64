//! Exit codes and the one-line error report: 0 success, 1 not found or miss, 2 usage error,
//! 3 anything else (for `doctor`: damage left), 4 `doctor` could not check a tag.

use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;

use cache_compilation::CompilationError;
use cache_core::CacheError;

use crate::output::Output;

/// A tag or key that does not exist (exit code 1). The message is the whole sentence.
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// A command line that cannot be carried out as given (exit code 2), beyond what clap checks.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `doctor` could not check a tag (exit code 4): nothing damaged was found, but a check could not
/// look, so the tag's health is unknown. The message says what happened.
#[derive(Debug)]
pub(crate) struct NotChecked(pub(crate) String);

impl fmt::Display for NotChecked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotChecked {}

/// The exit code for `err`: the first cause that is a known kind decides.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<NotFound>() {
            return 1;
        }
        if cause.is::<UsageError>() {
            return 2;
        }
        if cause.is::<NotChecked>() {
            return 4;
        }
        if let Some(code) = cause
            .downcast_ref::<CacheError>()
            .and_then(cache_error_code)
        {
            return code;
        }
        if let Some(code) = cause
            .downcast_ref::<CompilationError>()
            .and_then(compilation_error_code)
        {
            return code;
        }
    }
    3
}

/// Bad input to the core is a usage error.
fn cache_error_code(err: &CacheError) -> Option<u8> {
    match err {
        CacheError::InvalidTag { .. }
        | CacheError::EmptyKey { .. }
        | CacheError::KeyTooLarge { .. }
        | CacheError::ConfigFile { .. }
        | CacheError::InvalidTtl { .. } => Some(2),
        _ => None,
    }
}

/// A workspace that is not cached is a miss; a repository name, path or archive name that
/// cannot be used is a usage error. I/O failures (a path that does not exist or cannot be
/// read), damaged or unsafe archives and storage errors are other errors.
fn compilation_error_code(err: &CompilationError) -> Option<u8> {
    match err {
        CompilationError::WorkspaceNotCached { .. } => Some(1),
        CompilationError::InvalidInput { .. }
        | CompilationError::NotAWorkspace { .. }
        | CompilationError::UnknownArchiveFormat { .. } => Some(2),
        // Transparent: the inner error is not in the source chain, so look at it here.
        CompilationError::Cache(inner) => cache_error_code(inner),
        _ => None,
    }
}

/// Whether `err` comes from writing to a closed pipe (`glovebox-cache keys | head`), which is not
/// a failure of this program.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The kind of failure `err` is, for `--json`'s `error.kind`: `not_found` (a tag, key or
/// workspace that is not there, a miss), `usage` (bad input), `config` (a bad configuration
/// file), `not_checked` (doctor could not check a tag), `io` (a file or stream could not be
/// read or written), or `other`. The first cause of a known kind decides, as for [`code`].
pub(crate) fn kind(err: &anyhow::Error) -> &'static str {
    for cause in err.chain() {
        if cause.is::<NotFound>() {
            return "not_found";
        }
        if cause.is::<UsageError>() {
            return "usage";
        }
        if cause.is::<NotChecked>() {
            return "not_checked";
        }
        if let Some(cache) = cause.downcast_ref::<CacheError>() {
            match cache {
                CacheError::ConfigFile { .. } => return "config",
                _ if cache_error_code(cache) == Some(2) => return "usage",
                _ => {}
            }
        }
        if let Some(code) = cause
            .downcast_ref::<CompilationError>()
            .and_then(compilation_error_code)
        {
            return if code == 1 { "not_found" } else { "usage" };
        }
        if cause.is::<std::io::Error>() {
            return "io";
        }
    }
    "other"
}

/// `{"error": {"kind", "message", "exit_code"}}`: what `--json` prints on stdout for a failure.
pub(crate) fn json_report(kind: &str, message: &str, exit_code: u8) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "kind": kind,
            "message": message,
            "exit_code": exit_code,
        }
    })
}

/// Prints `err` as one line on stderr (its context chain joined by `: `) and returns its code.
/// With `--json`, unless the command already wrote its JSON document, the error is also written
/// on stdout as [`json_report`], so that stdout is always exactly one JSON document.
pub(crate) fn report(err: &anyhow::Error, output: &Output) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let code = code(err);
    if output.is_json() && !output.wrote_json() {
        // A failure to write it is a failure to write stdout; the line on stderr and the exit
        // code still tell.
        let _ = output.json(&json_report(kind(err), &format!("{err:#}"), code));
    }
    // If stderr itself is gone there is nowhere left to report to; the exit code still tells.
    let _ = writeln!(std::io::stderr(), "glovebox-cache: {err:#}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn the_innermost_known_kind_decides_through_context() {
        let not_found = Err::<(), _>(NotFound("no such tag 'x'".to_owned()))
            .context("while listing keys")
            .unwrap_err();
        assert_eq!(code(&not_found), 1);
        let usage = anyhow::Error::new(UsageError("pass --yes".to_owned()));
        assert_eq!(code(&usage), 2);
        let other = anyhow::anyhow!("disk on fire");
        assert_eq!(code(&other), 3);
        let unknown = anyhow::Error::new(NotChecked("could not check tag 'x'".to_owned()));
        assert_eq!(code(&unknown), 4);
    }

    #[test]
    fn workspace_errors_map_to_miss_usage_or_other() {
        let not_cached = anyhow::Error::new(CompilationError::WorkspaceNotCached {
            repository: "r".to_owned(),
            branch: None,
        })
        .context("while exporting");
        assert_eq!(code(&not_cached), 1);
        let not_a_workspace = anyhow::Error::new(CompilationError::NotAWorkspace {
            path: "/x".into(),
            reason: "it has no zmk/ directory".to_owned(),
        });
        assert_eq!(code(&not_a_workspace), 2);
        let wrapped_tag = anyhow::Error::new(CompilationError::Cache(CacheError::InvalidTag {
            tag: "X".to_owned(),
            reason: "upper case",
        }));
        assert_eq!(code(&wrapped_tag), 2);
        let archive = anyhow::Error::new(CompilationError::Archive {
            path: "/a.zip".into(),
            message: "truncated".to_owned(),
        });
        assert_eq!(code(&archive), 3);
    }

    #[test]
    fn bad_input_from_the_core_is_a_usage_error() {
        let err = anyhow::Error::new(CacheError::EmptyKey {
            tag: "t".to_owned(),
        });
        assert_eq!(code(&err), 2);
    }
}
