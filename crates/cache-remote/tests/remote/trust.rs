//! Integrity and signatures: a flipped byte, an unsigned entry and an entry signed by an
//! untrusted key are misses, counted as rejected, never stored locally; a read-only ACL user
//! cannot publish, and the process stops trying.

use cache_remote::{SecretKey, TrustedKeys};
use cache_test_support::redis::RedisServer;

use crate::{config, machine};

/// Writes `key` into a file in `dir` and returns its path.
fn key_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the key file");
    path
}

#[test]
fn a_flipped_byte_on_the_server_is_rejected_and_never_served() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    a.cache.set(b"k", b"the right value", None).unwrap();
    a.cache.flush().unwrap();
    let names = server.command("KEYS glovebox/v1/e/*");
    let name = names
        .lines()
        .find(|line| line.starts_with("glovebox/"))
        .expect("the envelope's name")
        .to_owned();
    // Flip one byte of the stored value (a byte of "the right value", at its end region).
    let length: usize = server
        .command(&format!("STRLEN {name}"))
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    server.command(&format!("SETRANGE {name} {} X", length - 40));
    assert_eq!(b.cache.get(b"k").unwrap(), None);
    assert_eq!(b.remote.stats().rejected, 1);
    assert!(b.cache.keys().unwrap().is_empty());
}

#[test]
fn with_trusted_keys_only_entries_signed_by_one_of_them_are_used() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let writer = SecretKey::generate("ci-1").unwrap();
    let stranger = SecretKey::generate("ci-1").unwrap();
    let trusted_path = key_file(
        &keys,
        "trusted",
        &format!("# fleet\n{}\n", writer.public_line()),
    );
    assert!(TrustedKeys::read(&trusted_path).is_ok());

    let mut signed_config = config(&server);
    signed_config.signing_key = Some(key_file(&keys, "writer", &writer.to_file_text()));
    let mut stranger_config = config(&server);
    stranger_config.signing_key = Some(key_file(&keys, "stranger", &stranger.to_file_text()));
    let mut reader_config = config(&server);
    reader_config.trusted_keys = Some(trusted_path);

    let signer = machine(signed_config);
    let impostor = machine(stranger_config);
    let unsigned = machine(config(&server));
    let reader = machine(reader_config);

    signer.cache.set(b"good", b"signed", None).unwrap();
    signer.cache.flush().unwrap();
    impostor
        .cache
        .set(b"forged", b"by a stranger", None)
        .unwrap();
    impostor.cache.flush().unwrap();
    unsigned.cache.set(b"plain", b"unsigned", None).unwrap();
    unsigned.cache.flush().unwrap();

    assert_eq!(reader.cache.get(b"good").unwrap(), Some(b"signed".to_vec()));
    assert_eq!(reader.cache.get(b"forged").unwrap(), None);
    assert_eq!(reader.cache.get(b"plain").unwrap(), None);
    assert_eq!(reader.remote.stats().rejected, 2);
    assert_eq!(reader.cache.keys().unwrap(), vec![b"good".to_vec()]);

    // A signed envelope copied under another key does not verify there: the signature covers
    // the key.
    let good = cache_remote::entry_name("glovebox", "layout", b"good");
    let copy = cache_remote::entry_name("glovebox", "layout", b"copy");
    let reply = server.command(&format!("COPY {good} {copy}"));
    assert!(reply.starts_with(":1"), "{reply}");
    assert_eq!(reader.cache.get(b"copy").unwrap(), None);
    assert_eq!(reader.remote.stats().rejected, 3);
}

#[test]
fn a_read_only_user_reads_and_its_writes_stay_local() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let writer = machine(config(&server));
    writer.cache.set(b"shared", b"from ci", None).unwrap();
    writer.cache.flush().unwrap();
    let reply = server.command("ACL SETUSER reader on >secret ~* +@read -@write");
    assert!(reply.starts_with("+OK"), "{reply}");

    let mut reader_config = config(&server);
    reader_config.username = Some("reader".to_owned());
    reader_config.password = Some("secret".to_owned());
    let reader = machine(reader_config);
    assert_eq!(
        reader.cache.get(b"shared").unwrap(),
        Some(b"from ci".to_vec())
    );
    reader.cache.set(b"mine", b"local", None).unwrap();
    reader.cache.set(b"mine too", b"local", None).unwrap();
    reader.cache.flush().unwrap();
    assert_eq!(reader.cache.get(b"mine").unwrap(), Some(b"local".to_vec()));
    let stats = reader.remote.stats();
    assert_eq!(stats.published, 0);
    assert!(stats.dropped >= 1, "{stats:?}");
    let names = server.command("KEYS glovebox/v1/e/*");
    assert_eq!(
        names.lines().filter(|l| l.starts_with("glovebox/")).count(),
        1
    );
}

#[test]
fn a_chunk_changed_or_cut_short_on_the_server_is_rejected_and_never_stored_or_served() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    const CHUNK: usize = 64 * 1024;
    let changed = crate::pattern(4 * CHUNK + 100, 3);
    let cut = crate::pattern(4 * CHUNK + 100, 4);
    for (key, bytes) in [(&b"changed"[..], &changed), (&b"cut"[..], &cut)] {
        a.cache.set_from_reader(key, &mut &bytes[..], None).unwrap();
    }
    a.cache.flush().unwrap();
    let name = |bytes: &[u8]| format!("glovebox/v1/c/{}", blake3::hash(bytes).to_hex());
    // One byte of the second chunk of `changed` flipped, in place (same length): only the
    // whole value's digest can tell.
    let offset = CHUNK + 10;
    let other = if changed[offset] == b'X' { 'Y' } else { 'X' };
    let reply = server.command(&format!(
        "SETRANGE {} 10 {other}",
        name(&changed[CHUNK..2 * CHUNK])
    ));
    assert_eq!(reply.trim(), format!(":{CHUNK}"), "the chunk was changed");
    // The third chunk of `cut` replaced by a few bytes.
    let reply = server.command(&format!("SET {} short", name(&cut[2 * CHUNK..3 * CHUNK])));
    assert_eq!(reply.trim(), "+OK");

    for key in [&b"changed"[..], &b"cut"[..]] {
        let mut sink = Vec::new();
        assert_eq!(b.cache.get_to_writer(key, &mut sink).unwrap(), None);
        assert!(sink.is_empty(), "bytes of a bad value reached the sink");
        assert_eq!(b.cache.get(key).unwrap(), None);
    }
    assert!(b.cache.keys().unwrap().is_empty(), "a bad value was stored");
    // Counted in the tag's remote counters: the changed chunk by the core (the whole's digest),
    // the short one by the remote (its length).
    let counters = b.cache.get_stats().unwrap().counters.remote;
    assert_eq!((counters.rejected, counters.backfills), (4, 0));
}
