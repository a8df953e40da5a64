//! Integration tests of the `glovebox-cache` binary: one test binary, one module per area. Every
//! test runs the real binary against its own temp root, with `HOME`, `XDG_CACHE_HOME` and
//! `GLOVEBOX_CACHE_PATH` pointed into a temp directory, so none touches the real cache.

mod support;

mod cleanup;
mod clear;
mod config;
mod containment;
mod delete;
mod doctor;
mod entry;
mod general;
mod json_errors;
mod keys;
mod metrics;
mod remote;
mod show;
mod workspace;
