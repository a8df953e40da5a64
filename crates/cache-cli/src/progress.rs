//! A progress bar for long copies (`workspace add`, `import`, `export`): drawn on stderr, only
//! when stderr is a terminal and `--quiet` is not given, so that pipes, logs and tests never
//! see it.

use std::io::IsTerminal as _;

use cache_compilation::{Progress, ProgressStage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Output;

/// Feeds cache-compilation's progress callbacks to a bar, created at the first report (when the
/// totals are known) and cleared when done or dropped.
pub(crate) struct CopyProgress {
    target: Option<fn() -> ProgressDrawTarget>,
    bar: Option<ProgressBar>,
}

impl CopyProgress {
    /// A bar on stderr if it is a terminal and notes are not silenced; otherwise nothing.
    pub(crate) fn new(output: &Output) -> Self {
        let drawn = !output.is_quiet() && std::io::stderr().is_terminal();
        CopyProgress {
            target: drawn.then_some(ProgressDrawTarget::stderr as fn() -> ProgressDrawTarget),
            bar: None,
        }
    }

    /// One report from cache-compilation.
    pub(crate) fn update(&mut self, progress: Progress) {
        let Some(target) = self.target else {
            return;
        };
        let bar = self.bar.get_or_insert_with(|| {
            let style = ProgressStyle::with_template(
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(progress.bytes_total), target()).with_style(style)
        });
        let stage = match progress.stage {
            ProgressStage::Copying => "copying",
            ProgressStage::Exporting => "exporting",
            ProgressStage::Extracting => "extracting",
            _ => "working",
        };
        bar.set_length(progress.bytes_total);
        bar.set_position(progress.bytes_done);
        bar.set_message(format!(
            "{stage} {}/{} files",
            progress.files_done, progress.files_total
        ));
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for CopyProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(done: u64) -> Progress {
        Progress {
            stage: ProgressStage::Copying,
            files_done: done,
            files_total: 4,
            bytes_done: done * 100,
            bytes_total: 400,
        }
    }

    #[test]
    fn without_a_terminal_no_bar_is_made() {
        let mut progress = CopyProgress::new(&Output::new(false, false));
        progress.update(report(1));
        assert!(progress.bar.is_none(), "tests never run on a terminal");
    }

    #[test]
    fn a_drawn_bar_follows_the_bytes_and_is_cleared_at_the_end() {
        let mut progress = CopyProgress {
            target: Some(ProgressDrawTarget::hidden),
            bar: None,
        };
        progress.update(report(0));
        progress.update(report(3));
        let bar = progress.bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (300, Some(400)));
        assert_eq!(bar.message(), "copying 3/4 files");
        progress.finish();
        assert!(bar.is_finished());
    }
}
