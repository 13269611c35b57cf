//! Builders of hand-made checkpoint files (and a PNG header), shared by the tests of clip-core
//! (`weights.rs`, `bad_input.rs`, `preprocess.rs`, `compare.rs`) and of the experiment binaries
//! (`rn50/tests/bad_input.rs`, through `#[path]`).
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

/// A PNG whose header claims `width` x `height` RGB pixels, with one (empty) IDAT: enough for a
/// decoder to read the size, nothing to decode.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}
