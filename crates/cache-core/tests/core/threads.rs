//! Many threads sharing one instance.

use std::sync::Barrier;

use cache_core::{CacheOptions, Coordinator};
use rstest::rstest;
use tempfile::TempDir;

use crate::{coordinator, open, root};

const THREADS: usize = 8;
const WRITES_PER_THREAD: usize = 100;

#[rstest]
fn eight_threads_share_one_instance_and_every_write_is_readable(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "threads", CacheOptions::default());
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (cache, barrier) = (&cache, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for index in 0..WRITES_PER_THREAD {
                    let key = format!("{thread}:{index}");
                    cache
                        .set(key.as_bytes(), key.repeat(3).as_bytes(), None)
                        .unwrap();
                    // Interleave reads of this thread's own earlier writes.
                    let earlier = format!("{thread}:{}", index / 2);
                    assert_eq!(
                        cache.get(earlier.as_bytes()).unwrap(),
                        Some(earlier.repeat(3).into_bytes())
                    );
                }
            });
        }
    });
    for thread in 0..THREADS {
        for index in 0..WRITES_PER_THREAD {
            let key = format!("{thread}:{index}");
            assert_eq!(
                cache.get(key.as_bytes()).unwrap(),
                Some(key.repeat(3).into_bytes()),
                "{key}"
            );
        }
    }
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.entries, (THREADS * WRITES_PER_THREAD) as u64);
    assert_eq!(stats.counters.sets, (THREADS * WRITES_PER_THREAD) as u64);
    assert_eq!(stats.counters.errors, 0);
}
