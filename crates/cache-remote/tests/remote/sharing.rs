//! What two machines share through the server: small values, large ones in chunks, and
//! expiry; a local hit asks nothing.

use std::time::Duration;

use crate::{config, machine, pattern};
use cache_test_support::redis::RedisServer;

#[test]
fn a_value_written_on_one_machine_is_a_hit_on_the_other_and_stays_there() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    a.cache
        .set(
            b"firmware:abc",
            b"uf2 bytes",
            Some(Duration::from_secs(3600)),
        )
        .unwrap();
    a.cache.flush().unwrap();
    assert_eq!(a.remote.stats().published, 1);

    assert_eq!(
        b.cache.get(b"firmware:abc").unwrap(),
        Some(b"uf2 bytes".to_vec())
    );
    assert_eq!(b.remote.stats().hits, 1);
    // Backfilled: the next read is local, and B publishes nothing back.
    server.command("FLUSHALL");
    assert_eq!(
        b.cache.get(b"firmware:abc").unwrap(),
        Some(b"uf2 bytes".to_vec())
    );
    assert_eq!(b.remote.stats().hits, 1, "a local hit asked the remote");
    b.cache.flush().unwrap();
    assert_eq!(b.remote.stats().published, 0);
    let metadata = b.cache.get_metadata(b"firmware:abc").unwrap().unwrap();
    assert!(
        metadata.expires_at.is_some(),
        "the expiry travels with the value"
    );
}

#[test]
fn a_large_value_travels_in_verified_chunks_and_shared_chunks_are_sent_once() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    let big = pattern(300 * 1024, 1);
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    let sent_once = a.remote.stats().bytes_out;
    assert!(sent_once >= big.len() as u64);
    // The same bytes under another key: the chunks are on the server already.
    a.cache
        .set_from_reader(b"same", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    let sent_twice = a.remote.stats().bytes_out;
    assert!(sent_twice - sent_once < 4096, "the chunks were sent again");

    let mut out = Vec::new();
    assert_eq!(
        b.cache.get_to_writer(b"big", &mut out).unwrap(),
        Some(big.len() as u64)
    );
    assert_eq!(out, big);
    assert_eq!(b.cache.get(b"same").unwrap(), Some(big.clone()));
    server.command("FLUSHALL");
    assert_eq!(b.cache.get(b"big").unwrap(), Some(big), "stored locally");
}

#[test]
fn a_manifest_whose_chunks_are_gone_is_a_miss_not_an_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    let big = pattern(200 * 1024, 2);
    a.cache
        .set_from_reader(b"big", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    // As an evicting `maxmemory` would: every chunk goes, the envelope stays.
    let chunks = server.command("KEYS glovebox/v1/c/*");
    for name in chunks.lines().filter(|line| line.starts_with("glovebox/")) {
        server.command(&format!("DEL {name}"));
    }
    assert_eq!(b.cache.get(b"big").unwrap(), None);
    let mut out = Vec::new();
    assert_eq!(b.cache.get_to_writer(b"big", &mut out).unwrap(), None);
    assert!(out.is_empty());
    assert!(
        b.cache.keys().unwrap().is_empty(),
        "nothing was stored locally"
    );
}
