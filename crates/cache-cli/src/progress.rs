//! A progress bar for long copies (`workspace add`, `import`, `export`, `restore`): drawn on
//! stderr, only when stderr is a terminal and `--quiet` is not given, so that pipes, logs and
//! tests never see it; and [`EtaEstimator`], the time left, from bytes and files both.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use cache_compilation::{Progress, ProgressStage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::duration::format_duration;
use crate::output::Output;

/// No estimate before this much time has passed: the first files (a directory listing, a cold
/// cache) say little about the rest (issue 19: "7m left" for a 2 s import).
const MIN_ELAPSED: Duration = Duration::from_secs(1);
/// No estimate before this many samples.
const MIN_SAMPLES: u32 = 3;
/// No estimate before this share of the bytes or of the files is done.
const MIN_FRACTION: f64 = 0.01;
/// Samples are taken at most this often, so that thousands of tiny files do not outweigh the
/// seconds spent on one large one.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The time left of a copy, from the bytes and the files done so far, both.
///
/// Copying costs time per byte and time per file (opening, creating, setting modes); which one
/// dominates changes within one workspace (a pack file of a gigabyte, then thousands of
/// headers). The model is `elapsed = a * bytes_fraction + b * files_fraction`, fitted by least
/// squares (through the origin, `a` and `b` not negative) over samples of the copy so far; the
/// time left is `a * bytes_left + b * files_left`, in fractions. So "0s left" cannot be shown
/// while thousands of files remain after the bytes are done (issue 19), and a copy of one large
/// file estimates from its bytes, which move during the file. Hidden (`None`) until
/// [`MIN_ELAPSED`], [`MIN_SAMPLES`] and [`MIN_FRACTION`] are reached. A pure function of the
/// samples it is given: times are passed in, so tests drive it with a fake clock.
#[derive(Clone, Debug, Default)]
pub(crate) struct EtaEstimator {
    sums: Sums,
    samples: u32,
    last_sample: Option<Duration>,
}

/// Running sums of the least-squares fit: `x` bytes fraction, `y` files fraction, `t` seconds.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    xx: f64,
    xy: f64,
    yy: f64,
    xt: f64,
    yt: f64,
}

/// The bytes and files fractions done (1 when there is nothing of a kind to do).
fn fractions(progress: &Progress) -> (f64, f64) {
    let fraction = |done: u64, total: u64| {
        if total == 0 {
            1.0
        } else {
            (done as f64 / total as f64).min(1.0)
        }
    };
    (
        fraction(progress.bytes_done, progress.bytes_total),
        fraction(progress.files_done, progress.files_total),
    )
}

impl EtaEstimator {
    /// Records `progress` as it was `elapsed` after the copy started.
    pub(crate) fn observe(&mut self, elapsed: Duration, progress: &Progress) {
        if self
            .last_sample
            .is_some_and(|last| elapsed < last + SAMPLE_INTERVAL)
        {
            return;
        }
        let (x, y) = fractions(progress);
        let t = elapsed.as_secs_f64();
        let sums = &mut self.sums;
        sums.xx += x * x;
        sums.xy += x * y;
        sums.yy += y * y;
        sums.xt += x * t;
        sums.yt += y * t;
        self.samples += 1;
        self.last_sample = Some(elapsed);
    }

    /// The time left at `elapsed` with `progress` done; `None` while no estimate is
    /// meaningful yet.
    pub(crate) fn remaining(&self, elapsed: Duration, progress: &Progress) -> Option<Duration> {
        if progress.is_complete() {
            return Some(Duration::ZERO);
        }
        let (x, y) = fractions(progress);
        if elapsed < MIN_ELAPSED || self.samples < MIN_SAMPLES || x.max(y) < MIN_FRACTION {
            return None;
        }
        let (a, b) = self.fit()?;
        let left = a * (1.0 - x) + b * (1.0 - y);
        left.is_finite()
            .then(|| Duration::from_secs_f64(left.clamp(0.0, 1e9)))
    }

    /// `(a, b)`, seconds per whole of the bytes and of the files; `None` without data.
    fn fit(&self) -> Option<(f64, f64)> {
        let Sums { xx, xy, yy, xt, yt } = self.sums;
        let det = xx * yy - xy * xy;
        // Both kinds moved independently enough to tell their costs apart.
        if det > 1e-6 * xx * yy {
            let a = (xt * yy - yt * xy) / det;
            let b = (yt * xx - xt * xy) / det;
            if a >= 0.0 && b >= 0.0 {
                return Some((a, b));
            }
        }
        // One kind alone: the one whose cost explains the time best (the larger share of
        // the time it accounts for: xt²/xx against yt²/yy).
        let bytes_only = (xx > 0.0).then(|| (xt / xx, xt * xt / xx));
        let files_only = (yy > 0.0).then(|| (yt / yy, yt * yt / yy));
        match (bytes_only, files_only) {
            (Some((a, by_bytes)), Some((b, by_files))) => Some(if by_bytes >= by_files {
                (a.max(0.0), 0.0)
            } else {
                (0.0, b.max(0.0))
            }),
            (Some((a, _)), None) => Some((a.max(0.0), 0.0)),
            (None, Some((b, _))) => Some((0.0, b.max(0.0))),
            (None, None) => None,
        }
    }
}

/// Feeds cache-compilation's progress callbacks to a bar, created at the first report (when the
/// totals are known) and cleared when done or dropped.
pub(crate) struct CopyProgress {
    target: Option<fn() -> ProgressDrawTarget>,
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    eta: EtaEstimator,
}

impl CopyProgress {
    /// A bar on stderr if it is a terminal and notes are not silenced; otherwise nothing.
    pub(crate) fn new(output: &Output) -> Self {
        let drawn = !output.is_quiet() && std::io::stderr().is_terminal();
        CopyProgress {
            target: drawn.then_some(ProgressDrawTarget::stderr as fn() -> ProgressDrawTarget),
            bar: None,
            started: None,
            eta: EtaEstimator::default(),
        }
    }

    /// One report from cache-compilation.
    pub(crate) fn update(&mut self, progress: Progress) {
        let Some(target) = self.target else {
            return;
        };
        let bar = self.bar.get_or_insert_with(|| {
            let style = ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes}")
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
        let elapsed = self.started.get_or_insert_with(Instant::now).elapsed();
        self.eta.observe(elapsed, &progress);
        let left = self
            .eta
            .remaining(elapsed, &progress)
            .map_or_else(String::new, |left| {
                format!(", {} left", format_duration(round_up_to_second(left)))
            });
        bar.set_message(format!(
            "{stage} {}/{} files{left}",
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

/// Whole seconds, rounded up: "0s left" only when nothing is.
fn round_up_to_second(duration: Duration) -> Duration {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Duration::from_secs(seconds)
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
            started: None,
            eta: EtaEstimator::default(),
        };
        progress.update(report(0));
        progress.update(report(3));
        let bar = progress.bar.clone().unwrap();
        assert_eq!((bar.position(), bar.length()), (300, Some(400)));
        assert_eq!(bar.message(), "copying 3/4 files", "no time left shown yet");
        progress.finish();
        assert!(bar.is_finished());
    }

    fn at(files_done: u64, files_total: u64, bytes_done: u64, bytes_total: u64) -> Progress {
        Progress {
            stage: ProgressStage::Copying,
            files_done,
            files_total,
            bytes_done,
            bytes_total,
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Issue 19: "7m left" for a 2 s import. Nothing is shown before a second has passed, a
    /// few samples are in, and a hundredth of the work is done.
    #[test]
    fn the_estimate_is_hidden_until_it_means_something() {
        let mut eta = EtaEstimator::default();
        // A slow start: 1 file of 1000 in the first 900 ms.
        for (t, done) in [(0, 0), (300, 0), (600, 1), (900, 1)] {
            eta.observe(ms(t), &at(done, 1000, done * 10, 10_000));
            assert_eq!(
                eta.remaining(ms(t), &at(done, 1000, done * 10, 10_000)),
                None,
                "{t} ms"
            );
        }
        eta.observe(ms(1200), &at(5, 1000, 50, 10_000));
        assert_eq!(
            eta.remaining(ms(1200), &at(5, 1000, 50, 10_000)),
            None,
            "under 1 % done"
        );
        eta.observe(ms(1500), &at(20, 1000, 200, 10_000));
        assert!(
            eta.remaining(ms(1500), &at(20, 1000, 200, 10_000))
                .is_some()
        );
        assert_eq!(
            eta.remaining(ms(1600), &at(1000, 1000, 10_000, 10_000)),
            Some(Duration::ZERO)
        );
    }

    /// A steady copy (bytes and files in step, 10 % a second) is estimated right.
    #[test]
    fn a_steady_copy_is_estimated_from_its_rate() {
        let mut eta = EtaEstimator::default();
        for step in 0..=30 {
            let done = step * 10; // 10 files (1 % of 1000) per 100 ms
            eta.observe(ms(step * 100), &at(done, 1000, done * 1000, 1_000_000));
        }
        let left = eta
            .remaining(ms(3000), &at(300, 1000, 300_000, 1_000_000))
            .unwrap();
        assert!((6.5..7.5).contains(&left.as_secs_f64()), "{left:?}");
    }

    /// Issue 19: "0s left" for over a second while 2 700 files remained. A workspace whose
    /// bytes are mostly one pack file, then thousands of small files: once the bytes are done,
    /// the files left still count.
    #[test]
    fn files_left_count_when_the_bytes_are_done() {
        let (files, bytes) = (3000u64, 1_000_000_000u64);
        let mut eta = EtaEstimator::default();
        // 2 s on one 900 MB file (reported as it goes), then 1000 small files a second.
        for step in 0..=20 {
            eta.observe(ms(step * 100), &at(0, files, step * 45_000_000, bytes));
        }
        let mut last = Duration::ZERO;
        for step in 1..=10 {
            let done = 1 + step * 100;
            let progress = at(done, files, 900_000_000 + done * 33_000, bytes);
            eta.observe(ms(2000 + step * 100), &progress);
            last = eta.remaining(ms(2000 + step * 100), &progress).unwrap();
        }
        // At 3 s: 1001 files done, 1999 left at 1000 a second: about 2 s, not 0.
        assert!(
            (1.0..4.0).contains(&last.as_secs_f64()),
            "{last:?} for 1999 files left"
        );
    }

    /// Issue 19: the estimate froze on a large file. Fed the bytes as they are copied, it moves
    /// during the file.
    #[test]
    fn the_estimate_moves_during_a_large_file() {
        let mut eta = EtaEstimator::default();
        let mut seen = Vec::new();
        for step in 0..=40 {
            // One 4 GB file of a 2-file copy, 100 MB per 100 ms.
            let progress = at(0, 2, step * 100_000_000, 4_000_000_100);
            eta.observe(ms(step * 100), &progress);
            if let Some(left) = eta.remaining(ms(step * 100), &progress) {
                seen.push(left);
            }
        }
        assert!(seen.len() > 20, "{seen:?}");
        assert!(
            seen.windows(2).all(|pair| pair[1] < pair[0]),
            "always moving down: {seen:?}"
        );
    }

    #[test]
    fn time_left_is_rounded_up_to_whole_seconds() {
        assert_eq!(round_up_to_second(ms(1)), Duration::from_secs(1));
        assert_eq!(round_up_to_second(ms(2000)), Duration::from_secs(2));
        assert_eq!(round_up_to_second(Duration::ZERO), Duration::ZERO);
    }
}
