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

#[rstest]
fn cleanup_with_compaction_due_while_threads_read_never_deadlocks(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "threads", CacheOptions::default());
    // 32 MiB of inline values, then most of them deleted: compaction is due.
    for index in 0..160u32 {
        cache
            .set(&index.to_be_bytes(), &vec![index as u8; 200 * 1024], None)
            .unwrap();
    }
    cache.flush().unwrap();
    let doomed: Vec<[u8; 4]> = (1..160u32).map(u32::to_be_bytes).collect();
    let doomed: Vec<&[u8]> = doomed.iter().map(|key| key.as_slice()).collect();
    cache.delete_many(&doomed).unwrap();
    cache.flush().unwrap();

    // Detached threads, not scoped ones: a deadlocked thread must not keep the test waiting at
    // a join, so the main thread gives up after a bounded wait and fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (cache, stop) = (cache.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let value = cache.get(&0u32.to_be_bytes()).unwrap();
                    assert_eq!(value.map(|value| value.len()), Some(200 * 1024));
                }
            })
        })
        .collect();
    let (done, finished) = std::sync::mpsc::channel();
    let cleaner = cache.clone();
    std::thread::spawn(move || done.send(cleaner.cleanup()));
    let report = finished
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("cleanup did not finish: deadlock")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(
        matches!(
            report.compaction,
            cache_core::Compaction::Compacted { .. } | cache_core::Compaction::Skipped(_)
        ),
        "{:?}",
        report.compaction
    );
    assert_eq!(
        cache.get(&0u32.to_be_bytes()).unwrap().map(|v| v.len()),
        Some(200 * 1024)
    );
}
