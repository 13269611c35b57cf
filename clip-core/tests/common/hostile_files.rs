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

/// Appends a pickle BINUNICODE string.
pub fn push_str(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend_from_slice(&(s.len() as u32).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

/// What `pickle.dumps` writes for an object whose `__reduce__` is `(module.name, (arg,))`.
pub fn reduce_pickle(module: &str, name: &str, arg: &str) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend_from_slice(format!("c{module}\n{name}\n").as_bytes());
    push_str(&mut p, arg);
    p.extend_from_slice(b"\x85R.");
    p
}

/// `{"w": _rebuild_tensor_v2(('storage', torch.<class>, '0', 'cpu', numel), offset, size, stride, False, OrderedDict())}`
pub fn tensor_pickle(
    storage_class: &str,
    numel: u8,
    offset: u8,
    size: &[u8],
    stride: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    push_str(&mut p, "w");
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    push_str(&mut p, "storage");
    p.extend_from_slice(format!("ctorch\n{storage_class}\n").as_bytes());
    push_str(&mut p, "0");
    push_str(&mut p, "cpu");
    p.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset, b'(']);
    size.iter().for_each(|&s| p.extend_from_slice(&[b'K', s]));
    p.extend_from_slice(b"t(");
    stride.iter().for_each(|&s| p.extend_from_slice(&[b'K', s]));
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

/// A pickle nesting 100 000 lists: must be refused by depth, not overflow the stack.
pub fn deeply_nested_pickle() -> Vec<u8> {
    let mut nested = vec![0x80, 2];
    nested.extend(std::iter::repeat_n(b']', 100_000));
    nested.extend(std::iter::repeat_n(b'a', 99_999));
    nested.push(b'.');
    nested
}

/// BINBYTES8 claiming 2^60 bytes: must be refused, not allocated.
pub fn huge_length_pickle() -> Vec<u8> {
    let mut claim = vec![0x80, 4, 0x8e];
    claim.extend_from_slice(&(1u64 << 60).to_le_bytes());
    claim
}
