//! The docker image check cache.
