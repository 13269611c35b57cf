//! The restricted unpickler on arbitrary bytes: it must return a value or an error, never panic,
//! overflow its stack or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = clip_core::clip::weights::pickle::unpickle(data);
});
