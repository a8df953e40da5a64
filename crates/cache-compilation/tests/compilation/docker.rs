//! The docker image check cache: an hour by default, or as configured.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use cache_compilation::{CompilationCache, CompilationError, CompilationOptions};
use cache_core::{Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{HOUR, clock, config, coordinator, open, open_with, root};

const IMAGE: &str = "zmkfirmware/zmk-build-arm:stable";

#[rstest]
fn a_check_is_recorded_and_read_back(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let docker = &compilation.docker_images;
    assert_eq!(docker.get(IMAGE).unwrap(), None);
    let recorded = docker.record(IMAGE, true).unwrap();
    assert_eq!(docker.get(IMAGE).unwrap(), Some(recorded.clone()));
    assert!(recorded.available);
    assert!(docker.delete(IMAGE).unwrap());
    assert_eq!(docker.get(IMAGE).unwrap(), None);
}

#[rstest]
fn get_or_check_asks_once_per_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let asked = Cell::new(0);
    let check = || -> Result<bool, CompilationError> {
        asked.set(asked.get() + 1);
        Ok(false)
    };
    let docker = &compilation.docker_images;
    assert!(!docker.get_or_check(IMAGE, check).unwrap());
    assert!(!docker.get_or_check(IMAGE, check).unwrap());
    assert_eq!(asked.get(), 1, "the second answer came from the cache");

    clock.advance(HOUR);
    assert!(!docker.get_or_check(IMAGE, check).unwrap());
    assert_eq!(asked.get(), 2, "expired after an hour");
}

#[rstest]
fn the_ttl_is_an_hour_by_default_and_configurable(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(None, Some(Duration::from_secs(300)))] configured: Option<Duration>,
) {
    let options = CompilationOptions {
        docker_image_check_ttl: configured.unwrap_or(HOUR),
        ..CompilationOptions::default()
    };
    let compilation: CompilationCache = open_with(&coordinator, &config(&root, &clock), options);
    compilation.docker_images.record(IMAGE, true).unwrap();
    let ttl = configured.unwrap_or(HOUR);
    clock.advance(ttl - Duration::from_secs(1));
    assert!(compilation.docker_images.get(IMAGE).unwrap().is_some());
    clock.advance(Duration::from_secs(1));
    assert_eq!(compilation.docker_images.get(IMAGE).unwrap(), None);
}

#[rstest]
fn a_zero_ttl_and_an_empty_image_are_refused(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let options = CompilationOptions {
        docker_image_check_ttl: Duration::ZERO,
        ..CompilationOptions::default()
    };
    let err = CompilationCache::open_with_options(&coordinator, &config(&root, &clock), options)
        .unwrap_err();
    assert!(err.to_string().contains("docker_image_check_ttl"), "{err}");

    let compilation = open(&coordinator, &root, &clock);
    let err = compilation.docker_images.record("", true).unwrap_err();
    assert!(
        matches!(
            err,
            CompilationError::InvalidInput {
                what: "docker image",
                ..
            }
        ),
        "{err}"
    );
}
