//! `config`: the effective configuration and where each setting came from (the defaults, the
//! configuration file, an environment variable, or the command line), as
//! `git config --list --show-origin` shows git's.

use serde::Serialize;

use crate::output::Output;
use crate::root::CacheRoot;

#[derive(Serialize)]
struct ConfigReport<'a> {
    /// The configuration file looked for.
    file: Option<String>,
    /// Whether it was there.
    file_found: bool,
    settings: &'a [cache_core::ConfigSetting],
}

pub(crate) fn run(root: &CacheRoot, output: &Output) -> anyhow::Result<()> {
    let explained = root.explained();
    if output.is_json() {
        return output.json(&ConfigReport {
            file: explained
                .file
                .as_ref()
                .map(|path| path.display().to_string()),
            file_found: explained.file_found,
            settings: &explained.settings,
        });
    }
    match (&explained.file, explained.file_found) {
        (Some(path), true) => output.note(&format!("config file: {}", path.display()))?,
        (Some(path), false) => {
            output.note(&format!("config file: {} (not there)", path.display()))?;
        }
        (None, _) => {
            output.note("config file: none (no GLOVEBOX_CACHE_CONFIG, XDG_CONFIG_HOME or HOME)")?
        }
    }
    let lines: Vec<String> = explained
        .settings
        .iter()
        .map(|setting| format!("{}\t{}={}", setting.origin, setting.key, setting.value))
        .collect();
    output.text(&lines.join("\n"))
}
