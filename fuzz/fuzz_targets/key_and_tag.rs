//! Fuzz target: the tag parser on arbitrary names, and the key renderer on arbitrary keys.

#![no_main]

use cache_core::fuzzing::{check_key_display, check_tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check_key_display(data) {
        panic!("{violation}");
    }
    // Tags arrive as `&str`: invalid UTF-8 cannot reach the parser, its lossy form can.
    let name = String::from_utf8_lossy(data);
    if let Err(violation) = check_tag(&name) {
        panic!("{violation}");
    }
});
