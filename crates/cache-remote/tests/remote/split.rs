//! The split setup: envelopes and leases on Redis, chunks on S3. Two machines share a large
//! value whose chunks are S3 objects, and take the fleet's lease on Redis.

use std::time::Duration;

use cache_core::{RemoteLease, RemoteStore as _, Tag};
use cache_test_support::redis::RedisServer;
use cache_test_support::s3::{BUCKET, S3Server, WRITER};

use crate::{config, machine, pattern};

#[test]
fn split_redis_envelopes_and_s3_chunks_share_a_large_value_and_a_lease() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let split = || {
        let mut config = config(&redis);
        config.chunks = Some(format!("s3://{BUCKET}/split"));
        config.s3_endpoint = Some(s3.endpoint());
        config.access_key_id = Some(WRITER.0.to_owned());
        config.secret_access_key = Some(WRITER.1.to_owned());
        config
    };
    let a = machine(split());
    let b = machine(split());
    let big = pattern(3 * 64 * 1024 + 5, 11);
    a.cache
        .set_from_reader(b"firmware", &mut &big[..], None)
        .unwrap();
    a.cache.flush().unwrap();
    assert_eq!(a.remote.stats().published, 1);
    // The chunks are on S3, the envelope on Redis.
    let first_chunk = format!(
        "split/glovebox/v1/c/{}",
        blake3::hash(&big[..64 * 1024]).to_hex()
    );
    assert!(s3.get(&first_chunk).is_some());
    assert!(
        redis
            .command("KEYS glovebox/v1/e/*")
            .contains("glovebox/v1/e/layout/")
    );
    assert!(
        !redis
            .command("KEYS glovebox/v1/c/*")
            .contains("glovebox/v1/c/")
    );
    assert_eq!(b.cache.get(b"firmware").unwrap(), Some(big));

    let tag = Tag::new("layout").unwrap();
    let held = a.remote.lease(&tag, b"next", Duration::from_secs(30));
    assert!(matches!(held, RemoteLease::Granted(_)));
    assert!(matches!(
        b.remote.lease(&tag, b"next", Duration::from_secs(30)),
        RemoteLease::HeldElsewhere
    ));
    drop(held);
    assert!(matches!(
        b.remote.lease(&tag, b"next", Duration::from_secs(30)),
        RemoteLease::Granted(_)
    ));
}
