//! `clear`: remove every entry, only expired ones (`--expired`), or those stored more than a
//! duration ago (`--older-than`), in one tag or all; asks first on a terminal, needs `--yes`
//! without one.
//!
//! `--expired` runs cache-core's cleanup with no size limit, so it removes expired (and
//! unreadable) entries and never evicts live ones. `--older-than` reads each entry's creation
//! time (`get_metadata`) and deletes the older ones; an entry rewritten between that read and the
//! delete is deleted too.

use std::io::{BufRead, IsTerminal as _, Write};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use cache_core::{CacheOptions, SharedCache, Tag};
use serde::Serialize;

use crate::cli::ClearArgs;
use crate::duration::format_duration;
use crate::exit::UsageError;
use crate::output::Output;
use crate::render;
use crate::root::CacheRoot;

#[derive(Clone, Copy)]
enum Mode {
    All,
    Expired,
    OlderThan(Duration),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::All => "all",
            Mode::Expired => "expired",
            Mode::OlderThan(_) => "older-than",
        }
    }
}

#[derive(Serialize)]
struct ClearReport {
    root: String,
    mode: &'static str,
    older_than_seconds: Option<u64>,
    tags: Vec<TagCleared>,
    removed: u64,
}

#[derive(Serialize)]
struct TagCleared {
    tag: String,
    removed: u64,
}

/// What will be removed from one tag, worked out before asking.
struct Plan {
    tag: Tag,
    cache: SharedCache,
    /// Live entries now (`All`), the old keys (`OlderThan`), unknown until cleanup runs
    /// (`Expired`).
    doomed: Doomed,
}

enum Doomed {
    Everything { entries: u64 },
    Expired,
    Keys(Vec<Vec<u8>>),
}

pub(crate) fn run(root: &CacheRoot, args: &ClearArgs, output: &Output) -> anyhow::Result<()> {
    let mode = match (args.expired, args.older_than) {
        (true, _) => Mode::Expired,
        (false, Some(age)) => Mode::OlderThan(age),
        (false, None) => Mode::All,
    };
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !interactive {
        return Err(UsageError(
            "refusing to clear without confirmation: stdin is not a terminal, so pass --yes to \
             clear without being asked"
                .to_owned(),
        )
        .into());
    }
    let tags = match &args.tag {
        Some(tag) => {
            root.require_tag(tag)?;
            vec![tag.clone()]
        }
        None => root.tags()?,
    };
    if tags.is_empty() {
        output.note(&format!(
            "no tags under {}; nothing to clear",
            root.path().display()
        ))?;
        return print_report(root, mode, Vec::new(), output);
    }
    let plans = tags
        .into_iter()
        .map(|tag| plan(root, tag, mode))
        .collect::<anyhow::Result<Vec<Plan>>>()?;
    if !args.yes {
        let question = describe(&plans, mode, root);
        let confirmed = confirm(
            &question,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        )
        .context("while asking for confirmation")?;
        if !confirmed {
            return output.note("cancelled; nothing was cleared");
        }
    }
    let mut cleared = Vec::new();
    for plan in plans {
        let removed =
            execute(&plan).with_context(|| format!("while clearing tag '{}'", plan.tag))?;
        cleared.push(TagCleared {
            tag: plan.tag.to_string(),
            removed,
        });
    }
    print_report(root, mode, cleared, output)
}

fn plan(root: &CacheRoot, tag: Tag, mode: Mode) -> anyhow::Result<Plan> {
    let (cache, doomed) = match mode {
        Mode::All => {
            let cache = root.open(&tag, root.options_for(&tag))?;
            let entries = cache
                .get_stats()
                .with_context(|| format!("while counting the entries of tag '{tag}'"))?
                .entries;
            (cache, Doomed::Everything { entries })
        }
        Mode::Expired => {
            // Without a size limit, cleanup only removes what is expired or unreadable.
            let options = CacheOptions {
                max_size_bytes: u64::MAX,
                ..root.options_for(&tag)
            };
            (root.open(&tag, options)?, Doomed::Expired)
        }
        Mode::OlderThan(age) => {
            let cache = root.open(&tag, root.options_for(&tag))?;
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let keys = old_keys(&cache, &tag, cutoff)?;
            (cache, Doomed::Keys(keys))
        }
    };
    Ok(Plan { tag, cache, doomed })
}

/// Live keys of `tag` stored before `cutoff`.
fn old_keys(cache: &SharedCache, tag: &Tag, cutoff: SystemTime) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut old = Vec::new();
    let keys = cache
        .keys()
        .with_context(|| format!("while listing the keys of tag '{tag}'"))?;
    for key in keys {
        let metadata = cache.get_metadata(&key).with_context(|| {
            format!(
                "while reading the metadata of key {} in tag '{tag}'",
                render::readable(&key)
            )
        })?;
        if metadata.is_some_and(|metadata| metadata.created < cutoff) {
            old.push(key);
        }
    }
    Ok(old)
}

fn describe(plans: &[Plan], mode: Mode, root: &CacheRoot) -> String {
    let tags: Vec<String> = plans.iter().map(|plan| format!("'{}'", plan.tag)).collect();
    let tags = tags.join(", ");
    let root = root.path().display();
    match mode {
        Mode::All => {
            let entries: u64 = plans
                .iter()
                .map(|plan| match plan.doomed {
                    Doomed::Everything { entries } => entries,
                    _ => 0,
                })
                .sum();
            format!("Remove all {entries} entries of tag(s) {tags} under {root}?")
        }
        Mode::Expired => format!("Remove the expired entries of tag(s) {tags} under {root}?"),
        Mode::OlderThan(age) => {
            let count: usize = plans
                .iter()
                .map(|plan| match &plan.doomed {
                    Doomed::Keys(keys) => keys.len(),
                    _ => 0,
                })
                .sum();
            format!(
                "Remove {count} entries stored more than {} ago from tag(s) {tags} under {root}?",
                format_duration(age)
            )
        }
    }
}

/// Asks `question` on `prompt` and reads the answer from `input`: only `y` or `yes` (any case)
/// is a yes; anything else, or no answer, is a no.
fn confirm(
    question: &str,
    input: &mut impl BufRead,
    prompt: &mut impl Write,
) -> std::io::Result<bool> {
    write!(prompt, "{question} [y/N] ")?;
    prompt.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Carries out a plan; how many entries it removed.
fn execute(plan: &Plan) -> anyhow::Result<u64> {
    let cache = &plan.cache;
    let removed = match &plan.doomed {
        Doomed::Everything { entries } => {
            cache.clear()?;
            *entries
        }
        Doomed::Expired => {
            let report = cache.cleanup()?;
            report.expired + report.unreadable
        }
        Doomed::Keys(keys) => {
            let borrowed: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let removed = cache.delete_many(&borrowed)?;
            cache.flush()?;
            removed as u64
        }
    };
    Ok(removed)
}

fn print_report(
    root: &CacheRoot,
    mode: Mode,
    tags: Vec<TagCleared>,
    output: &Output,
) -> anyhow::Result<()> {
    let removed = tags.iter().map(|tag| tag.removed).sum();
    if output.is_json() {
        return output.json(&ClearReport {
            root: root.path().display().to_string(),
            mode: mode.name(),
            older_than_seconds: match mode {
                Mode::OlderThan(age) => Some(age.as_secs()),
                _ => None,
            },
            tags,
            removed,
        });
    }
    for tag in &tags {
        output.text(&format!("{}: removed {}", tag.tag, tag.removed))?;
    }
    output.note(&format!(
        "removed {} from {}",
        render::count(removed, "entry", "entries"),
        render::count(tags.len() as u64, "tag", "tags")
    ))
}

#[cfg(test)]
mod tests {
    use super::confirm;

    fn answer(typed: &str) -> (bool, String) {
        let mut prompt = Vec::new();
        let yes = confirm("Remove?", &mut typed.as_bytes(), &mut prompt).unwrap();
        (yes, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn only_y_or_yes_confirms() {
        for typed in ["y\n", "Y\n", "yes\n", " YES \n"] {
            assert!(answer(typed).0, "{typed:?}");
        }
        for typed in ["", "\n", "n\n", "no\n", "yep\n", "maybe"] {
            assert!(!answer(typed).0, "{typed:?}");
        }
    }

    #[test]
    fn the_question_is_asked_with_the_default_shown() {
        assert_eq!(answer("n\n").1, "Remove? [y/N] ");
    }
}
