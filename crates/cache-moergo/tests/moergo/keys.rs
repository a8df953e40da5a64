//! Keys: stable bytes (golden values), sorted and deduplicated tag sets, unambiguous parts, the
//! TTL each key takes from the config, and refused identifiers.

use std::time::Duration;

use cache_core::{CacheKey, CacheTtlConfig};
use cache_moergo::{
    FirmwareDownloadKey, FirmwareVersion, FirmwareVersionsKey, LayoutConfigKey, LayoutMetaKey,
    LayoutUuid, MOERGO_TAG, MoergoError, PublicLayoutTags, PublicLayoutsKey,
};
use rstest::rstest;

const UUID: &str = "8f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("key bytes are ASCII")
}

fn uuid() -> LayoutUuid {
    LayoutUuid::parse(UUID).expect("a valid layout uuid")
}

fn public(tags: &[&str]) -> Vec<u8> {
    let tags = PublicLayoutTags::new(tags).expect("valid tags");
    PublicLayoutsKey::new(&tags, &CacheTtlConfig::default()).key_bytes()
}

#[test]
fn key_bytes_are_stable() {
    // Golden values: changing one orphans every stored entry of that kind, so it must be a
    // deliberate choice, never an accident of refactoring.
    let ttls = CacheTtlConfig::default();
    assert_eq!(
        text(LayoutConfigKey::new(&uuid(), &ttls).key_bytes()),
        "layout-config:0a0d16b53a3b839ea625589f300426be3fab316a1b190fd1f43feb71928ceb72"
    );
    assert_eq!(
        text(LayoutMetaKey::new(&uuid(), &ttls).key_bytes()),
        "layout-meta:ac39f5cf9a9cde267628489c80ad53f5dc56c6c3bbd0f2a019764a244ba96191"
    );
    assert_eq!(
        text(public(&["glove80-standard", "colemak"])),
        "public-layouts:75324ddcccf43e3c9b7df9fe7d76ede354a31e1318fc8a800febe12d432c0f90"
    );
    assert_eq!(
        text(
            FirmwareVersionsKey::new("glove80", &ttls)
                .unwrap()
                .key_bytes()
        ),
        "firmware-versions:d6a87b0988cd01e2f06923a8af41abeee719829e211e30041be92d89fcba1aed"
    );
    assert_eq!(
        text(
            FirmwareDownloadKey::new("/firmware/abc.uf2.gz", &ttls)
                .unwrap()
                .key_bytes()
        ),
        "firmware-download:30bc7a9cbdde8464375a4cad01131440f175406f519896fa6ebc869a384d8c54"
    );
}

#[test]
fn public_tag_sets_are_sorted_and_deduplicated() {
    assert_eq!(public(&["b", "a", "a"]), public(&["a", "b"]));
    assert_eq!(public(&["a", "b"]), public(&["b", "a"]));
    assert_ne!(public(&["a"]), public(&["a", "b"]));
    assert_ne!(public(&[]), public(&["a"]));
}

#[test]
fn public_tag_sets_are_unambiguous() {
    // The original joined sorted tags with ",": ["a,b"] and ["a", "b"] were one key.
    assert_ne!(public(&["a,b"]), public(&["a", "b"]));
    assert_ne!(public(&["ab"]), public(&["a", "b"]));
}

#[test]
fn config_and_meta_of_one_layout_are_different_keys() {
    let ttls = CacheTtlConfig::default();
    assert_ne!(
        LayoutConfigKey::new(&uuid(), &ttls).key_bytes(),
        LayoutMetaKey::new(&uuid(), &ttls).key_bytes()
    );
    let upper = LayoutUuid::parse(&UUID.to_ascii_uppercase()).unwrap();
    assert_eq!(
        LayoutConfigKey::new(&upper, &ttls).key_bytes(),
        LayoutConfigKey::new(&uuid(), &ttls).key_bytes()
    );
}

#[rstest]
#[case::no_tags(&[], 600)]
#[case::other_tags(&["colemak", "glove80"], 600)]
#[case::standard(&["glove80-standard"], 2 * 3600)]
#[case::standard_among_others(&["colemak", "glove80-standard"], 2 * 3600)]
fn public_lists_take_the_standard_ttl_only_with_glove80_standard(
    #[case] tags: &[&str],
    #[case] seconds: u64,
) {
    let tags = PublicLayoutTags::new(tags).unwrap();
    assert_eq!(
        PublicLayoutsKey::new(&tags, &CacheTtlConfig::default()).default_ttl(),
        Some(Duration::from_secs(seconds))
    );
}

#[test]
fn every_key_takes_its_ttl_from_the_config() {
    let ttls = CacheTtlConfig::default()
        .with(
            &cache_moergo::ttl::MOERGO_LAYOUT_CONFIG,
            Duration::from_secs(1),
        )
        .with(
            &cache_moergo::ttl::MOERGO_PUBLIC_LAYOUTS,
            Duration::from_secs(2),
        )
        .with(
            &cache_moergo::ttl::MOERGO_PUBLIC_LAYOUTS_STANDARD,
            Duration::from_secs(3),
        )
        .with(&cache_moergo::ttl::MOERGO_VERSIONS, Duration::from_secs(4))
        .with(
            &cache_moergo::ttl::MOERGO_FIRMWARE_DOWNLOADS,
            Duration::from_secs(5),
        );
    let secs = |n| Some(Duration::from_secs(n));
    let standard = PublicLayoutTags::new(["glove80-standard"]).unwrap();
    assert_eq!(LayoutConfigKey::new(&uuid(), &ttls).default_ttl(), secs(1));
    assert_eq!(LayoutMetaKey::new(&uuid(), &ttls).default_ttl(), secs(1));
    assert_eq!(
        PublicLayoutsKey::new(&PublicLayoutTags::all(), &ttls).default_ttl(),
        secs(2)
    );
    assert_eq!(
        PublicLayoutsKey::new(&standard, &ttls).default_ttl(),
        secs(3)
    );
    assert_eq!(
        FirmwareVersionsKey::new("glove80", &ttls)
            .unwrap()
            .default_ttl(),
        secs(4)
    );
    assert_eq!(
        FirmwareDownloadKey::new("/f.uf2", &ttls)
            .unwrap()
            .default_ttl(),
        secs(5)
    );
    assert_eq!(<LayoutConfigKey as CacheKey>::TAG, MOERGO_TAG);
    assert_eq!(MOERGO_TAG, "moergo");
}

#[test]
fn a_firmware_download_key_never_holds_its_location() {
    let location = "/firmware/abc.uf2.gz?X-Amz-Signature=0123456789abcdef";
    let key = FirmwareDownloadKey::new(location, &CacheTtlConfig::default()).unwrap();
    assert!(!format!("{key:?}").contains("Signature"), "{key:?}");
    assert!(!text(key.key_bytes()).contains("Signature"));
}

#[rstest]
#[case::empty_version("")]
#[case::slash("v25/05")]
#[case::space("v25 05")]
#[case::too_long("v-123456789012345678901234567890123456789012345678901234567890123")]
fn an_invalid_firmware_version_or_board_is_a_clear_error(#[case] text: &str) {
    let err = FirmwareVersion::new(text).unwrap_err();
    assert!(
        matches!(
            err,
            MoergoError::InvalidIdentifier {
                what: "firmware version",
                ..
            }
        ),
        "{err}"
    );
    let err = FirmwareVersionsKey::new(text, &CacheTtlConfig::default()).unwrap_err();
    assert!(err.to_string().contains("invalid board"), "{err}");
}

#[test]
fn empty_tags_locations_and_bad_uuids_are_clear_errors() {
    let err = PublicLayoutTags::new(["colemak", ""]).unwrap_err();
    assert!(err.to_string().contains("public layout tag"), "{err}");
    let err = FirmwareDownloadKey::new("", &CacheTtlConfig::default()).unwrap_err();
    assert!(err.to_string().contains("firmware location"), "{err}");
    let err = LayoutUuid::parse("8f1a2b3c4d5e4f608a7b9c0d1e2f3a4b").unwrap_err();
    assert!(
        matches!(err, MoergoError::InvalidLayoutUuid { .. }),
        "{err}"
    );
}
