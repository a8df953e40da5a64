//! The service: round trips of every kind of entry, TTL per level with a manual clock, and
//! credentials refused whichever way they come.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheKey, CacheTtlConfig, Coordinator, ManualClock, UserCacheConfig};
use cache_moergo::{
    ApiDocument, FirmwareVersion, LayoutConfigKey, LayoutUuid, MoergoCache, MoergoError,
    PublicLayoutTags,
};
use rstest::rstest;
use serde::Serialize;
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, open, root};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn uuid(last: u8) -> LayoutUuid {
    LayoutUuid::parse(&format!("8f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a{last:02x}"))
        .expect("a valid layout uuid")
}

fn document(json: &str) -> ApiDocument {
    ApiDocument::new(json).expect("a document without credentials")
}

#[rstest]
fn every_kind_of_entry_round_trips(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let moergo = open(&coordinator, &config_with(&root, &clock));
    let config = document(r#"{"layers": [["&kp A"]], "layer_names": ["Base"]}"#);
    let meta = document(r#"{"title": "Daily", "creator": "me", "tags": ["colemak"]}"#);
    moergo.put_layout_config(&uuid(1), &config).unwrap();
    moergo.put_layout_meta(&uuid(1), &meta).unwrap();
    assert_eq!(moergo.get_layout_config(&uuid(1)).unwrap(), Some(config));
    assert_eq!(moergo.get_layout_meta(&uuid(1)).unwrap(), Some(meta));
    assert_eq!(moergo.get_layout_config(&uuid(2)).unwrap(), None);

    let tags = PublicLayoutTags::new(["colemak", "glove80-standard"]).unwrap();
    moergo
        .put_public_layouts(&tags, &[uuid(1), uuid(2)])
        .unwrap();
    assert_eq!(
        moergo.get_public_layouts(&tags).unwrap(),
        Some(vec![uuid(1), uuid(2)])
    );
    assert_eq!(
        moergo.get_public_layouts(&PublicLayoutTags::all()).unwrap(),
        None
    );
    let empty = PublicLayoutTags::new(["qwerty"]).unwrap();
    moergo.put_public_layouts(&empty, &[]).unwrap();
    assert_eq!(
        moergo.get_public_layouts(&empty).unwrap(),
        Some(vec![]),
        "an empty list is a hit, not a miss"
    );

    let versions = vec![
        FirmwareVersion::new("v25.05").unwrap(),
        FirmwareVersion::new("v24.02").unwrap(),
    ];
    moergo.put_firmware_versions("glove80", &versions).unwrap();
    assert_eq!(
        moergo.get_firmware_versions("glove80").unwrap(),
        Some(versions)
    );
    assert_eq!(moergo.get_firmware_versions("go60").unwrap(), None);
}

#[rstest]
fn firmware_downloads_round_trip_as_bytes(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let moergo = open(&coordinator, &config_with(&root, &clock));
    let firmware: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    moergo
        .put_firmware_download("/firmware/a.uf2.gz", &firmware)
        .unwrap();
    moergo
        .put_firmware_download("/firmware/empty.uf2", &[])
        .unwrap();
    assert_eq!(
        moergo.get_firmware_download("/firmware/a.uf2.gz").unwrap(),
        Some(firmware.clone())
    );
    assert_eq!(
        moergo.get_firmware_download("/firmware/empty.uf2").unwrap(),
        Some(vec![])
    );
    assert_eq!(
        moergo.get_firmware_download("/firmware/b.uf2.gz").unwrap(),
        None
    );
    // Stored as one byte string: the entry is about the size of the image, not a multiple.
    assert!(moergo.stats().unwrap().bytes < firmware.len() as u64 + 1024);
}

/// Stores a value of one kind under a fixed key (if `store`), then reads that key: `true` if a
/// value is there.
type Probe = fn(&MoergoCache, bool) -> bool;

fn probe_config(moergo: &MoergoCache, store: bool) -> bool {
    if store {
        moergo
            .put_layout_config(&uuid(1), &document("{}"))
            .expect("store");
    }
    moergo.get_layout_config(&uuid(1)).expect("read").is_some()
}

fn probe_meta(moergo: &MoergoCache, store: bool) -> bool {
    if store {
        moergo
            .put_layout_meta(&uuid(1), &document("{}"))
            .expect("store");
    }
    moergo.get_layout_meta(&uuid(1)).expect("read").is_some()
}

fn probe_public(moergo: &MoergoCache, store: bool) -> bool {
    let tags = PublicLayoutTags::new(["colemak"]).expect("valid tags");
    if store {
        moergo.put_public_layouts(&tags, &[uuid(1)]).expect("store");
    }
    moergo.get_public_layouts(&tags).expect("read").is_some()
}

fn probe_public_standard(moergo: &MoergoCache, store: bool) -> bool {
    let tags = PublicLayoutTags::new(["glove80-standard", "colemak"]).expect("valid tags");
    if store {
        moergo.put_public_layouts(&tags, &[uuid(1)]).expect("store");
    }
    moergo.get_public_layouts(&tags).expect("read").is_some()
}

fn probe_versions(moergo: &MoergoCache, store: bool) -> bool {
    if store {
        let version = FirmwareVersion::new("v25.05").expect("valid version");
        moergo
            .put_firmware_versions("glove80", &[version])
            .expect("store");
    }
    moergo
        .get_firmware_versions("glove80")
        .expect("read")
        .is_some()
}

fn probe_download(moergo: &MoergoCache, store: bool) -> bool {
    if store {
        moergo
            .put_firmware_download("/f.uf2", b"uf2")
            .expect("store");
    }
    moergo
        .get_firmware_download("/f.uf2")
        .expect("read")
        .is_some()
}

#[rstest]
#[case::layout_config_30_days(probe_config as Probe, 30 * DAY)]
#[case::layout_meta_30_days(probe_meta as Probe, 30 * DAY)]
#[case::public_layouts_10_minutes(probe_public as Probe, 10 * MINUTE)]
#[case::public_layouts_standard_2_hours(probe_public_standard as Probe, 2 * HOUR)]
#[case::versions_12_hours(probe_versions as Probe, 12 * HOUR)]
#[case::firmware_downloads_30_days(probe_download as Probe, 30 * DAY)]
fn each_level_expires_after_its_default_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] probe: Probe,
    #[case] ttl: Duration,
) {
    let moergo = open(&coordinator, &config_with(&root, &clock));
    assert!(probe(&moergo, true));
    clock.advance(ttl - Duration::from_secs(1));
    assert!(probe(&moergo, false), "alive one second before its TTL");
    clock.advance(Duration::from_secs(1));
    assert!(!probe(&moergo, false), "expired at its TTL");
}

#[rstest]
#[case::layout_config(probe_config as Probe)]
#[case::public_layouts_standard(probe_public_standard as Probe)]
#[case::firmware_downloads(probe_download as Probe)]
fn each_level_reads_its_ttl_from_the_config(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] probe: Probe,
) {
    let config = UserCacheConfig {
        ttls: CacheTtlConfig::default()
            .with(&cache_moergo::ttl::MOERGO_LAYOUT_CONFIG, MINUTE)
            .with(&cache_moergo::ttl::MOERGO_PUBLIC_LAYOUTS_STANDARD, MINUTE)
            .with(&cache_moergo::ttl::MOERGO_FIRMWARE_DOWNLOADS, MINUTE),
        ..config_with(&root, &clock)
    };
    let moergo = open(&coordinator, &config);
    assert!(probe(&moergo, true));
    clock.advance(MINUTE - Duration::from_secs(1));
    assert!(probe(&moergo, false));
    clock.advance(Duration::from_secs(1));
    assert!(!probe(&moergo, false));
}

/// Shaped like the Cognito response MoErgo's login returns.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AuthenticationResult {
    access_token: String,
    id_token: String,
    refresh_token: String,
    expires_in: u64,
    token_type: String,
}

#[derive(Serialize)]
struct AuthResponse {
    #[serde(rename = "AuthenticationResult")]
    authentication_result: AuthenticationResult,
}

fn auth_response() -> AuthResponse {
    AuthResponse {
        authentication_result: AuthenticationResult {
            access_token: "opaque-access".into(),
            id_token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz".into(),
            refresh_token: "opaque-refresh".into(),
            expires_in: 3600,
            token_type: "Bearer".into(),
        },
    }
}

#[rstest]
fn an_auth_response_cannot_be_stored_through_the_crates_api(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // The typed API takes no such struct (see the compile_fail doctest in the crate docs); the
    // one way left is to serialise it into an ApiDocument, and that is refused.
    let moergo = open(&coordinator, &config_with(&root, &clock));
    for json in [
        serde_json::to_string(&auth_response()).unwrap(),
        serde_json::to_string(&auth_response().authentication_result).unwrap(),
        format!(
            r#"{{"layout_meta": {{"title": "x"}}, "session": {}}}"#,
            serde_json::to_string(&auth_response()).unwrap()
        ),
        r#"{"notes": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz"}"#.to_owned(),
    ] {
        let err = ApiDocument::new(json.clone()).unwrap_err();
        assert!(
            matches!(err, MoergoError::CredentialsRefused { .. }),
            "{err}"
        );
        assert!(
            !err.to_string().contains("opaque-"),
            "the error never repeats a secret: {err}"
        );
    }
    assert_eq!(moergo.stats().unwrap().entries, 0, "nothing was stored");
}

/// A key type outside this crate that writes a `String` under a layout config's key: what any
/// code holding a coordinator could do with the raw tag.
struct SmuggledConfig(Vec<u8>);

impl CacheKey for SmuggledConfig {
    type Value = String;
    const TAG: &'static str = "moergo";
    const SCHEMA_VERSION: u32 = LayoutConfigKey::SCHEMA_VERSION;
    fn default_ttl(&self) -> Option<Duration> {
        None
    }
    fn key_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

#[rstest]
fn a_stored_document_holding_credentials_never_reads_back(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = config_with(&root, &clock);
    let moergo = open(&coordinator, &config);
    let raw = coordinator
        .create_cache_from_user_config(&config, "moergo")
        .unwrap();
    let key = LayoutConfigKey::new(&uuid(1), &config.ttls);
    let smuggled = SmuggledConfig(key.key_bytes());
    raw.set_typed(
        &smuggled,
        &r#"{"layers": [], "access_token": "opaque-access"}"#.to_owned(),
    )
    .unwrap();
    raw.set_typed(
        &SmuggledConfig(LayoutConfigKey::new(&uuid(2), &config.ttls).key_bytes()),
        &r#"{"layers": []}"#.to_owned(),
    )
    .unwrap();

    assert_eq!(moergo.get_layout_config(&uuid(1)).unwrap(), None);
    assert!(!raw.exists(&key.key_bytes()).unwrap(), "and it is removed");
    assert_eq!(
        moergo.get_layout_config(&uuid(2)).unwrap(),
        Some(document(r#"{"layers": []}"#)),
        "a plain document written the same way reads back: the refusal is the check, not the path"
    );
}
