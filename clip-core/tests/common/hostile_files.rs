//! Builders of hand-made checkpoint files, shared by the tests of clip-core (`weights.rs`,
//! `bad_input.rs`) and of the experiment binaries (`rn50/tests/bad_input.rs`, through `#[path]`).
#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::path::Path;

/// A zip archive of stored (uncompressed) entries, as torch writes its checkpoints.
pub fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// What `pickle.dumps` writes for an object whose `__reduce__` is `(module.name, (arg,))`.
pub fn reduce_pickle(module: &str, name: &str, arg: &str) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(format!("c{module}\n{name}\n").as_bytes());
    p.push(b'X');
    p.extend_from_slice(&(arg.len() as u32).to_le_bytes());
    p.extend_from_slice(arg.as_bytes());
    p.extend_from_slice(b"\x85R.");
    p
}
