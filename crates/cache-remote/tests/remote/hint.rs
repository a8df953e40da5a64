//! The breaker hint under the cache root, in one process (the command-line tests run it across
//! processes): an opening breaker writes it, a remote attached to the root later starts open,
//! and the endpoint answering a half-open probe removes it.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Coordinator, Environment, RemoteStore};
use cache_remote::{BreakerState, Remote};
use cache_test_support::redis::RedisServer;

use crate::{config, machine};

const HINT: &str = "remote-breaker.hint";

#[test]
fn a_breaker_that_opens_writes_the_hint_and_the_endpoint_answering_removes_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut settings = config(&server);
    settings.breaker_failures = 1;
    settings.operation_timeout = Duration::from_millis(200);
    // No open period: the next operation is the half-open probe.
    settings.breaker_open_for = Duration::ZERO;
    let a = machine(settings);
    let hint = a.root.path().join(HINT);
    server.signal("-STOP");
    assert_eq!(
        a.cache.get(b"k").unwrap(),
        None,
        "a stopped server is a miss"
    );
    assert!(hint.exists(), "the breaker opened and wrote the hint");
    server.signal("-CONT");
    assert_eq!(a.cache.get(b"k").unwrap(), None);
    assert_eq!(a.remote.breaker_state(), BreakerState::Closed);
    assert!(
        !hint.exists(),
        "the endpoint answered the probe: the hint is gone"
    );
}

#[test]
fn a_remote_attached_to_a_root_with_a_current_hint_starts_open_and_skips() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut settings = config(&server);
    settings.breaker_failures = 1;
    settings.operation_timeout = Duration::from_millis(200);
    let a = machine(settings.clone());
    server.signal("-STOP");
    assert_eq!(a.cache.get(b"k").unwrap(), None);
    server.signal("-CONT");
    // Another process on the same root (a new remote and coordinator; another tag, as one
    // process opens a tag's file once): open from the start,
    // although its server answers now; nothing goes to the network.
    let later = Arc::new(Remote::new(settings.clone()).unwrap());
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .with_remote(Arc::clone(&later) as Arc<dyn RemoteStore>);
    let cache = coordinator
        .get_shared_cache_instance(a.root.path(), "other", cache_core::CacheOptions::default())
        .unwrap();
    assert_eq!(later.breaker_state(), BreakerState::Open);
    assert_eq!(cache.get(b"k").unwrap(), None);
    assert_eq!(later.stats().skipped, 1);
    assert_eq!(later.stats().errors, 0);

    // A remote of another endpoint on that root ignores the hint.
    let mut elsewhere = settings;
    elsewhere.endpoint = format!("{}-other", elsewhere.endpoint);
    let other = Arc::new(Remote::new(elsewhere).unwrap());
    let root = cache_core::RootFiles::open_existing(a.root.path())
        .unwrap()
        .unwrap();
    other.attach_root(&root);
    assert_eq!(other.breaker_state(), BreakerState::Closed);
}
