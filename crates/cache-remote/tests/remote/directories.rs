//! Directories owned by entries, shared by two machines through the server: byte for byte
//! (files in nested directories, modes, an empty file, an empty directory, contents over several
//! chunks), through Redis and through S3 (SeaweedFS); signed like any entry; a list planted on the server that would write outside its
//! staging directory, or name a path twice, is refused before anything is written; a chunk gone
//! from the server is a miss that stores nothing.

use cache_test_support::tree::{snapshot, write_with_mode};
use std::fs;
use std::os::unix::fs::PermissionsExt;

use cache_core::keys::hex;
use cache_core::{Cache, ValueFormat};
use cache_remote::{SecretKey, entry_name};
use cache_test_support::redis::RedisServer;
use cache_test_support::s3::{S3Server, WRITER};

use crate::{config, machine, pattern, s3_config};

/// Stores a directory of files at several depths (one over several chunks), modes, an empty
/// file and an empty directory under `key`.
fn store_sample(cache: &Cache, key: &[u8]) {
    let staged = cache.stage_directory().expect("the helper's step");
    let top = staged.path();
    fs::create_dir_all(top.join("zephyr/include/generated")).expect("the helper's step");
    write_with_mode(&top.join("zephyr/zmk.uf2"), &pattern(300 * 1024, 3), 0o644);
    write_with_mode(
        &top.join("zephyr/include/generated/devicetree_generated.h"),
        b"#define DT 1\n",
        0o600,
    );
    write_with_mode(&top.join("tool"), b"#!/bin/sh\n", 0o755);
    write_with_mode(&top.join("empty.hex"), b"", 0o640);
    fs::create_dir(top.join("empty")).expect("the helper's step");
    fs::set_permissions(top.join("empty"), fs::Permissions::from_mode(0o750))
        .expect("the helper's step");
    cache
        .set_directory(key, staged, b"{\"build\":1}", None)
        .expect("the helper's step")
        .expect("stored");
}

#[test]
fn a_directory_stored_on_one_machine_is_fetched_byte_for_byte_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    store_sample(&a.cache, b"build:1");
    a.cache.flush().unwrap();
    assert_eq!(a.remote.stats().published, 1);
    let original = snapshot(&a.cache.get_directory(b"build:1").unwrap().unwrap().path);
    assert_eq!(original.len(), 8, "{:?}", original.keys());

    let fetched = b.cache.get_directory(b"build:1").unwrap().expect("a hit");
    assert_eq!(fetched.value, b"{\"build\":1}");
    assert_eq!(snapshot(&fetched.path), original);
    assert!(fetched.path.starts_with(b.root.path()));
    assert_eq!(b.remote.stats().hits, 1);

    // Stored locally, and not published back.
    server.command("FLUSHALL");
    let again = b.cache.get_directory(b"build:1").unwrap().expect("local");
    assert_eq!(snapshot(&again.path), original);
    b.cache.flush().unwrap();
    assert_eq!(b.remote.stats().published, 0);
}

#[test]
fn s3_a_directory_stored_on_one_machine_is_fetched_byte_for_byte_on_the_other() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let a = machine(s3_config(&server, "dirs", Some(WRITER)));
    let b = machine(s3_config(&server, "dirs", Some(WRITER)));
    store_sample(&a.cache, b"build:1");
    a.cache.flush().unwrap();
    assert_eq!(a.remote.stats().published, 1, "{:?}", a.remote.stats());
    let original = snapshot(&a.cache.get_directory(b"build:1").unwrap().unwrap().path);
    assert_eq!(original.len(), 8, "{:?}", original.keys());
    // The envelope and the contents' chunks (300 KiB in 64 KiB chunks) are S3 objects.
    let envelope = entry_name("glovebox", "layout", b"build:1");
    assert!(server.get(&format!("dirs/{envelope}")).is_some());

    let fetched = b.cache.get_directory(b"build:1").unwrap().expect("a hit");
    assert_eq!(fetched.value, b"{\"build\":1}");
    assert_eq!(snapshot(&fetched.path), original);
    assert!(fetched.path.starts_with(b.root.path()));
    assert_eq!(b.remote.stats().hits, 1, "{:?}", b.remote.stats());

    // Stored locally, and not published back: with the envelope gone from the server, the
    // second read is local.
    server.delete(&format!("dirs/{envelope}"));
    let again = b.cache.get_directory(b"build:1").unwrap().expect("local");
    assert_eq!(snapshot(&again.path), original);
    b.cache.flush().unwrap();
    assert_eq!(b.remote.stats().published, 0);
}

#[test]
fn a_signed_directory_is_used_by_a_reader_that_trusts_its_key() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let writer = SecretKey::generate("ci-1").unwrap();
    let secret = keys.path().join("writer");
    fs::write(&secret, writer.to_file_text()).unwrap();
    let trusted = keys.path().join("trusted");
    fs::write(&trusted, writer.public_line()).unwrap();
    let mut signing = config(&server);
    signing.signing_key = Some(secret);
    let mut verifying = config(&server);
    verifying.trusted_keys = Some(trusted);
    let a = machine(signing);
    let unsigned = machine(config(&server));
    let b = machine(verifying);
    store_sample(&a.cache, b"build:signed");
    a.cache.flush().unwrap();
    store_sample(&unsigned.cache, b"build:unsigned");
    unsigned.cache.flush().unwrap();

    assert!(b.cache.get_directory(b"build:signed").unwrap().is_some());
    assert_eq!(b.cache.get_directory(b"build:unsigned").unwrap(), None);
    assert_eq!(b.remote.stats().rejected, 1);
}

/// An item of a planted list: path, mode, and a file's length (`None`: a directory).
type Planted<'a> = (&'a str, u32, Option<u64>);

/// Writes into the server, as a writer with access to it could, a directory envelope (format
/// of `cache-remote`'s `envelope.rs` and `directory.rs`, sound in every byte: checksum, digests,
/// chunk) for `key` of `layout`, with the list `items` and `contents` in one chunk.
fn plant_directory(server: &RedisServer, key: &[u8], items: &[Planted<'_>], contents: &[u8]) {
    let client = redis::Client::open(server.url()).expect("the helper's step");
    let mut connection = client.get_connection().expect("the helper's step");
    let chunk_size = contents.len().max(1) as u32;
    let mut chunks = Vec::new();
    if !contents.is_empty() {
        let digest = *blake3::hash(contents).as_bytes();
        let _: () = redis::cmd("SET")
            .arg(format!("glovebox/v1/c/{}", hex(&digest)))
            .arg(contents)
            .query(&mut connection)
            .expect("the helper's step");
        chunks.push(digest);
    }
    let value = b"planted";
    let mut listing = Vec::new();
    listing.extend_from_slice(&(value.len() as u32).to_le_bytes());
    listing.extend_from_slice(value);
    listing.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for (path, mode, len) in items {
        listing.extend_from_slice(&(path.len() as u16).to_le_bytes());
        listing.extend_from_slice(path.as_bytes());
        listing.extend_from_slice(&mode.to_le_bytes());
        match len {
            None => listing.push(1),
            Some(len) => {
                listing.push(2);
                listing.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
    let contents_digest = *blake3::hash(contents).as_bytes();
    let mut described = b"glovebox-cache remote directory v1\0".to_vec();
    described.extend_from_slice(&listing);
    described.extend_from_slice(&contents_digest);
    let digest = blake3::hash(&described);

    let mut envelope = b"GBRE".to_vec();
    envelope.push(1);
    envelope.push(3);
    envelope.push(ValueFormat::RAW.codec.to_byte());
    envelope.extend_from_slice(&ValueFormat::RAW.schema_version.to_le_bytes());
    envelope.extend_from_slice(&0u64.to_le_bytes());
    envelope.extend_from_slice(&(contents.len() as u64).to_le_bytes());
    envelope.extend_from_slice(digest.as_bytes());
    envelope.extend_from_slice(&listing);
    envelope.extend_from_slice(&contents_digest);
    envelope.extend_from_slice(&chunk_size.to_le_bytes());
    envelope.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for chunk in &chunks {
        envelope.extend_from_slice(chunk);
    }
    envelope.push(0);
    let checksum = blake3::hash(&envelope);
    envelope.extend_from_slice(checksum.as_bytes());
    let _: () = redis::cmd("SET")
        .arg(entry_name("glovebox", "layout", key))
        .arg(envelope)
        .query(&mut connection)
        .expect("the helper's step");
}

#[test]
fn a_planted_list_that_escapes_or_repeats_is_refused_and_nothing_is_written() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = machine(config(&server));
    let outside = tempfile::tempdir().unwrap();
    let absolute = format!("{}/x", outside.path().display());
    // A sound list in the same format is accepted: what is refused below is refused for its
    // paths, not its bytes.
    plant_directory(
        &server,
        b"sound",
        &[("d", 0o755, None), ("d/x", 0o644, Some(2))],
        b"ok",
    );
    let sound = b.cache.get_directory(b"sound").unwrap().expect("accepted");
    assert_eq!(fs::read(sound.path.join("d/x")).unwrap(), b"ok");
    let before = snapshot(b.root.path());

    let cases: [(&[u8], Vec<Planted<'_>>); 5] = [
        (b"parent", vec![("../x", 0o644, Some(2))]),
        (
            b"deeper",
            vec![("d", 0o755, None), ("d/../../../x", 0o644, Some(2))],
        ),
        (b"absolute", vec![(absolute.as_str(), 0o644, Some(2))]),
        (
            b"duplicate",
            vec![("x", 0o644, Some(1)), ("x", 0o644, Some(1))],
        ),
        (
            b"below a file",
            vec![("x", 0o644, Some(1)), ("x/y", 0o644, Some(1))],
        ),
    ];
    for (key, items) in cases {
        plant_directory(&server, key, &items, b"xx");
        assert_eq!(
            b.cache.get_directory(key).unwrap(),
            None,
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(b.cache.keys().unwrap(), vec![b"sound".to_vec()]);
    assert!(snapshot(outside.path()).is_empty(), "written outside");
    let after = snapshot(b.root.path());
    let changed: Vec<&String> = after
        .iter()
        .filter(|(path, state)| before.get(*path) != Some(state) && !path.ends_with(".redb"))
        .map(|(path, _)| path)
        .collect();
    assert!(changed.is_empty(), "written in the root: {changed:?}");
}

#[test]
fn a_directory_whose_chunk_has_gone_is_a_miss_and_stores_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    store_sample(&a.cache, b"build:gone");
    a.cache.flush().unwrap();
    // As an evicting `maxmemory` would: one chunk of the contents goes.
    let middle = middle_chunk(&server);
    server.command(&format!("DEL {middle}"));

    assert_eq!(b.cache.get_directory(b"build:gone").unwrap(), None);
    assert!(b.cache.keys().unwrap().is_empty());
    let staging = b.root.path().join("layout/dirs/.staging");
    assert!(
        !staging.exists() || snapshot(&staging).is_empty(),
        "{:?}",
        snapshot(&staging).keys()
    );
    let dirs = b.root.path().join("layout/dirs");
    let owned: Vec<String> = snapshot(&dirs)
        .into_keys()
        .filter(|path| !path.starts_with(".staging"))
        .collect();
    assert!(owned.is_empty(), "{owned:?}");
}

#[test]
fn a_directory_whose_chunk_was_changed_in_place_is_rejected_and_stores_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    store_sample(&a.cache, b"build:changed");
    a.cache.flush().unwrap();
    // Four bytes of one chunk of the contents overwritten, its length kept: no chunk is checked
    // alone, the contents' digest is (before the last chunk is handed over).
    let middle = middle_chunk(&server);
    let before = server.command(&format!("STRLEN {middle}"));
    server.command(&format!("SETRANGE {middle} 5 ~~~~"));
    let after = server.command(&format!("STRLEN {middle}"));
    assert_eq!(before, after, "the chunk's length changed");

    assert_eq!(b.cache.get_directory(b"build:changed").unwrap(), None);
    assert!(b.cache.keys().unwrap().is_empty());
    assert_eq!(b.remote.stats().rejected, 1);
    let staging = b.root.path().join("layout/dirs/.staging");
    assert!(!staging.exists() || snapshot(&staging).is_empty());
    let owned: Vec<String> = snapshot(&b.root.path().join("layout/dirs"))
        .into_keys()
        .filter(|path| !path.starts_with(".staging"))
        .collect();
    assert!(owned.is_empty(), "{owned:?}");
}

/// The name of a chunk from the middle of what the server holds (a sample directory's
/// contents span more than two).
fn middle_chunk(server: &RedisServer) -> String {
    let chunks = server.command("KEYS glovebox/v1/c/*");
    let names: Vec<&str> = chunks
        .lines()
        .filter(|line| line.starts_with("glovebox/"))
        .collect();
    assert!(names.len() > 2, "{chunks}");
    names[names.len() / 2].to_owned()
}
