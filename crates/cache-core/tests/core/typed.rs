//! Typed keys: round trips, tag checks, schema changes, undecodable values, get_or_insert_with.

use std::time::Duration;

use cache_core::{CacheError, CacheKey, CacheOptions, Coordinator, ValueFormat};
use rstest::rstest;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::{coordinator, open, root};

/// A string note under tag `t`, schema 1.
pub(crate) struct Note(pub(crate) &'static str);

impl CacheKey for Note {
    type Value = String;
    const TAG: &'static str = "t";
    const SCHEMA_VERSION: u32 = 1;
    fn default_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
    fn key_bytes(&self) -> Vec<u8> {
        format!("note:{}", self.0).into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Build {
    board: String,
    artifacts: Vec<String>,
    size: u64,
}

/// Declares a key type stored under the fixed key `build` in tag `t`, never expiring.
macro_rules! build_key {
    ($(#[$doc:meta])* $name:ident, $value:ty, schema $schema:literal) => {
        $(#[$doc])*
        struct $name;

        impl CacheKey for $name {
            type Value = $value;
            const TAG: &'static str = "t";
            const SCHEMA_VERSION: u32 = $schema;
            fn default_ttl(&self) -> Option<Duration> {
                None
            }
            fn key_bytes(&self) -> Vec<u8> {
                b"build".to_vec()
            }
        }
    };
}

build_key!(
    /// Version 1 of a build record.
    BuildKey, Build, schema 1
);
build_key!(
    /// Version 2 of the same key: the value's shape changed, and the schema version says so.
    BuildKeyV2, (String, u32), schema 2
);
build_key!(
    /// The same key and schema as `BuildKey` but another value type: a developer forgot to
    /// bump the schema version.
    BuildKeyWrongType, Vec<u64>, schema 1
);

fn sample() -> Build {
    Build {
        board: "glove80".into(),
        artifacts: vec!["zmk.uf2".into()],
        size: 1 << 20,
    }
}

#[rstest]
fn typed_values_round_trip_with_their_format_and_default_ttl(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set_typed(&BuildKey, &sample()).unwrap();
    assert_eq!(cache.get_typed(&BuildKey).unwrap(), Some(sample()));
    cache.set_typed(&Note("a"), &"hello".to_owned()).unwrap();
    let meta = cache.get_metadata(b"note:a").unwrap().unwrap();
    assert_eq!(meta.format, ValueFormat::typed(1));
    assert_eq!(meta.ttl, Some(Duration::from_secs(3600)));
}

#[rstest]
fn a_key_of_another_tag_is_refused(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "other", CacheOptions::default());
    let err = cache.set_typed(&Note("a"), &"x".to_owned()).unwrap_err();
    assert!(matches!(err, CacheError::WrongTag { .. }), "{err}");
    assert!(
        err.to_string().contains("'other'") && err.to_string().contains("'t'"),
        "{err}"
    );
    assert!(cache.get_typed(&Note("a")).is_err());
}

#[rstest]
fn an_older_schema_reads_as_a_miss_and_is_removed(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set_typed(&BuildKey, &sample()).unwrap();
    assert_eq!(cache.get_typed(&BuildKeyV2).unwrap(), None);
    assert!(
        !cache.exists(b"build").unwrap(),
        "the stale entry is removed"
    );
    let stats = cache.get_stats().unwrap();
    assert_eq!((stats.counters.hits, stats.counters.misses), (0, 1));
}

#[rstest]
fn a_value_that_does_not_decode_is_a_miss_not_a_wrong_value(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set_typed(&BuildKey, &sample()).unwrap();
    assert_eq!(cache.get_typed(&BuildKeyWrongType).unwrap(), None);
    assert!(!cache.exists(b"build").unwrap());
    let stats = cache.get_stats().unwrap();
    assert_eq!(
        (
            stats.counters.hits,
            stats.counters.misses,
            stats.counters.errors
        ),
        (0, 1, 1)
    );
}

#[rstest]
fn raw_bytes_under_a_typed_key_read_as_a_miss(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"build", b"not bincode", None).unwrap();
    assert_eq!(cache.get_typed(&BuildKey).unwrap(), None);
    assert!(!cache.exists(b"build").unwrap());
}

#[rstest]
fn get_or_insert_with_computes_once_then_hits(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let mut computed = 0;
    for _ in 0..3 {
        let value: Result<Build, CacheError> = cache.get_or_insert_with(&BuildKey, || {
            computed += 1;
            Ok(sample())
        });
        assert_eq!(value.unwrap(), sample());
    }
    assert_eq!(computed, 1);
}

#[derive(Debug)]
enum BuildError {
    Compiler(&'static str),
    Cache(CacheError),
}

impl From<CacheError> for BuildError {
    fn from(err: CacheError) -> Self {
        BuildError::Cache(err)
    }
}

#[rstest]
fn get_or_insert_with_passes_the_computation_error_through_and_stores_nothing(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let result =
        cache.get_or_insert_with(&BuildKey, || Err(BuildError::Compiler("west build failed")));
    assert!(matches!(
        result,
        Err(BuildError::Compiler("west build failed"))
    ));
    assert!(!cache.exists(b"build").unwrap());
    let wrong_tag = open(&coordinator, &root, "other", CacheOptions::default());
    let result = wrong_tag.get_or_insert_with(&BuildKey, || Ok::<_, BuildError>(sample()));
    assert!(matches!(
        result,
        Err(BuildError::Cache(CacheError::WrongTag { .. }))
    ));
}
