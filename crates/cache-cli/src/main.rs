//! The `glovebox-cache` binary: everything is in the library (`src/lib.rs`), so that `xtask`
//! can read the clap definition to write man pages.

use std::process::ExitCode;

fn main() -> ExitCode {
    cache_cli::main()
}
