//! Unit tests of the access log: exact counts through sealing and commits, the ring full,
//! readers racing commits, restore and forget, keys of every length.

use super::*;

#[test]
fn repeated_reads_of_one_key_are_counted_exactly_with_the_latest_time() {
    let log = AccessLog::new(0);
    for now in [5, 9, 7] {
        log.record(b"k", now);
    }
    let seen = log.peek(b"k");
    assert_eq!((seen.last_ms, seen.count), (9, 3));
    let taken = log.take();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[&log.hash(b"k")].count, 3);
    assert!(log.is_empty(), "taken");
    assert_eq!(log.peek(b"k").count, 0);
}

#[test]
fn full_tables_are_sealed_in_turn_and_nothing_is_lost_until_the_ring_is_full() {
    let log = AccessLog::new(0);
    // Three tables' worth: sealed in turn, every read kept.
    let keys = 3 * SLOTS;
    for index in 0..keys {
        log.record(&index.to_be_bytes(), 1);
    }
    assert_eq!(log.take_untracked(), 0);
    let taken = log.take();
    assert_eq!(taken.len(), keys);
    assert!(taken.values().all(|delta| delta.count == 1));
    // More distinct keys than the whole ring holds: the rest are counted as untracked,
    // and what was recorded is all there.
    let many = RING * SLOTS;
    for index in 0..many {
        log.record(&(index as u64).to_le_bytes(), 2);
    }
    let untracked = log.take_untracked();
    assert!(untracked > 0, "the ring held {many} keys");
    let taken = log.take();
    assert_eq!(taken.len() as u64 + untracked, many as u64);
    assert!(taken.len() > (RING - 2) * SLOTS / 2, "{} kept", taken.len());
    // The commit emptied the ring: reads are recorded again.
    log.record(b"after", 3);
    assert_eq!(log.take()[&log.hash(b"after")].count, 1);
    assert_eq!(log.take_untracked(), 0);
}

#[test]
fn reads_racing_with_commits_are_each_counted_once() {
    let log = std::sync::Arc::new(AccessLog::new(0));
    // Some keys read over and over, and many read once each (tables sealed meanwhile).
    let readers: Vec<_> = (0..4u64)
        .map(|thread| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for round in 0..10_000u64 {
                    let key = if round % 2 == 0 {
                        (round % 50).to_be_bytes()
                    } else {
                        (thread << 32 | round).to_le_bytes()
                    };
                    log.record(&key, round);
                }
            })
        })
        .collect();
    let mut total = 0;
    while readers.iter().any(|reader| !reader.is_finished()) {
        total += log.take().values().map(|delta| delta.count).sum::<u64>();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    total += log.take().values().map(|delta| delta.count).sum::<u64>();
    assert_eq!(log.take_untracked(), 0);
    assert_eq!(total, 40_000);
}

#[test]
fn restored_reads_are_seen_by_peek_dropped_by_forget_and_taken_again() {
    let log = AccessLog::new(0);
    log.record(b"a", 3);
    log.record(b"b", 4);
    let taken = log.take();
    assert_eq!(taken.len(), 2);
    log.restore(taken);
    log.record(b"a", 8);
    let seen = log.peek(b"a");
    assert_eq!(
        (seen.last_ms, seen.count),
        (8, 2),
        "restored and table merged"
    );
    log.forget([b"b".as_slice()]);
    assert_eq!(log.peek(b"b").count, 0);
    let taken = log.take();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        (taken[&log.hash(b"a")].last_ms, taken[&log.hash(b"a")].count),
        (8, 2)
    );
    assert!(log.is_empty());
}

#[test]
fn a_key_read_after_it_was_forgotten_counts_from_one_and_an_idle_forgotten_slot_is_empty() {
    let log = AccessLog::new(0);
    log.record(b"a", 1);
    log.record(b"a", 2);
    log.forget([b"a".as_slice()]);
    assert_eq!(log.peek(b"a").count, 0);
    assert!(log.is_empty(), "a forgotten slot holds no read");
    log.record(b"a", 5);
    let seen = log.peek(b"a");
    assert_eq!((seen.last_ms, seen.count), (5, 1));
    log.record(b"a", 4);
    let taken = log.take();
    assert_eq!(
        (taken[&log.hash(b"a")].last_ms, taken[&log.hash(b"a")].count),
        (5, 2),
        "an earlier time read later does not move the last access back"
    );
    log.record(b"a", 6);
    assert_eq!(
        log.take()[&log.hash(b"a")].count,
        1,
        "a drained slot starts again"
    );
}

#[test]
fn forgetting_a_key_drops_its_reads_only_in_every_table() {
    let log = AccessLog::new(0);
    log.record(b"a", 1);
    // Seal the table holding `a`'s first read, then read it again in another.
    for index in 0..2 * SLOTS {
        log.record(&index.to_be_bytes(), 1);
    }
    log.record(b"a", 2);
    log.record(b"b", 2);
    assert_eq!(log.peek(b"a").count, 2);
    log.forget([b"a".as_slice()]);
    assert_eq!(log.peek(b"a").count, 0);
    assert_eq!(log.peek(b"b").count, 1);
    let taken = log.take();
    assert!(!taken.contains_key(&log.hash(b"a")));
}

#[test]
fn keys_of_every_length_come_back_intact_from_every_table() {
    let log = AccessLog::new(0);
    // Distinct keys of 8 to 307 bytes, enough to fill several tables.
    let keys: Vec<Vec<u8>> = (0..2 * SLOTS)
        .map(|index| {
            let mut key = (index as u64).to_be_bytes().to_vec();
            key.extend((0..index % 300).map(|at| (at * 7 + index) as u8));
            key
        })
        .chain([vec![0xA5; 4096]])
        .collect();
    for (index, key) in keys.iter().enumerate() {
        log.record(key, index as u64);
    }
    log.record(&keys[0], 1_000_000);
    let taken = log.take();
    assert_eq!(taken.len(), keys.len());
    for (index, key) in keys.iter().enumerate() {
        let delta = taken[&log.hash(key)];
        let expected = if index == 0 {
            (1_000_000, 2)
        } else {
            (index as u64, 1)
        };
        assert_eq!(
            (delta.last_ms, delta.count),
            expected,
            "key of {} bytes",
            key.len()
        );
    }
}

#[test]
fn a_key_read_more_often_than_a_slot_counts_is_counted_exactly() {
    let log = AccessLog::new(0);
    let reads = 2 * SPILL_AT + 3;
    for read in 0..reads {
        log.record(b"hot", read);
    }
    log.record(b"cold", 1);
    let seen = log.peek(b"hot");
    assert_eq!((seen.last_ms, seen.count), (reads - 1, reads));
    let taken = log.take();
    assert_eq!(taken[&log.hash(b"hot")].count, reads);
    assert_eq!(taken[&log.hash(b"hot")].last_ms, reads - 1);
    assert_eq!(taken[&log.hash(b"cold")].count, 1);
    assert!(log.is_empty());
}

#[test]
fn the_ring_records_100_000_distinct_keys_between_two_commits() {
    // The capacity the docs give. With 16 probes in a line, tables were sealed at the first key
    // whose 16 neighbours were taken, about 57 % full: 41 983 of these reads went untracked.
    let log = AccessLog::new(0);
    for index in 0..100_000u64 {
        log.record(&index.to_le_bytes(), 1);
    }
    assert_eq!(log.take_untracked(), 0);
    let taken = log.take();
    assert_eq!(taken.len(), 100_000);
    assert!(taken.values().all(|delta| delta.count == 1));
}

#[test]
fn a_hot_key_read_by_four_threads_past_what_a_slot_counts_is_counted_exactly() {
    // No commit meanwhile: the slot's count reaches `SPILL_AT` twice while four threads add
    // to it, and a commit at the end finds every read.
    let log = std::sync::Arc::new(AccessLog::new(0));
    let per_thread = SPILL_AT / 2 + 7;
    let readers: Vec<_> = (0..4u64)
        .map(|_| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for read in 0..per_thread {
                    log.record(b"hot", read);
                }
            })
        })
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(log.peek(b"hot").count, 4 * per_thread);
    let taken = log.take();
    assert_eq!(taken[&log.hash(b"hot")].count, 4 * per_thread);
    assert_eq!(log.take_untracked(), 0);
}

#[test]
fn a_hash_s_top_40_bits_are_never_zero_so_a_claimed_slot_is_never_free() {
    // A slot whose tag is 0 is free: a forgotten slot (count 0) must keep a nonzero tag.
    assert_eq!(with_tag_bits(0), 1 << 63);
    assert_eq!(with_tag_bits(COUNT_MASK), 1 << 63 | COUNT_MASK);
    assert_eq!(with_tag_bits(1 << COUNT_BITS), 1 << COUNT_BITS);
    assert_eq!(tag_of(0xABCD_EF01_2345_6789), 0xABCD_EF01_2300_0000);
    let hasher = AccessHasher::new([1, 2]);
    for index in 0..10_000u32 {
        assert_ne!(tag_of(hasher.hash(&index.to_le_bytes())), 0);
    }
}

#[test]
fn a_slot_s_two_words_give_back_the_whole_hash_and_the_time() {
    for hash in [1 << 63, 0xABCD_EF01_2345_6789, u64::MAX, 1 << COUNT_BITS] {
        for stamp in [0, 1, 12_345, TIME_MASK] {
            let last = last_of(hash, stamp);
            assert_eq!(hash_of(tag_of(hash) | 77, last), hash);
            assert_eq!(last & TIME_MASK, stamp);
        }
    }
    // Times are kept to the millisecond within 2^39 ms of the log's creation, clamped outside.
    let now = 1_800_000_000_000;
    let log = AccessLog::new(now);
    for at in [
        now,
        now - 1,
        now + 86_400_000,
        now - STAMP_BACK_MS,
        now + STAMP_BACK_MS - 2,
    ] {
        let reads = Stamped {
            stamp: log.stamp(at),
            count: 1,
        };
        assert_eq!(log.unstamp(reads).last_ms, at);
    }
    let before = Stamped {
        stamp: log.stamp(0),
        count: 1,
    };
    assert_eq!(log.unstamp(before).last_ms, now - STAMP_BACK_MS);
    let after = Stamped {
        stamp: log.stamp(u64::MAX),
        count: 1,
    };
    assert_eq!(
        log.unstamp(after).last_ms,
        now - STAMP_BACK_MS + TIME_MASK - 1
    );
}

#[test]
fn the_access_hash_is_the_file_format_s_and_depends_on_the_seeds_only() {
    // Every process computes it from the file's seeds: fixed values, so that a change to the
    // function (which would orphan every stored record) fails here.
    let hasher = AccessHasher::new([0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210]);
    let pinned: Vec<u64> = [&b""[..], b"k", b"key-000001", &[0xA5; 33]]
        .iter()
        .map(|key| hasher.hash(key))
        .collect();
    assert_eq!(pinned, PINNED_HASHES);
    let other = AccessHasher::new([0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3211]);
    assert_ne!(other.hash(b"k"), hasher.hash(b"k"));
    // Keys that differ only by trailing zeros differ.
    assert_ne!(hasher.hash(b"k"), hasher.hash(b"k\0"));
    // A log records by the seeds it is told to use.
    let log = AccessLog::new(0);
    log.use_seeds(hasher.seeds());
    assert_eq!(log.hash(b"k"), hasher.hash(b"k"));
}

const PINNED_HASHES: [u64; 4] = [
    875_849_263_806_882_190,
    2_545_971_724_083_334_594,
    2_145_385_510_009_575,
    15_610_827_913_997_882_628,
];

#[test]
fn forget_and_peek_find_reads_in_tables_that_wrap_around_the_ring() {
    let log = AccessLog::new(0);
    // Commits move readers on one table each: after RING - 1 of them the active table is the
    // ring's last, and two seals carry it past the end to the first ones.
    for _ in 0..RING - 1 {
        log.record(b"earlier", 1);
        assert_eq!(log.take().len(), 1);
    }
    log.record(b"a", 2);
    for index in 0..2 * SLOTS {
        log.record(&index.to_be_bytes(), 3);
    }
    log.record(b"a", 4);
    log.record(b"b", 4);
    assert!(
        log.active.load(Ordering::SeqCst) < log.oldest.load(Ordering::SeqCst),
        "the tables in use wrap around the ring's end"
    );
    let seen = log.peek(b"a");
    assert_eq!((seen.last_ms, seen.count), (4, 2));
    log.forget([b"a".as_slice()]);
    assert_eq!(log.peek(b"a").count, 0);
    assert_eq!(log.peek(b"b").count, 1);
    let taken = log.take();
    assert!(!taken.contains_key(&log.hash(b"a")));
    assert_eq!(taken[&log.hash(b"b")].count, 1);
    assert_eq!(taken.len(), 2 * SLOTS + 1);
}
