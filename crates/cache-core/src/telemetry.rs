//! Operation counts and timings through the `metrics` facade, as the original pushed them: an
//! application that installs a recorder (a Prometheus, OpenTelemetry or statsd exporter) gets
//! them with no code here; without one they cost a branch per operation.
//!
//! - `glovebox_cache_operations_total{tag, operation, result}`: every operation, `result` `ok`
//!   or `error`;
//! - `glovebox_cache_operation_duration_seconds{tag, operation}`: a histogram of operation
//!   times (every operation the store times: reads time one in 16 of themselves, other
//!   operations all; the same samples its `operation_time_ns` counts);
//! - `glovebox_cache_requests_total{tag, result}`: reads, `result` `hit` or `miss`;
//! - `glovebox_cache_errors_total{tag, operation}`.
//!
//! Handles are registered once, when the instance opens, for the fixed set of operations the
//! store measures: **install the recorder before the first cache opens** (as `metrics`
//! recorders expect); an instance opened before that reports nothing. A leaf.

use std::time::Duration;

use metrics::{Counter, Histogram};

/// The operations the store measures, as they appear in the `operation` label.
const OPERATIONS: [&str; 10] = [
    "get",
    "set",
    "delete",
    "exists",
    "clear",
    "keys",
    "get_metadata",
    "get_stats",
    "cleanup",
    "flush",
];

struct Operation {
    ok: Counter,
    error: Counter,
    errors: Counter,
    duration: Histogram,
}

/// One instance's handles (counters and a histogram per operation).
pub(crate) struct Telemetry {
    operations: Vec<Operation>,
    hits: Counter,
    misses: Counter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Registers the handles of `tag` with the recorder installed now (none: no-op handles).
    pub(crate) fn register(tag: &str) -> Self {
        let operations = OPERATIONS
            .iter()
            .map(|&operation| {
                let tag = tag.to_owned();
                Operation {
                    ok: metrics::counter!("glovebox_cache_operations_total", "tag" => tag.clone(), "operation" => operation, "result" => "ok"),
                    error: metrics::counter!("glovebox_cache_operations_total", "tag" => tag.clone(), "operation" => operation, "result" => "error"),
                    errors: metrics::counter!("glovebox_cache_errors_total", "tag" => tag.clone(), "operation" => operation),
                    duration: metrics::histogram!("glovebox_cache_operation_duration_seconds", "tag" => tag, "operation" => operation),
                }
            })
            .collect();
        Telemetry {
            operations,
            hits: metrics::counter!("glovebox_cache_requests_total", "tag" => tag.to_owned(), "result" => "hit"),
            misses: metrics::counter!("glovebox_cache_requests_total", "tag" => tag.to_owned(), "result" => "miss"),
        }
    }

    /// Counts one `operation` (one of the measured set; another name is ignored) and, when it
    /// was timed, its duration.
    pub(crate) fn operation(&self, operation: &str, ok: bool, timed: Option<Duration>) {
        let Some(index) = OPERATIONS.iter().position(|&known| known == operation) else {
            debug_assert!(false, "unmeasured operation {operation}");
            return;
        };
        let handles = &self.operations[index];
        if ok {
            handles.ok.increment(1);
        } else {
            handles.error.increment(1);
            handles.errors.increment(1);
        }
        if let Some(took) = timed {
            handles.duration.record(took.as_secs_f64());
        }
    }

    /// Counts a read as a hit or a miss.
    pub(crate) fn read(&self, hit: bool) {
        if hit {
            self.hits.increment(1);
        } else {
            self.misses.increment(1);
        }
    }
}
