//! The S3 engine: objects in one bucket of S3 or an S3-compatible server (SeaweedFS, MinIO,
//! Ceph, R2), requests presigned with SigV4 by `rusty-s3` and sent by `ureq` (blocking, no
//! async runtime). Every name of the data model is an object under the bucket's key prefix.
//!
//! - An envelope is read with `Range: bytes=0-{max-1}`: its whole length comes from
//!   `Content-Range` (or `Content-Length` from a server that ignores ranges, whose body is then
//!   not read when it is too long). A chunk's `Content-Length` is checked before its body is read.
//! - A chunk is written with `If-None-Match: *` (a chunk is named by its content: `412` means it
//!   is there, which is as good); a server that does not implement conditional writes gets plain
//!   `PUT`s from then on. Envelopes are overwritten (a key set again is a new value).
//! - S3 has no expiry per object: envelopes carry theirs (readers enforce it), and a bucket
//!   lifecycle rule on the prefix collects old objects (`docs/remote.md`). `px` is ignored.
//! - Statuses: `404` a miss; `403`/`401` a refusal (wrong credentials, a read-only key: writes
//!   turn off); `5xx`, `429` and I/O errors a failure that counts against the breaker.
//!
//! Presigned URLs carry the access key id and a signature: they are never logged; errors name
//! the operation, the object and the server's error code only.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusty_s3::actions::{GetObject, HeadObject, PutObject};
use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use ureq::Agent;
use ureq::http::Response;

use crate::engine::{Engine, EngineError, FaultKind};

/// How long a presigned request stays valid: longer than any operation's timeout, with room
/// for clocks a little apart.
const PRESIGNED_FOR: Duration = Duration::from_secs(300);
/// The most of an error reply's body read for its `<Code>`.
const ERROR_BODY_LIMIT: u64 = 4096;

/// Where the objects are and who asks for them.
#[derive(Clone)]
pub(crate) struct S3Settings {
    pub(crate) bucket: String,
    /// Prepended to every name (`""`, or ending in `/`).
    pub(crate) key_prefix: String,
    /// `http(s)://host:port` of a non-AWS server (path-style), or `None` for AWS itself.
    pub(crate) endpoint: Option<String>,
    pub(crate) region: String,
    /// `None`: anonymous (unsigned) requests.
    pub(crate) credentials: Option<Credentials>,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
}

pub(crate) struct S3Engine {
    bucket: Bucket,
    key_prefix: String,
    credentials: Option<Credentials>,
    agent: Agent,
    /// Cleared when the server answered a conditional write with "not implemented".
    conditional_writes: AtomicBool,
}

impl std::fmt::Debug for S3Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Engine")
            .field("bucket", &self.bucket.name())
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Why the S3 settings cannot work (the caller names the endpoint).
#[derive(Debug)]
pub(crate) struct BadSettings(pub(crate) String);

impl S3Engine {
    pub(crate) fn new(settings: S3Settings) -> Result<S3Engine, BadSettings> {
        let (endpoint, style) = match &settings.endpoint {
            Some(endpoint) => (endpoint.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", settings.region),
                UrlStyle::VirtualHost,
            ),
        };
        let url = url::Url::parse(&endpoint)
            .map_err(|err| BadSettings(format!("endpoint `{endpoint}`: {err}")))?;
        if url.scheme() == "https" && !cfg!(feature = "tls") {
            return Err(BadSettings(format!(
                "endpoint `{endpoint}` needs TLS, which this build does not include (cache-remote's `tls` feature)"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadSettings(
                "credentials in the endpoint would be logged; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            ));
        }
        let bucket = Bucket::new(url, style, settings.bucket.clone(), settings.region.clone())
            .map_err(|err| BadSettings(format!("bucket `{}`: {err}", settings.bucket)))?;
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_global(Some(settings.operation_timeout))
            .build()
            .into();
        Ok(S3Engine {
            bucket,
            key_prefix: settings.key_prefix,
            credentials: settings.credentials,
            agent,
            conditional_writes: AtomicBool::new(true),
        })
    }

    fn object(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }

    /// The response to a `GET` of the chunk `object`, its body not read yet; `None` when it
    /// has gone, an error when it says it is longer than `max`.
    fn chunk_response(
        &self,
        object: &str,
        max: usize,
    ) -> Result<Option<Response<ureq::Body>>, EngineError> {
        let url =
            GetObject::new(&self.bucket, self.credentials.as_ref(), object).sign(PRESIGNED_FOR);
        let response = self.send("GET", object, |agent| agent.get(url.as_str()).call())?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(status_fault("GET", object, response)),
        }
        if let Some(len) = response.body().content_length()
            && len > max as u64
        {
            return Err(EngineError::new(
                FaultKind::Answered,
                format!("s3 GET {object}: {len} bytes, more than a chunk ({max})"),
            ));
        }
        Ok(Some(response))
    }

    /// Sends `request` (a presigned URL's request), turning client errors into engine faults.
    fn send(
        &self,
        what: &str,
        object: &str,
        request: impl FnOnce(&Agent) -> Result<Response<ureq::Body>, ureq::Error>,
    ) -> Result<Response<ureq::Body>, EngineError> {
        request(&self.agent).map_err(|err| client_fault(what, object, &err))
    }
}

/// A client error as a fault, without the URL (it carries the signature).
fn client_fault(what: &str, object: &str, err: &ureq::Error) -> EngineError {
    let (timeout, reason) = match err {
        ureq::Error::Timeout(which) => (true, format!("timed out ({which})")),
        ureq::Error::Io(io) => (
            matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            format!("{}", io.kind()),
        ),
        ureq::Error::HostNotFound => (false, "host not found".to_owned()),
        ureq::Error::ConnectionFailed => (false, "connection failed".to_owned()),
        ureq::Error::Protocol(protocol) => (false, format!("HTTP protocol error: {protocol}")),
        ureq::Error::BodyExceedsLimit(limit) => {
            return EngineError::new(
                FaultKind::Answered,
                format!("s3 {what} {object}: longer than {limit} bytes"),
            );
        }
        _ => (false, "HTTP client error".to_owned()),
    };
    EngineError::new(
        FaultKind::Unreachable { timeout },
        format!("s3 {what} {object}: {reason}"),
    )
}

/// A reply that is not a success as a fault, naming the server's error code.
fn status_fault(what: &str, object: &str, mut response: Response<ureq::Body>) -> EngineError {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(ERROR_BODY_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or(Cow::Borrowed(""), |(code, _)| {
            Cow::Owned(format!(" {code}"))
        });
    let (kind, hint) = match status {
        401 | 403 => (
            FaultKind::Refused,
            " (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the key's permissions)",
        ),
        429 | 500..=599 => (FaultKind::Unreachable { timeout: false }, ""),
        _ => (FaultKind::Answered, ""),
    };
    EngineError::new(kind, format!("s3 {what} {object}: {status}{code}{hint}"))
}

/// The whole length of an object from a `206`'s `Content-Range: bytes 0-n/TOTAL`.
fn range_total(response: &Response<ureq::Body>) -> Option<u64> {
    let header = response.headers().get("content-range")?.to_str().ok()?;
    header.rsplit_once('/')?.1.trim().parse().ok()
}

impl Engine for S3Engine {
    fn get_envelope(&self, name: &str, max: usize) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        let object = self.object(name);
        let url =
            GetObject::new(&self.bucket, self.credentials.as_ref(), &object).sign(PRESIGNED_FOR);
        let range = format!("bytes=0-{}", max.saturating_sub(1));
        let mut response = self.send("GET", &object, |agent| {
            agent.get(url.as_str()).header("Range", &range).call()
        })?;
        let status = response.status().as_u16();
        // The whole length, when the reply says it.
        let total = match status {
            206 => Some(range_total(&response).ok_or_else(|| {
                EngineError::new(
                    FaultKind::Answered,
                    format!("s3 GET {object}: a partial reply without its length"),
                )
            })?),
            200 => response.body().content_length(),
            // An empty object: no byte to give.
            416 => return Ok(Some((0, Vec::new()))),
            404 => return Ok(None),
            _ => return Err(status_fault("GET", &object, response)),
        };
        if let Some(total) = total
            && total > max as u64
        {
            // Too long to be ours: reported without reading it.
            return Ok(Some((total, Vec::new())));
        }
        // Unknown length: at most `max` bytes are read, more is an error.
        let bytes = response
            .body_mut()
            .with_config()
            .limit(max as u64)
            .read_to_vec()
            .map_err(|err| client_fault("GET", &object, &err))?;
        let len = total.unwrap_or(bytes.len() as u64);
        Ok(Some((len, bytes)))
    }

    fn get_chunk(
        &self,
        name: &str,
        max: usize,
        spare: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let object = self.object(name);
        let Some(mut response) = self.chunk_response(&object, max)? else {
            return Ok(None);
        };
        let capacity = response
            .body()
            .content_length()
            .map_or(0, |len| usize::try_from(len).unwrap_or(max).min(max));
        // Into the spare buffer when it is large enough: a fresh one costs a page fault and a
        // zeroed page per 4 KiB.
        let mut bytes = spare;
        bytes.clear();
        bytes.reserve(capacity);
        std::io::Read::read_to_end(
            &mut response.body_mut().with_config().limit(max as u64).reader(),
            &mut bytes,
        )
        .map_err(|err| client_fault("GET", &object, &ureq::Error::from(err)))?;
        Ok(Some(bytes))
    }

    fn streams_chunks(&self) -> bool {
        true
    }

    fn read_chunk(
        &self,
        name: &str,
        max: usize,
        each: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    ) -> Result<Option<()>, EngineError> {
        let object = self.object(name);
        let Some(mut response) = self.chunk_response(&object, max)? else {
            return Ok(None);
        };
        each(&mut response.body_mut().with_config().limit(max as u64).reader())
            .map_err(|err| client_fault("GET", &object, &ureq::Error::from(err)))?;
        Ok(Some(()))
    }

    fn put_envelope(&self, name: &str, bytes: &[u8], _px: Option<u64>) -> Result<(), EngineError> {
        let object = self.object(name);
        let url =
            PutObject::new(&self.bucket, self.credentials.as_ref(), &object).sign(PRESIGNED_FOR);
        let response = self.send("PUT", &object, |agent| agent.put(url.as_str()).send(bytes))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_fault("PUT", &object, response))
        }
    }

    fn keep_chunk(&self, name: &str, _px: Option<u64>) -> Result<bool, EngineError> {
        let object = self.object(name);
        let url =
            HeadObject::new(&self.bucket, self.credentials.as_ref(), &object).sign(PRESIGNED_FOR);
        let response = self.send("HEAD", &object, |agent| agent.head(url.as_str()).call())?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_fault("HEAD", &object, response)),
        }
    }

    fn put_chunk(&self, name: &str, bytes: &[u8], _px: Option<u64>) -> Result<(), EngineError> {
        let object = self.object(name);
        let url =
            PutObject::new(&self.bucket, self.credentials.as_ref(), &object).sign(PRESIGNED_FOR);
        if self.conditional_writes.load(Ordering::Relaxed) {
            let response = self.send("PUT", &object, |agent| {
                agent
                    .put(url.as_str())
                    .header("If-None-Match", "*")
                    .send(bytes)
            })?;
            match response.status().as_u16() {
                // 412: the chunk is there already (named by its content: the same bytes).
                200..=299 | 412 => return Ok(()),
                501 => {
                    tracing::debug!(
                        "the S3 server does not implement conditional writes; plain PUTs from now on"
                    );
                    self.conditional_writes.store(false, Ordering::Relaxed);
                }
                _ => return Err(status_fault("PUT", &object, response)),
            }
        }
        let response = self.send("PUT", &object, |agent| agent.put(url.as_str()).send(bytes))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_fault("PUT", &object, response))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_test_support::s3::{BUCKET, S3Server, WRITER};

    fn engine(server: &S3Server) -> S3Engine {
        S3Engine::new(S3Settings {
            bucket: BUCKET.to_owned(),
            key_prefix: "unit/".to_owned(),
            endpoint: Some(server.endpoint()),
            region: "us-east-1".to_owned(),
            credentials: Some(Credentials::new(WRITER.0, WRITER.1)),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10),
        })
        .unwrap()
    }

    fn reply(status: u16, body: &str) -> Response<ureq::Body> {
        Response::builder()
            .status(status)
            .body(ureq::Body::builder().data(body.as_bytes().to_vec()))
            .unwrap()
    }

    #[rstest::rstest]
    #[case::wrong_secret(
        403,
        "<Error><Code>SignatureDoesNotMatch</Code></Error>",
        FaultKind::Refused,
        "403 SignatureDoesNotMatch (check AWS_ACCESS_KEY_ID"
    )]
    #[case::no_auth(401, "", FaultKind::Refused, "401 (check")]
    #[case::slow_down(503, "<Error><Code>SlowDown</Code></Error>", FaultKind::Unreachable { timeout: false }, "503 SlowDown")]
    #[case::too_many(429, "", FaultKind::Unreachable { timeout: false }, "429")]
    #[case::bad_request(
        400,
        "<Error><Code>InvalidRequest</Code></Error>",
        FaultKind::Answered,
        "400 InvalidRequest"
    )]
    fn statuses_map_to_refusals_failures_and_answers_naming_the_code(
        #[case] status: u16,
        #[case] body: &str,
        #[case] kind: FaultKind,
        #[case] message: &str,
    ) {
        let fault = status_fault("GET", "p/glovebox/v1/e/t/h", reply(status, body));
        assert_eq!(fault.kind, kind);
        assert!(fault.message.contains(message), "{}", fault.message);
        assert!(
            fault.message.starts_with("s3 GET p/glovebox/v1/e/t/h: "),
            "{}",
            fault.message
        );
    }

    #[test]
    fn a_chunk_is_created_once_and_a_second_put_keeps_the_first_bytes() {
        let Some(server) = S3Server::start() else {
            return;
        };
        let engine = engine(&server);
        assert!(!engine.keep_chunk("c/1", None).unwrap());
        engine.put_chunk("c/1", b"first", None).unwrap();
        assert!(engine.keep_chunk("c/1", None).unwrap());
        // `If-None-Match: *`: the server answers 412, which is success, and keeps the object.
        engine.put_chunk("c/1", b"second", None).unwrap();
        assert!(engine.conditional_writes.load(Ordering::Relaxed));
        assert_eq!(
            engine.get_chunk("c/1", 1024, Vec::new()).unwrap(),
            Some(b"first".to_vec())
        );
        assert_eq!(server.get("unit/c/1"), Some(b"first".to_vec()));
        assert_eq!(engine.get_chunk("c/none", 1024, Vec::new()).unwrap(), None);
    }

    #[test]
    fn an_envelope_read_gives_the_whole_length_and_at_most_the_bound() {
        let Some(server) = S3Server::start() else {
            return;
        };
        let engine = engine(&server);
        let big = vec![7u8; 256 * 1024];
        engine.put_envelope("e/big", &big, None).unwrap();
        let (len, bytes) = engine.get_envelope("e/big", 1024).unwrap().unwrap();
        assert_eq!(len, big.len() as u64);
        assert!(bytes.len() <= 1024, "{} bytes read", bytes.len());
        engine.put_envelope("e/small", b"tiny", None).unwrap();
        assert_eq!(
            engine.get_envelope("e/small", 1024).unwrap(),
            Some((4, b"tiny".to_vec()))
        );
        assert_eq!(engine.get_envelope("e/none", 1024).unwrap(), None);
        // A chunk longer than a chunk can be is refused, not read.
        let err = engine.get_chunk("e/big", 1024, Vec::new()).unwrap_err();
        assert_eq!(err.kind, FaultKind::Answered);
        assert!(err.message.contains("more than a chunk"), "{err}");
    }
}
