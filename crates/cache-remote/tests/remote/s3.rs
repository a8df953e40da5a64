//! The remote tier on S3 (a real SeaweedFS with SigV4 keys, started by each test): what two
//! machines share, what wrong or read-only credentials cost, a server killed in the middle of
//! an upload and of a download, a chunk deleted behind the cache's back, signatures, and chunks
//! streamed in pieces (several per chunk) changed, cut short or made longer on the server: a
//! value or a directory that is never stored or served.

use std::io::Read as _;
use std::time::Duration;

use cache_core::{RemoteLease, RemoteStore as _, RemoteValue, Tag};
use cache_remote::{RemoteMode, SecretKey};
use cache_test_support::s3::{READER, S3Server, WRITER};

use crate::gate::Gate;
use crate::{machine, pattern, s3_config};

const CHUNK: usize = 64 * 1024;

/// The object name of the chunk holding `bytes`, under the key prefix `prefix`.
fn chunk_object(prefix: &str, bytes: &[u8]) -> String {
    format!("{prefix}/glovebox/v1/c/{}", blake3::hash(bytes).to_hex())
}

#[test]
fn s3_two_roots_share_an_inline_value_and_a_chunked_one_and_chunks_are_sent_once() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let a = machine(s3_config(&server, "share", Some(WRITER)));
    let b = machine(s3_config(&server, "share", Some(WRITER)));
    let big = pattern(5 * CHUNK + 123, 3);
    a.cache
        .set(b"small", b"uf2 bytes", Some(Duration::from_secs(3600)))
        .unwrap();
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    assert_eq!(a.remote.stats().published, 2, "{:?}", a.remote.stats());
    assert!(server.get(&chunk_object("share", &big[..CHUNK])).is_some());

    assert_eq!(b.cache.get(b"small").unwrap(), Some(b"uf2 bytes".to_vec()));
    assert_eq!(b.cache.get(b"big").unwrap(), Some(big.clone()));
    assert_eq!(b.remote.stats().hits, 2);
    let metadata = b.cache.get_metadata(b"small").unwrap().unwrap();
    assert!(metadata.expires_at.is_some(), "the expiry travels");

    // The same bytes under another key: the chunks are there (HEAD), only the envelope goes.
    let sent = a.remote.stats().bytes_out;
    a.cache
        .set_from_reader(b"big again", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    let again = a.remote.stats().bytes_out - sent;
    assert!(again < CHUNK as u64, "chunks sent again: {again} bytes");
    assert_eq!(b.cache.get(b"big again").unwrap(), Some(big));
    // S3 alone has no leases: every machine computes.
    let tag = Tag::new("layout").unwrap();
    assert!(matches!(
        a.remote.lease(&tag, b"k", Duration::from_secs(10)),
        RemoteLease::NotCoordinated
    ));
}

#[test]
fn s3_wrong_credentials_are_a_clear_counted_error_and_local_operations_go_on() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let wrong = (WRITER.0, "not-the-secret-at-all");
    let a = machine(s3_config(&server, "wrong", Some(wrong)));
    a.cache.set(b"k", b"local value", None).unwrap();
    a.cache.flush().unwrap();
    assert_eq!(a.cache.get(b"k").unwrap(), Some(b"local value".to_vec()));
    let stats = a.remote.stats();
    assert_eq!((stats.published, stats.dropped), (0, 1), "{stats:?}");

    assert_eq!(a.cache.get(b"missing").unwrap(), None);
    let tag = Tag::new("layout").unwrap();
    let err = match a.remote.fetch(&tag, b"missing") {
        Err(err) => err.to_string(),
        Ok(_) => panic!("a fetch with a wrong secret succeeded"),
    };
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");
    assert!(!err.contains("Signature="), "a signed URL leaked: {err}");
    // Counted; refusals are answers, so the breaker stays closed and reads still ask.
    assert!(a.remote.stats().errors >= 3, "{:?}", a.remote.stats());
    assert_eq!(a.remote.stats().skipped, 0);
}

#[test]
fn s3_a_read_only_key_reads_and_its_refused_writes_turn_publishing_off_without_an_error() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let writer = machine(s3_config(&server, "ro", Some(WRITER)));
    writer
        .cache
        .set(b"shared", b"from the writer", None)
        .unwrap();
    writer.cache.flush().unwrap();

    // Misconfigured as rw with the read-only key: the server refuses, writes turn off.
    let reader = machine(s3_config(&server, "ro", Some(READER)));
    reader.cache.set(b"mine", b"stays local", None).unwrap();
    reader.cache.flush().unwrap();
    reader.cache.set(b"mine too", b"stays local", None).unwrap();
    reader.cache.flush().unwrap();
    assert_eq!(
        reader.cache.get(b"mine").unwrap(),
        Some(b"stays local".to_vec())
    );
    let stats = reader.remote.stats();
    assert_eq!(stats.published, 0, "{stats:?}");
    // The first write was refused; the second was not even tried.
    assert_eq!(stats.errors, 1, "{stats:?}");
    let mine = cache_remote::entry_name("glovebox", "layout", b"mine");
    assert_eq!(
        server.get(&format!("ro/{mine}")),
        None,
        "a refused write landed"
    );
    assert_eq!(
        reader.cache.get(b"shared").unwrap(),
        Some(b"from the writer".to_vec())
    );

    // `ro` with the read-only key, and `ro` anonymous: both read.
    for key in [Some(READER), None] {
        let mut config = s3_config(&server, "ro", key);
        config.mode = RemoteMode::ReadOnly;
        let ro = machine(config);
        assert_eq!(
            ro.cache.get(b"shared").unwrap(),
            Some(b"from the writer".to_vec())
        );
        ro.cache.set(b"x", b"y", None).unwrap();
        ro.cache.flush().unwrap();
        assert_eq!(ro.remote.stats().errors, 0);
    }
}

#[test]
fn s3_a_chunk_deleted_behind_the_caches_back_makes_the_entry_a_miss() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let a = machine(s3_config(&server, "deleted", Some(WRITER)));
    let b = machine(s3_config(&server, "deleted", Some(WRITER)));
    let big = pattern(3 * CHUNK, 5);
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    server.delete(&chunk_object("deleted", &big[CHUNK..2 * CHUNK]));
    assert_eq!(b.cache.get(b"big").unwrap(), None);
    assert!(
        b.cache.keys().unwrap().is_empty(),
        "a partial value was stored"
    );
    assert!(b.remote.stats().misses >= 1, "{:?}", b.remote.stats());
}

#[test]
fn s3_with_trusted_keys_an_entry_signed_by_another_key_is_rejected() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let trusted = SecretKey::generate("ci-1").unwrap();
    let stranger = SecretKey::generate("ci-1").unwrap();
    let write = |name: &str, text: String| {
        let path = keys.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let stranger_key = write("stranger.key", stranger.to_file_text());
    let trusted_key = write("trusted.key", trusted.to_file_text());
    let trusted_list = write("trusted", format!("{}\n", trusted.public_line()));

    let mut forger = s3_config(&server, "signed", Some(WRITER));
    forger.signing_key = Some(stranger_key);
    let forger = machine(forger);
    forger.cache.set(b"k", b"forged", None).unwrap();
    forger.cache.flush().unwrap();

    let mut verifying = s3_config(&server, "signed", Some(READER));
    verifying.trusted_keys = Some(trusted_list);
    let reader = machine(verifying.clone());
    assert_eq!(reader.cache.get(b"k").unwrap(), None);
    assert_eq!(reader.remote.stats().rejected, 1);
    assert!(reader.cache.keys().unwrap().is_empty());

    let mut signer = s3_config(&server, "signed", Some(WRITER));
    signer.signing_key = Some(trusted_key);
    let signer = machine(signer);
    signer.cache.set(b"k", b"genuine", None).unwrap();
    signer.cache.flush().unwrap();
    let reader = machine(verifying);
    assert_eq!(reader.cache.get(b"k").unwrap(), Some(b"genuine".to_vec()));
}

#[test]
fn s3_server_killed_in_the_middle_of_an_upload_drops_it_and_local_operations_go_on() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let port = server
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap();
    // Held past two chunks' worth: the upload is surely in its middle.
    let gate = Gate::start(port, 2 * CHUNK as u64);
    let mut config = s3_config(&server, "upload", Some(WRITER));
    config.s3_endpoint = Some(gate.endpoint());
    let a = machine(config);
    let big = pattern(20 * CHUNK, 7);
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    gate.wait_held();
    server.kill();
    gate.open();
    a.cache.flush().unwrap();
    let stats = a.remote.stats();
    assert_eq!((stats.published, stats.dropped), (0, 1), "{stats:?}");
    assert!(stats.errors >= 1, "{stats:?}");
    assert_eq!(a.cache.get(b"big").unwrap(), Some(big));
    a.cache.set(b"after", b"fine", None).unwrap();
    assert_eq!(a.cache.get(b"after").unwrap(), Some(b"fine".to_vec()));
}

#[test]
fn s3_server_killed_in_the_middle_of_a_download_is_an_error_then_a_miss() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let a = machine(s3_config(&server, "download", Some(WRITER)));
    let b = machine(s3_config(&server, "download", Some(WRITER)));
    let big = pattern(4 * CHUNK, 9);
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();

    let tag = Tag::new("layout").unwrap();
    let entry = b.remote.fetch(&tag, b"big").unwrap().expect("a hit");
    let RemoteValue::Stream { mut reader, .. } = entry.value else {
        panic!("a chunked value streams");
    };
    let mut first = vec![0u8; CHUNK];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(first, big[..CHUNK]);
    server.kill();
    let mut rest = Vec::new();
    assert!(
        reader.read_to_end(&mut rest).is_err(),
        "a dead server served"
    );
    assert!(b.remote.stats().errors >= 1);

    assert_eq!(b.cache.get(b"big").unwrap(), None);
    assert!(b.cache.keys().unwrap().is_empty());
    b.cache.set(b"after", b"fine", None).unwrap();
    assert_eq!(b.cache.get(b"after").unwrap(), Some(b"fine".to_vec()));
}

#[test]
fn s3_a_killed_server_costs_three_errors_and_then_is_skipped_by_the_breaker() {
    let Some(mut server) = S3Server::start() else {
        return;
    };
    let b = machine(s3_config(&server, "breaker", Some(WRITER)));
    assert_eq!(b.cache.get(b"warm").unwrap(), None);
    server.kill();
    for index in 0..10u32 {
        let key = format!("missing {index}");
        assert_eq!(b.cache.get(key.as_bytes()).unwrap(), None);
    }
    let stats = b.remote.stats();
    assert_eq!((stats.errors, stats.skipped), (3, 7), "{stats:?}");
    b.cache.set(b"local", b"still works", None).unwrap();
    b.cache.flush().unwrap();
    assert_eq!(
        b.cache.get(b"local").unwrap(),
        Some(b"still works".to_vec())
    );
}

/// A chunk size that streams each chunk in several pieces (of 1 MiB) and ends on a short one.
const PIECED_CHUNK: usize = (3 << 20) / 2;

#[test]
fn s3_a_chunk_changed_cut_short_or_made_longer_is_never_stored_or_served_when_chunks_stream_in_pieces()
 {
    let Some(server) = S3Server::start() else {
        return;
    };
    let mut config = s3_config(&server, "pieces", Some(WRITER));
    config.chunk_size = PIECED_CHUNK;
    let a = machine(config.clone());
    let b = machine(config);
    let len = 3 * PIECED_CHUNK - 1000;
    let values: Vec<(&[u8], Vec<u8>)> = [
        &b"changed"[..],
        b"cut middle",
        b"cut last",
        b"longer middle",
        b"longer last",
        b"intact",
    ]
    .into_iter()
    .zip(11u8..)
    .map(|(key, seed)| (key, pattern(len, seed)))
    .collect();
    for (key, bytes) in &values {
        a.cache.set_from_reader(key, &mut &bytes[..], None).unwrap();
    }
    a.cache.flush().unwrap();
    let middle = |bytes: &[u8]| bytes[PIECED_CHUNK..2 * PIECED_CHUNK].to_vec();
    let last = |bytes: &[u8]| bytes[2 * PIECED_CHUNK..].to_vec();
    for (key, bytes) in &values {
        let (original, mut replaced) = match *key {
            b"changed" | b"cut middle" | b"longer middle" => (middle(bytes), middle(bytes)),
            b"cut last" | b"longer last" => (last(bytes), last(bytes)),
            _ => continue,
        };
        match *key {
            // Past the first piece, the length kept: only the whole's digest can tell.
            b"changed" => replaced[(1 << 20) + 10] ^= 0xff,
            b"cut middle" | b"cut last" => replaced.truncate(replaced.len() - 1),
            _ => replaced.extend_from_slice(b"more"),
        }
        let object = chunk_object("pieces", &original);
        assert!(server.get(&object).is_some(), "{object} is not a chunk");
        server.put(&object, &replaced);
    }

    for (key, bytes) in &values {
        let mut sink = Vec::new();
        let read = b.cache.get_to_writer(key, &mut sink).unwrap();
        if *key == b"intact" {
            assert_eq!(read, Some(len as u64));
            assert_eq!(sink, *bytes, "the intact value streamed in pieces");
            continue;
        }
        let name = String::from_utf8_lossy(key);
        assert_eq!(read, None, "{name}");
        assert!(sink.is_empty(), "bytes of {name} reached the sink");
        assert_eq!(b.cache.get(key).unwrap(), None, "{name}");
    }
    assert_eq!(b.cache.keys().unwrap(), vec![b"intact".to_vec()]);
    let counters = b.cache.get_stats().unwrap().counters.remote;
    assert_eq!(counters.backfills, 1, "{counters:?}");
}

#[test]
fn s3_a_directory_whose_last_chunk_changed_is_rejected_before_its_last_piece_and_stores_nothing() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let mut config = s3_config(&server, "dir-pieces", Some(WRITER));
    config.chunk_size = PIECED_CHUNK;
    let a = machine(config.clone());
    let b = machine(config);
    // One file: the directory's contents are its bytes, in chunks of several pieces.
    let file = pattern(2 * PIECED_CHUNK + (3 << 19), 13);
    let staged = a.cache.stage_directory().unwrap();
    std::fs::write(staged.path().join("zmk.uf2"), &file).unwrap();
    a.cache
        .set_directory(b"build", staged, b"{\"build\":1}", None)
        .unwrap()
        .expect("stored");
    a.cache.flush().unwrap();
    let last = &file[2 * PIECED_CHUNK..];
    let object = chunk_object("dir-pieces", last);
    assert!(server.get(&object).is_some(), "{object} is not a chunk");
    let mut changed = last.to_vec();
    // In the last piece, the length kept.
    let at = changed.len() - 10;
    changed[at] ^= 0xff;
    server.put(&object, &changed);

    assert_eq!(b.cache.get_directory(b"build").unwrap(), None);
    assert!(b.cache.keys().unwrap().is_empty());
    assert_eq!(b.remote.stats().rejected, 1);
    let dirs = b.root.path().join("layout/dirs");
    let left: Vec<String> = if dirs.exists() {
        cache_test_support::tree::snapshot(&dirs)
            .into_keys()
            .filter(|path| path != ".staging")
            .collect()
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "{left:?}");
}
