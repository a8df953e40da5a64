//! The entry decoder and the input parsers on thousands of random and mutated inputs, on the
//! stable toolchain: the same properties the cargo-fuzz targets in `fuzz/` check on nightly
//! (`cache_core::fuzzing`), so that CI exercises them without nightly.
//!
//! Case counts: `PROPTEST_CASES` per property if set (`cargo xtask soak` sets it), else the
//! defaults below. A failing input is shrunk and kept in `tests/proptest-regressions/`.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::ValueFormat;
use cache_core::fuzzing::{
    CODECS, EntryFields, KINDS, check_damage_detected, check_entry_bytes, check_entry_round_trip,
    check_key_display, check_tag, encode_entry,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// A runner with `default_cases` cases unless `PROPTEST_CASES` says otherwise. Failures are
/// persisted in `tests/proptest-regressions/decoder.txt` (tests run from the package directory)
/// and replayed first by every later run.
fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/decoder.txt",
        ))),
        ..Config::default()
    })
}

/// Runs `check` on `cases` inputs from `strategy`, failing the test with the shrunk input on the
/// first violation; returns how many inputs were tried, for the test's summary line.
fn run<S: Strategy>(
    default_cases: u32,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<(), String>,
) -> u64 {
    let tried = AtomicU64::new(0);
    let result = runner(default_cases).run(&strategy, |input| {
        tried.fetch_add(1, Ordering::Relaxed);
        check(&input).map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    tried.into_inner()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..24)
}

fn entry_fields() -> impl Strategy<Value = EntryFields> {
    (
        0..KINDS.len(),
        0..CODECS.len(),
        any::<u32>(),
        any::<u64>(),
        prop_oneof![Just(None), (1..=u64::MAX).prop_map(Some)],
    )
        .prop_map(
            |(kind, codec, schema_version, created_ms, expires_ms)| EntryFields {
                kind: KINDS[kind],
                format: ValueFormat {
                    codec: CODECS[codec],
                    schema_version,
                },
                created_ms,
                expires_ms,
            },
        )
}

/// How a valid encoding is damaged.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Truncate { to: usize },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    SetFormat(u8),
    SetCodec(u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=u8::MAX).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<u8>().prop_map(Mutation::SetFormat),
        any::<u8>().prop_map(Mutation::SetCodec),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len();
        match *mutation {
            Mutation::Flip { at, bits } if len > 0 => bytes[at % len] ^= bits,
            Mutation::Truncate { to } => bytes.truncate(to % (len + 1)),
            Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
            Mutation::Remove { at } if len > 0 => {
                bytes.remove(at % len);
            }
            Mutation::SetFormat(byte) if len > 0 => bytes[0] = byte,
            Mutation::SetCodec(byte) if len > 1 => bytes[1] = byte,
            _ => {}
        }
    }
    bytes
}

#[test]
fn the_entry_decoder_never_panics_and_accepts_one_encoding_per_entry() {
    let random = run(
        3_000,
        (key(), proptest::collection::vec(any::<u8>(), 0..64)),
        |(key, bytes)| check_entry_bytes(key, bytes),
    );
    // Random bytes rarely start like an entry; mutated valid encodings reach the deeper paths,
    // and every one that differs from the original must fail the checksum.
    let mutated = run(
        3_000,
        (
            key(),
            entry_fields(),
            proptest::collection::vec(any::<u8>(), 0..32),
            proptest::collection::vec(mutation(), 1..4),
        ),
        |(key, fields, payload, mutations)| {
            let original = encode_entry(key, fields, payload);
            let damaged = mutate(original.clone(), mutations);
            check_entry_bytes(key, &damaged)?;
            check_damage_detected(key, &original, &damaged)
        },
    );
    let round_trips = run(
        2_000,
        (
            key(),
            entry_fields(),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
        |(key, fields, payload)| check_entry_round_trip(key, fields, payload),
    );
    eprintln!(
        "decoder: {} inputs ({random} random, {mutated} mutated encodings, {round_trips} \
         round trips): 0 panics, 0 violations",
        random + mutated + round_trips
    );
}

#[test]
fn the_tag_parser_accepts_exactly_the_tag_alphabet_and_keys_render_bounded() {
    let arbitrary = run(2_000, any::<String>(), |name| check_tag(name));
    // Names close to valid ones: the tag alphabet plus the characters of paths.
    let path_like = run(3_000, "[a-z0-9_./\\\\:-]{0,70}", |name| check_tag(name));
    let keys = run(
        1_000,
        proptest::collection::vec(any::<u8>(), 0..2_000),
        |key| check_key_display(key),
    );
    let text_keys = run(1_000, any::<String>(), |key| {
        check_key_display(key.as_bytes())
    });
    eprintln!(
        "decoder: {} tag names ({arbitrary} arbitrary, {path_like} path-like) and {} keys \
         rendered: 0 panics, 0 violations",
        arbitrary + path_like,
        keys + text_keys
    );
}
