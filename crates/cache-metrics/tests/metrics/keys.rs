//! Session ids and the session key: validation, stability (golden bytes), unambiguity, TTL.

use std::collections::HashSet;
use std::time::Duration;

use cache_core::{CacheKey, CacheTtlConfig};
use cache_metrics::{METRICS_TAG, MetricsError, SessionId, SessionKey};
use rstest::rstest;

const UUID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

fn key_of(text: &str) -> Vec<u8> {
    let id = SessionId::parse(text).expect("a valid session id");
    SessionKey::new(&id, &CacheTtlConfig::default()).key_bytes()
}

#[test]
fn session_key_bytes_are_stable() {
    // Golden value: changing it orphans every stored session, so it must be a deliberate choice
    // (with a new schema version), never an accident of refactoring.
    assert_eq!(
        String::from_utf8(key_of(UUID)).unwrap(),
        "session:d43a11b21bf497a6f5bfb1daa1b898061135f480bdc84593113cd8263d16455d"
    );
}

#[test]
fn the_same_session_in_another_case_is_the_same_key() {
    assert_eq!(key_of(UUID), key_of(&UUID.to_ascii_uppercase()));
}

#[test]
fn different_sessions_have_different_keys() {
    assert_ne!(key_of(UUID), key_of("67e55044-10b1-426f-9247-bb680e5fe0c9"));
}

#[test]
fn the_key_lives_in_the_metrics_tag_and_expires_after_the_configured_level() {
    let id = SessionId::parse(UUID).unwrap();
    let key = SessionKey::new(&id, &CacheTtlConfig::default());
    assert_eq!(<SessionKey as CacheKey>::TAG, METRICS_TAG);
    assert_eq!(METRICS_TAG, "metrics");
    assert_eq!(key.default_ttl(), Some(Duration::from_secs(7 * 24 * 3600)));

    let short = CacheTtlConfig::default().with(
        &cache_metrics::ttl::METRICS_SESSIONS,
        Duration::from_secs(60),
    );
    let key_with_short_ttl = SessionKey::new(&id, &short);
    assert_eq!(
        key_with_short_ttl.default_ttl(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        key_with_short_ttl.key_bytes(),
        key.key_bytes(),
        "the TTL is not part of the key"
    );
}

#[rstest]
#[case::simple_form("67e5504410b1426f9247bb680e5fe0c8")]
#[case::braces("{67e55044-10b1-426f-9247-bb680e5fe0c8}")]
#[case::not_hex("67e55044-10b1-426f-9247-bb680e5fe0cz")]
#[case::empty("")]
#[case::path("../../etc/passwd")]
fn an_invalid_session_id_is_a_clear_error(#[case] text: &str) {
    let err = SessionId::parse(text).unwrap_err();
    assert!(
        matches!(err, MetricsError::InvalidSessionId { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("8-4-4-4-12"), "{err}");
}

#[test]
fn an_invalid_session_id_in_stored_json_is_refused() {
    let err = serde_json::from_str::<SessionId>("\"nope\"").unwrap_err();
    assert!(err.to_string().contains("invalid session id"), "{err}");
    let ok: SessionId = serde_json::from_str(&format!("\"{UUID}\"")).unwrap();
    assert_eq!(ok.as_str(), UUID);
}

#[test]
fn generated_ids_are_valid_version_4_uuids_and_distinct() {
    let ids: HashSet<SessionId> = (0..1_000).map(|_| SessionId::generate()).collect();
    assert_eq!(ids.len(), 1_000);
    for id in &ids {
        assert_eq!(SessionId::parse(id.as_str()).unwrap(), *id);
        assert_eq!(&id.as_str()[14..15], "4", "version nibble of {id}");
        assert!(
            matches!(&id.as_str()[19..20], "8" | "9" | "a" | "b"),
            "variant of {id}"
        );
    }
}
