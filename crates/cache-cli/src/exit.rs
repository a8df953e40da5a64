//! Exit codes and the one-line error report: 0 success, 1 not found or miss, 2 usage error,
//! 3 anything else.

use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;

use cache_core::CacheError;

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

/// The exit code for `err`: the first cause that is a known kind decides.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<NotFound>() {
            return 1;
        }
        if cause.is::<UsageError>() {
            return 2;
        }
        if let Some(
            CacheError::InvalidTag { .. }
            | CacheError::EmptyKey { .. }
            | CacheError::KeyTooLarge { .. },
        ) = cause.downcast_ref::<CacheError>()
        {
            return 2;
        }
    }
    3
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

/// Prints `err` as one line on stderr (its context chain joined by `: `) and returns its code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    // If stderr itself is gone there is nowhere left to report to; the exit code still tells.
    let _ = writeln!(std::io::stderr(), "glovebox-cache: {err:#}");
    ExitCode::from(code(err))
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
    }

    #[test]
    fn bad_input_from_the_core_is_a_usage_error() {
        let err = anyhow::Error::new(CacheError::EmptyKey {
            tag: "t".to_owned(),
        });
        assert_eq!(code(&err), 2);
    }
}
