//! The service: round trips of every value shape, compute-once, schema changes, TTL per level.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheTtlConfig, Coordinator, ManualClock, UserCacheConfig};
use cache_layout::{BookmarkId, InputHash, LayoutCache, LayoutError, LayoutValue};
use rstest::rstest;
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, open, root};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeymapDiff {
    added: Vec<String>,
    removed: Vec<String>,
}

impl LayoutValue for KeymapDiff {
    const KIND: &'static str = "keymap-diff";
    const SCHEMA_VERSION: u32 = 1;
}

/// The same kind of value after its shape changed, with its schema version bumped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeymapDiffV2 {
    changes: Vec<(String, String)>,
}

impl LayoutValue for KeymapDiffV2 {
    const KIND: &'static str = "keymap-diff";
    const SCHEMA_VERSION: u32 = 2;
}

fn diff() -> KeymapDiff {
    KeymapDiff {
        added: vec!["&kp A".into()],
        removed: vec![],
    }
}

fn bookmark_id() -> BookmarkId {
    BookmarkId::parse("0b3c1a2e-5d4f-4a6b-8c7d-9e0f1a2b3c4d").expect("a valid bookmark id")
}

#[rstest]
fn processed_layouts_round_trip_as_text_bytes_and_structs(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let input = InputHash::of([br#"{"layers":[]}"#.as_slice()]);
    let json = r#"{"keymap": "..."}"#.to_owned();
    let bytes = vec![0u8, 159, 146, 150];
    layouts.put_processed(&input, "v1", &json).unwrap();
    layouts.put_processed(&input, "v1", &bytes).unwrap();
    layouts.put_processed(&input, "v1", &diff()).unwrap();

    assert_eq!(
        layouts.get_processed::<String>(&input, "v1").unwrap(),
        Some(json)
    );
    assert_eq!(
        layouts.get_processed::<Vec<u8>>(&input, "v1").unwrap(),
        Some(bytes)
    );
    assert_eq!(
        layouts.get_processed::<KeymapDiff>(&input, "v1").unwrap(),
        Some(diff())
    );
    assert_eq!(layouts.get_processed::<String>(&input, "v2").unwrap(), None);
    assert_eq!(
        layouts.get_comparison::<String>(&input, "v1").unwrap(),
        None
    );
    assert_eq!(layouts.cache().keys().unwrap().len(), 3);
}

#[rstest]
fn comparisons_and_bookmarks_round_trip(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let pair = InputHash::of(["left layout", "right layout"]);
    layouts.put_comparison(&pair, "v1", &diff()).unwrap();
    assert_eq!(
        layouts.get_comparison::<KeymapDiff>(&pair, "v1").unwrap(),
        Some(diff())
    );
    let reversed = InputHash::of(["right layout", "left layout"]);
    assert_eq!(
        layouts
            .get_comparison::<KeymapDiff>(&reversed, "v1")
            .unwrap(),
        None
    );

    let note = "my daily driver".to_owned();
    layouts.put_bookmark(&bookmark_id(), &note).unwrap();
    assert_eq!(
        layouts.get_bookmark::<String>(&bookmark_id()).unwrap(),
        Some(note)
    );
    assert!(layouts.delete_bookmark::<String>(&bookmark_id()).unwrap());
    assert!(!layouts.delete_bookmark::<String>(&bookmark_id()).unwrap());
    assert_eq!(
        layouts.get_bookmark::<String>(&bookmark_id()).unwrap(),
        None
    );
}

#[rstest]
fn get_or_process_and_get_or_compare_compute_once(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let input = InputHash::of(["layout"]);
    let mut processed = 0;
    let mut compared = 0;
    for _ in 0..3 {
        let keymap: String = layouts
            .get_or_process(&input, "v1", || {
                processed += 1;
                Ok::<_, LayoutError>("keymap".to_owned())
            })
            .unwrap();
        assert_eq!(keymap, "keymap");
        let diff_read: KeymapDiff = layouts
            .get_or_compare(&input, "v1", || {
                compared += 1;
                Ok::<_, LayoutError>(diff())
            })
            .unwrap();
        assert_eq!(diff_read, diff());
    }
    assert_eq!((processed, compared), (1, 1));
}

#[rstest]
fn a_failed_computation_is_returned_and_caches_nothing(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    #[derive(Debug)]
    enum ProcessingError {
        BadLayout,
        Cache,
    }
    impl From<cache_core::CacheError> for ProcessingError {
        fn from(_: cache_core::CacheError) -> Self {
            ProcessingError::Cache
        }
    }
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let input = InputHash::of(["broken layout"]);
    let result: Result<String, ProcessingError> =
        layouts.get_or_process(&input, "v1", || Err(ProcessingError::BadLayout));
    assert!(
        matches!(result, Err(ProcessingError::BadLayout)),
        "{result:?}"
    );
    assert_eq!(layouts.get_processed::<String>(&input, "v1").unwrap(), None);
}

#[rstest]
fn a_value_stored_under_an_older_schema_reads_as_a_miss(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let layouts = open(&coordinator, &config_with(&root, &clock));
    let pair = InputHash::of(["a", "b"]);
    layouts.put_comparison(&pair, "v1", &diff()).unwrap();
    assert_eq!(
        layouts.get_comparison::<KeymapDiffV2>(&pair, "v1").unwrap(),
        None
    );
    assert_eq!(
        layouts.get_comparison::<KeymapDiff>(&pair, "v1").unwrap(),
        None,
        "the stale entry was removed, not left to be misread"
    );
}

/// Stores `store` (if given) under one fixed key of a kind, then reads that key: `true` if a
/// value is there.
type Probe = fn(&LayoutCache, Option<&str>) -> bool;

fn probe_processed(layouts: &LayoutCache, store: Option<&str>) -> bool {
    let input = InputHash::of(["layout"]);
    if let Some(value) = store {
        layouts
            .put_processed(&input, "v1", &value.to_owned())
            .expect("store");
    }
    layouts
        .get_processed::<String>(&input, "v1")
        .expect("read")
        .is_some()
}

fn probe_comparison(layouts: &LayoutCache, store: Option<&str>) -> bool {
    let input = InputHash::of(["left", "right"]);
    if let Some(value) = store {
        layouts
            .put_comparison(&input, "v1", &value.to_owned())
            .expect("store");
    }
    layouts
        .get_comparison::<String>(&input, "v1")
        .expect("read")
        .is_some()
}

fn probe_bookmark(layouts: &LayoutCache, store: Option<&str>) -> bool {
    if let Some(value) = store {
        layouts
            .put_bookmark(&bookmark_id(), &value.to_owned())
            .expect("store");
    }
    layouts
        .get_bookmark::<String>(&bookmark_id())
        .expect("read")
        .is_some()
}

#[rstest]
#[case::processing_7_days(probe_processed as Probe, 7 * DAY)]
#[case::comparison_3_days(probe_comparison as Probe, 3 * DAY)]
#[case::bookmarks_30_days(probe_bookmark as Probe, 30 * DAY)]
fn each_level_expires_after_its_default_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] probe: Probe,
    #[case] ttl: Duration,
) {
    let layouts = open(&coordinator, &config_with(&root, &clock));
    assert!(probe(&layouts, Some("value")));
    clock.advance(ttl - Duration::from_secs(1));
    assert!(probe(&layouts, None), "alive one second before its TTL");
    clock.advance(Duration::from_secs(1));
    assert!(!probe(&layouts, None), "expired at its TTL");
}

#[rstest]
#[case::processing(probe_processed as Probe)]
#[case::comparison(probe_comparison as Probe)]
#[case::bookmarks(probe_bookmark as Probe)]
fn each_level_reads_its_ttl_from_the_config(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] probe: Probe,
) {
    let config = UserCacheConfig {
        ttls: CacheTtlConfig::default()
            .with(
                &cache_layout::ttl::LAYOUT_PROCESSING,
                Duration::from_secs(60),
            )
            .with(
                &cache_layout::ttl::LAYOUT_COMPARISON,
                Duration::from_secs(60),
            )
            .with(
                &cache_layout::ttl::LAYOUT_BOOKMARKS,
                Duration::from_secs(60),
            ),
        ..config_with(&root, &clock)
    };
    let layouts = open(&coordinator, &config);
    assert!(probe(&layouts, Some("value")));
    clock.advance(Duration::from_secs(59));
    assert!(probe(&layouts, None));
    clock.advance(Duration::from_secs(1));
    assert!(!probe(&layouts, None));
}
