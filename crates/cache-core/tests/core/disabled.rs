//! The disabled cache: every operation is a harmless no-op.

use std::time::Duration;

use cache_core::{Cache, Tag};

use crate::typed::Note;

#[test]
fn every_operation_is_a_no_op() {
    let cache = Cache::disabled(Tag::new("t").unwrap());
    cache.set(b"k", b"v", Some(Duration::from_secs(1))).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), None);
    assert!(!cache.exists(b"k").unwrap());
    assert!(!cache.delete(b"k").unwrap());
    assert_eq!(cache.delete_many(&[b"k", b"j"]).unwrap(), 0);
    assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(cache.get_metadata(b"k").unwrap(), None);
    assert_eq!(cache.cleanup().unwrap().total(), 0);
    cache.clear().unwrap();
    cache.flush().unwrap();
    let stats = cache.get_stats().unwrap();
    assert!(!stats.enabled);
    assert_eq!(stats.tag, "t");
    assert_eq!(stats.entries, 0);
    assert!(!cache.is_enabled());
    assert_eq!(cache.database_path(), None);
    cache.close().unwrap();
}

#[test]
fn typed_access_misses_and_computes() {
    let cache = Cache::disabled(Tag::new("t").unwrap());
    cache.set_typed(&Note("k"), &"v".to_owned()).unwrap();
    assert_eq!(cache.get_typed(&Note("k")).unwrap(), None);
    let mut computed = 0;
    for _ in 0..2 {
        let value: Result<String, cache_core::CacheError> =
            cache.get_or_insert_with(&Note("k"), || {
                computed += 1;
                Ok("fresh".to_owned())
            });
        assert_eq!(value.unwrap(), "fresh");
    }
    assert_eq!(computed, 2, "nothing is cached, so every call computes");
}
