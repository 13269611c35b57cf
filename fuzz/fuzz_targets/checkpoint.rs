//! A whole checkpoint file (zip archive, safetensors or anything else) through `StateDict::load`,
//! as the binaries read `--weights PATH`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else { return };
    if file.write_all(data).and_then(|_| file.flush()).is_err() {
        return;
    }
    let _ = clip_core::clip::weights::StateDict::load(file.path());
});
