//! Keys: stable bytes (golden values), unambiguous inputs, kinds and versions, TTL levels.

use std::time::Duration;

use cache_core::{CacheKey, CacheTtlConfig};
use cache_layout::{
    BookmarkId, BookmarkKey, InputHash, LAYOUT_TAG, LayoutComparisonKey, LayoutError,
    ProcessedLayoutKey,
};
use rstest::rstest;

const UUID: &str = "0b3c1a2e-5d4f-4a6b-8c7d-9e0f1a2b3c4d";

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("key bytes are ASCII")
}

fn processed(inputs: &[&str], version: &str) -> Vec<u8> {
    ProcessedLayoutKey::<String>::new(&InputHash::of(inputs), version, &CacheTtlConfig::default())
        .key_bytes()
}

fn bookmark(id: &str) -> BookmarkKey<String> {
    let id = BookmarkId::parse(id).expect("a valid bookmark id");
    BookmarkKey::new(&id, &CacheTtlConfig::default())
}

#[test]
fn key_bytes_are_stable() {
    // Golden values: changing one orphans every stored entry of that kind, so it must be a
    // deliberate choice, never an accident of refactoring.
    let ttls = CacheTtlConfig::default();
    let input = InputHash::of([r#"{"layers":[]}"#]);
    assert_eq!(
        input.as_str(),
        "f852f8f9536c1cb07b2afac9fe6d16ce2fcbba3eeeb1b563e893bbaf8fe8693c"
    );
    assert_eq!(
        text(ProcessedLayoutKey::<String>::new(&input, "v1", &ttls).key_bytes()),
        "processed:950798ab2e000f3df46b06b29046329d18e11d94e72a9dd0c7784dd1c4c44088"
    );
    assert_eq!(
        text(LayoutComparisonKey::<String>::new(&input, "v1", &ttls).key_bytes()),
        "comparison:0f07aa2b176cfc88094068a995b5af1b8068cce117a125015850c65f0137f573"
    );
    assert_eq!(
        text(bookmark(UUID).key_bytes()),
        "bookmark:6b388ff27bd6b24af9e46e6da9de601c083b6dda4fbe64cfe33df1dc104673e5"
    );
}

#[test]
fn inputs_are_unambiguous_and_ordered() {
    assert_ne!(processed(&["ab", "c"], "v1"), processed(&["a", "bc"], "v1"));
    assert_ne!(
        processed(&["a", "", "b"], "v1"),
        processed(&["a", "b"], "v1")
    );
    assert_ne!(
        processed(&["left", "right"], "v1"),
        processed(&["right", "left"], "v1")
    );
    assert_eq!(processed(&["a", "b"], "v1"), processed(&["a", "b"], "v1"));
}

#[test]
fn the_processing_version_is_part_of_the_key() {
    assert_ne!(processed(&["layout"], "v1"), processed(&["layout"], "v2"));
    assert_ne!(processed(&["layout"], ""), processed(&["layout"], "v1"));
}

#[test]
fn kinds_of_entry_and_types_of_value_never_share_a_key() {
    let ttls = CacheTtlConfig::default();
    let input = InputHash::of(["layout"]);
    let as_text = ProcessedLayoutKey::<String>::new(&input, "v1", &ttls).key_bytes();
    let as_bytes = ProcessedLayoutKey::<Vec<u8>>::new(&input, "v1", &ttls).key_bytes();
    let comparison = LayoutComparisonKey::<String>::new(&input, "v1", &ttls).key_bytes();
    assert_ne!(as_text, as_bytes);
    assert_ne!(as_text, comparison);
}

#[test]
fn a_bookmark_in_another_case_is_the_same_key() {
    assert_eq!(
        bookmark(UUID).key_bytes(),
        bookmark(&UUID.to_ascii_uppercase()).key_bytes()
    );
}

#[rstest]
#[case::simple_form("0b3c1a2e5d4f4a6b8c7d9e0f1a2b3c4d")]
#[case::empty("")]
#[case::path("../bookmarks")]
fn an_invalid_bookmark_id_is_a_clear_error(#[case] text: &str) {
    let err = BookmarkId::parse(text).unwrap_err();
    assert!(
        matches!(err, LayoutError::InvalidBookmarkId { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("8-4-4-4-12"), "{err}");
}

#[rstest]
#[case::processed(|t: &CacheTtlConfig| ProcessedLayoutKey::<String>::new(&InputHash::of(["x"]), "v1", t).default_ttl(), 7)]
#[case::comparison(|t: &CacheTtlConfig| LayoutComparisonKey::<String>::new(&InputHash::of(["x"]), "v1", t).default_ttl(), 3)]
#[case::bookmark(|t: &CacheTtlConfig| BookmarkKey::<String>::new(&BookmarkId::parse(UUID).unwrap(), t).default_ttl(), 30)]
fn each_key_takes_its_level_from_the_config(
    #[case] ttl_of: fn(&CacheTtlConfig) -> Option<Duration>,
    #[case] default_days: u64,
) {
    assert_eq!(
        ttl_of(&CacheTtlConfig::default()),
        Some(Duration::from_secs(default_days * 24 * 3600))
    );
    let all_one_minute = CacheTtlConfig::default()
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
        );
    assert_eq!(ttl_of(&all_one_minute), Some(Duration::from_secs(60)));
    assert_eq!(<ProcessedLayoutKey<String> as CacheKey>::TAG, LAYOUT_TAG);
    assert_eq!(LAYOUT_TAG, "layout");
}
