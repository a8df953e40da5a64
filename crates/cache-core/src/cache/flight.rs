//! Single-flight computation: on a miss, exactly one caller on the machine (any thread, any
//! process using the same cache root) runs its computation; the others wait for it and return
//! what it stored. The machinery is `crate::flight`; this is its API.

use std::fmt::Display;
use std::time::Duration;

use super::Cache;
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::flight::{FlightWork, Lookup};

/// On a miss, exactly one caller on the machine (any thread, any process using the same cache
/// root) runs its computation; the others wait for it and return what it stored. Waiting is
/// bounded by the instance's `timeout` ([`CacheError::FlightTimeout`], naming the key and the
/// process computing it). When the computation a caller waited for fails, the caller tries again
/// `flight_retries` times (default once), then returns [`CacheError::ComputationFailed`]. A
/// disabled cache computes every time.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheError, CacheOptions, Coordinator};
///
/// # fn main() -> Result<(), CacheError> {
/// let root = tempfile::tempdir().expect("temp dir");
/// let coordinator = Coordinator::new();
/// let cache = coordinator.get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())?;
/// let ttl = Some(Duration::from_secs(600));
///
/// // However many threads and processes ask at once, one of them renders the thumbnail.
/// let rendered = cache.get_or_compute(b"render:42", ttl, || Ok::<_, CacheError>(b"<svg/>".to_vec()))?;
/// assert_eq!(rendered, b"<svg/>");
/// // Later callers read it; their closure does not run.
/// let again = cache.get_or_compute(b"render:42", ttl, || -> Result<Vec<u8>, CacheError> {
///     unreachable!("the value is cached")
/// })?;
/// assert_eq!(again, rendered);
/// assert_eq!(cache.get_stats()?.counters.computations, 1);
/// # Ok(())
/// # }
/// ```
impl Cache {
    /// The single-flight primitive: `lookup` finds the result (`None` on a miss); on a miss,
    /// one caller on the machine runs `compute`, which must store the result where `lookup` finds
    /// it, and the others wait and then call `lookup` again.
    ///
    /// `lookup` runs before anything else, once more after this caller takes the key's lease,
    /// and after every wait; `compute` runs at most once, and its result (or error) is this
    /// caller's. The error of a computation another caller ran reaches this one as
    /// [`CacheError::ComputationFailed`] with the error's text (hence `E: Display`). If
    /// `compute` panics, the lease is released as failed before the panic goes on, so no waiter
    /// is left hanging. A `compute` that asks for the same key again waits for itself until the
    /// timeout.
    pub fn single_flight<T, E, L, F>(&self, key: &[u8], lookup: L, compute: F) -> Result<T, E>
    where
        E: From<CacheError> + Display,
        L: FnMut() -> Result<Option<T>, E>,
        F: FnOnce() -> Result<T, E>,
    {
        let mut work = Work {
            lookup,
            compute: Some(compute),
            outcome: None,
        };
        let flown = match self.store() {
            Some(store) => store.run_single_flight(key, &mut work),
            None => {
                crate::flight::run_alone(&mut work);
                Ok(())
            }
        };
        match (work.outcome, flown) {
            (Some(outcome), _) => outcome,
            (None, Err(err)) => Err(err.into()),
            // A flight that ends without an answer, which no implementation does: computing
            // is then the answer that is always right.
            (None, Ok(())) => match work.compute {
                Some(compute) => compute(),
                None => Err(CacheError::ComputationFailed {
                    tag: self.tag().to_string(),
                    key: KeyDisplay::new(key),
                    owner_pid: std::process::id(),
                    message: "the computation ended without a result".to_owned(),
                }
                .into()),
            },
        }
    }

    /// The value under `key`, or `compute`'s, which is stored with `ttl`; on a miss, one caller
    /// on the machine computes and the others receive what it stored (see [`Cache::single_flight`]).
    ///
    /// A failure to store the computed value does not lose it: the computing caller gets it and
    /// the failure is logged, since the cache is an optimisation of `compute`, not its owner.
    /// Waiters then find nothing and compute in their turn.
    pub fn get_or_compute<E, F>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<Vec<u8>, E>
    where
        E: From<CacheError> + Display,
        F: FnOnce() -> Result<Vec<u8>, E>,
    {
        self.single_flight(
            key,
            || self.get(key).map_err(E::from),
            || {
                let value = compute()?;
                if let Err(err) = self.set(key, &value, ttl) {
                    tracing::warn!(tag = %self.tag(), key = %KeyDisplay::new(key), error = %ErrorChain(&err), "computed value could not be cached");
                }
                Ok(value)
            },
        )
    }
}

/// [`FlightWork`] from two closures; the caller's answer ends up in `outcome`.
struct Work<L, F, T, E> {
    lookup: L,
    compute: Option<F>,
    outcome: Option<Result<T, E>>,
}

impl<L, F, T, E> FlightWork for Work<L, F, T, E>
where
    E: Display,
    L: FnMut() -> Result<Option<T>, E>,
    F: FnOnce() -> Result<T, E>,
{
    fn look_up(&mut self) -> Lookup {
        match (self.lookup)() {
            Ok(None) => Lookup::Missing,
            found => {
                self.outcome = found.transpose();
                Lookup::Answered
            }
        }
    }

    fn compute(&mut self) -> std::result::Result<(), String> {
        let Some(compute) = self.compute.take() else {
            debug_assert!(false, "a flight computes at most once");
            return Ok(());
        };
        let computed = compute();
        let failure = computed.as_ref().err().map(ToString::to_string);
        self.outcome = Some(computed);
        failure.map_or(Ok(()), Err)
    }
}
