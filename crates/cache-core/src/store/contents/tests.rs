//! Unit tests of `store/contents.rs`: content names, directory rows, and what a read hashes.

#![allow(
    clippy::unwrap_used,
    reason = "tests: a panic is a failed test with its location"
)]

use std::sync::Arc;

use super::*;
use crate::store::content_records::{decode_uses, encode_uses};

#[test]
fn content_names_round_trip_with_negative_times() {
    let key = ContentKey {
        hash: [7; 32],
        mode: 0o644,
        mtime: (-5, 12),
    };
    assert_eq!(ContentKey::parse(&key.name()), Some(key));
    assert_eq!(ContentKey::parse("zz_644_1_2"), None);
}

#[test]
fn content_rows_round_trip_and_refuse_truncation() {
    let uses = vec![
        ContentUse {
            path: b"a/\xffb".to_vec(),
            name: "n1".to_owned(),
            allocated: 4096,
        },
        ContentUse {
            path: b"c".to_vec(),
            name: "n2".to_owned(),
            allocated: 0,
        },
    ];
    let row = encode_uses(&uses);
    assert_eq!(decode_uses(&row), Some(uses));
    assert_eq!(decode_uses(&row[..row.len() - 1]), None);
}

fn open_in(root: &std::path::Path) -> Arc<super::super::RedbCache> {
    let canonical = crate::files::prepare_root(root).unwrap();
    super::super::RedbCache::open(
        &canonical,
        crate::tag::Tag::new("t").unwrap(),
        crate::config::CacheOptions::default(),
    )
    .unwrap()
}

fn store_tree(cache: &super::super::RedbCache, key: &[u8], files: usize) {
    let staged = cache.stage_directory().unwrap();
    for index in 0..files {
        let path = staged.path().join(format!("f{index}"));
        std::fs::write(&path, format!("content {index}").repeat(100)).unwrap();
        // One time for both trees, so that they share every file.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    }
    cache
        .set_directory(key, staged, b"v", None)
        .unwrap()
        .unwrap();
}

/// A read by another instance (another process) trusts the shared files whose content files
/// look exactly as recorded when their names last changed, without reading them; once one is
/// written to, it is read and found changed.
#[test]
fn a_read_hashes_only_files_changed_since_their_names_last_changed() {
    let root = tempfile::tempdir().unwrap();
    let writer = open_in(root.path());
    store_tree(&writer, b"a", 20);
    store_tree(&writer, b"b", 20);
    let a = writer.get_directory(b"a").unwrap().unwrap();
    let b = writer.get_directory(b"b").unwrap().unwrap();
    let inode = |dir: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join("f3")).unwrap())
    };
    assert_eq!(inode(&a.path), inode(&b.path), "shared");
    // `a` goes: the files `b` still shares have one name less, recorded again.
    assert!(writer.delete(b"a").unwrap());
    writer.flush().unwrap();
    writer.close().unwrap();
    drop(writer);

    let reader = open_in(root.path());
    let found = reader.get_directory(b"b").unwrap().unwrap();
    assert_eq!(found.verified_files.len(), 20);
    assert_eq!(reader.content_files.verifications(), 0, "nothing read");

    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(found.path.join("f3"))
        .unwrap();
    std::io::Write::write_all(&mut file, b"x").unwrap();
    // The time put back, as someone covering a change would: only the bytes tell.
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    drop(file);
    assert_eq!(reader.get_directory(b"b").unwrap(), None);
    assert_eq!(
        reader.content_files.verifications(),
        1,
        "the changed file only"
    );
}
