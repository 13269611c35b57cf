//! PyTorch zip checkpoints: TorchScript archives (`torch.jit.save`, OpenAI's releases) and
//! `torch.save` state dicts.
//!
//! Mirrors `torch.jit.load(f).state_dict()` and `torch.load(f)` (`torch/serialization.py`
//! `_load`): `<name>/data.pkl` is unpickled with [`super::pickle`], and each tensor's bytes are
//! read from `<name>/data/<storage key>`. A TorchScript archive pickles its module tree as
//! `__torch__.*` objects; the state-dict keys are the dotted attribute paths of the tensors each
//! class declares in `__parameters__` / `__buffers__` of its `code/` source (tensors that are
//! plain attributes are not part of `state_dict()`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use tch::{Device, Tensor};
use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::{self, Object, TensorRecord, Value};
use super::{kind_of, WeightsError};

/// Largest `data.pkl` (or code file) read; real ones are a few hundred KiB.
const MAX_PICKLE_BYTES: u64 = 1 << 30;
/// Most modules and tensors a TorchScript module tree may hold.
const MAX_NODES: usize = 10_000_000;
/// A tensor may be at most this many times larger than its storage (or than
/// [`MIN_EXPANSION_CAP`]), which only zero strides allow.
const MAX_EXPANSION: u64 = 64;
const MIN_EXPANSION_CAP: u64 = 1 << 20;
/// Largest buffer allocated on an entry header's word before its bytes arrive.
const PREALLOCATE_MAX: u64 = 64 << 20;

type Zip = ZipArchive<BufReader<File>>;

/// Reads every state-dict tensor of the zip checkpoint at `path`.
pub(crate) fn load(
    path: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let zip_err = |entry: &str, source| WeightsError::Zip {
        path: path.to_path_buf(),
        entry: entry.to_string(),
        source,
    };
    let file = crate::clip::files::open_regular(path)
        .map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    let mut zip =
        ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err("central directory", e))?;
    let prefix =
        find_prefix(&zip).ok_or_else(|| WeightsError::NoDataPkl { path: path.to_path_buf() })?;

    let byteorder_entry = format!("{prefix}byteorder");
    if zip.index_for_name(&byteorder_entry).is_some() {
        let order = read_entry(path, &mut zip, &byteorder_entry, 64)?;
        if order.trim_ascii() != b"little" {
            return Err(WeightsError::Layout {
                path: path.to_path_buf(),
                reason: format!(
                    "{byteorder_entry} says {:?}; only little-endian checkpoints are supported",
                    String::from_utf8_lossy(&order)
                ),
            });
        }
    }

    let pkl_entry = format!("{prefix}data.pkl");
    let bytes = read_entry(path, &mut zip, &pkl_entry, MAX_PICKLE_BYTES)?;
    let root = pickle::unpickle(&bytes).map_err(|source| WeightsError::Pickle {
        path: path.to_path_buf(),
        entry: pkl_entry.clone(),
        source,
    })?;
    drop(bytes);
    let layout = |reason: String| WeightsError::Layout {
        path: path.to_path_buf(),
        reason: format!("{pkl_entry}: {reason}"),
    };
    let records = match &root {
        Value::Object(module) => {
            let mut code = CodeIndex { prefix: &prefix, files: HashMap::new() };
            let mut out = Vec::new();
            let mut budget = MAX_NODES;
            collect_module(module, "", &mut code, &mut zip, &mut out, &mut budget)
                .map_err(layout)?;
            out
        }
        Value::Dict(_) => select_state_dict(&root).map_err(layout)?,
        other => {
            return Err(layout(format!(
                "holds a {}, not a TorchScript module or a dict of tensors",
                other.kind()
            )))
        }
    };
    drop(root);
    read_tensors(path, &mut zip, &prefix, records, stop)
}

/// The `<name>/` that holds `data.pkl` (first such entry, in archive order).
fn find_prefix(zip: &Zip) -> Option<String> {
    zip.file_names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .find(|p| p.is_empty() || (p.ends_with('/') && p.matches('/').count() == 1))
        .map(str::to_string)
}

/// Reads a whole archive entry of at most `cap` bytes.
fn read_entry(path: &Path, zip: &mut Zip, entry: &str, cap: u64) -> Result<Vec<u8>, WeightsError> {
    let zip_err =
        |source| WeightsError::Zip { path: path.to_path_buf(), entry: entry.to_string(), source };
    let mut file = zip.by_name(entry).map_err(zip_err)?;
    if file.size() > cap {
        return Err(WeightsError::Layout {
            path: path.to_path_buf(),
            reason: format!("{entry} is {} bytes, more than the {cap} accepted", file.size()),
        });
    }
    // The header's size is only a claim: read no more than it (a deflated entry whose header
    // understates its size would otherwise inflate without bound), and do not trust it for the
    // first allocation either.
    let declared = file.size();
    let mut buf = Vec::with_capacity(declared.min(PREALLOCATE_MAX) as usize);
    file.by_ref()
        .take(declared.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| zip_err(ZipError::Io(e)))?;
    if buf.len() as u64 > declared {
        return Err(WeightsError::Layout {
            path: path.to_path_buf(),
            reason: format!("{entry} holds more bytes than its header's {declared}"),
        });
    }
    Ok(buf)
}

/// `torch.save` checkpoints: a dict of tensors, or a dict whose `state_dict` / `model` entry is one.
fn select_state_dict(root: &Value) -> Result<Vec<(String, TensorRecord)>, String> {
    let items = root.as_dict().ok_or("not a dict")?;
    let is_tensor = |(_, v): &&(Value, Value)| matches!(v, Value::Tensor(_));
    if items.iter().all(|kv| is_tensor(&kv)) {
        return tensor_items(items);
    }
    for wanted in ["state_dict", "model"] {
        let found = items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if s == wanted));
        if let Some((_, inner @ Value::Dict(d))) = found {
            if d.items.iter().all(|kv| is_tensor(&kv)) {
                return tensor_items(&d.items);
            }
            return Err(format!(
                "its `{wanted}` entry holds values that are not tensors: {}",
                describe_non_tensors(inner)
            ));
        }
    }
    Err(format!(
        "holds a dict with non-tensor values ({}) and no `state_dict` or `model` dict of tensors",
        describe_non_tensors(root)
    ))
}

fn describe_non_tensors(dict: &Value) -> String {
    let bad: Vec<String> = dict
        .as_dict()
        .unwrap_or_default()
        .iter()
        .filter(|(_, v)| !matches!(v, Value::Tensor(_)))
        .map(|(k, v)| format!("{} = {}", key_text(k), v.kind()))
        .collect();
    let shown = bad.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if bad.len() > 5 {
        format!("{shown}, … {} in all", bad.len())
    } else {
        shown
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => format!("`{s}`"),
        other => format!("<{}>", other.kind()),
    }
}

fn tensor_items(items: &[(Value, Value)]) -> Result<Vec<(String, TensorRecord)>, String> {
    items
        .iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k.clone(), (**t).clone())),
            (k, _) => Err(format!("state-dict key {} is not a string", key_text(k))),
        })
        .collect()
}

/// The `__parameters__` and `__buffers__` each TorchScript class declares in `code/`.
struct CodeIndex<'p> {
    prefix: &'p str,
    /// Source file → its text (`None` when absent or unreadable).
    files: HashMap<String, Option<String>>,
}

impl CodeIndex<'_> {
    /// The parameter and buffer names `class` (`__torch__.a.b.Name`) declares, or `None` when
    /// its source cannot be found, in which case every tensor attribute is taken.
    fn declared(&mut self, zip: &mut Zip, class: &str) -> Option<Vec<String>> {
        let (module, name) = class.rsplit_once('.')?;
        let file = format!("{}code/{}.py", self.prefix, module.replace('.', "/"));
        let text = self.files.entry(file).or_insert_with_key(|file| {
            let mut entry = zip.by_name(file).ok()?;
            if entry.size() > MAX_PICKLE_BYTES {
                return None;
            }
            let mut text = String::new();
            entry.read_to_string(&mut text).ok()?;
            Some(text)
        });
        let text = text.as_deref()?;
        let header = format!("class {name}(");
        let start = text.lines().position(|l| l.starts_with(&header))?;
        let body = text.lines().skip(start + 1).take_while(|l| !l.starts_with("class "));
        let mut names = Vec::new();
        for line in body {
            let line = line.trim();
            let list = line
                .strip_prefix("__parameters__ = [")
                .or_else(|| line.strip_prefix("__buffers__ = ["));
            if let Some(list) = list.and_then(|l| l.strip_suffix(']')) {
                names.extend(
                    list.split(',')
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .filter(|s| !s.is_empty()),
                );
            }
        }
        Some(names)
    }
}

/// Walks a TorchScript module, collecting its parameters and buffers under dotted keys.
fn collect_module(
    module: &Object,
    prefix: &str,
    code: &mut CodeIndex,
    zip: &mut Zip,
    out: &mut Vec<(String, TensorRecord)>,
    budget: &mut usize,
) -> Result<(), String> {
    let attrs = module.state.as_dict().ok_or_else(|| {
        format!(
            "module `{prefix}` ({}) has a {} state, not an attribute dict",
            module.class,
            module.state.kind()
        )
    })?;
    let declared = code.declared(zip, &module.class);
    for (name, value) in attrs {
        *budget = budget.checked_sub(1).ok_or("the module tree has too many nodes")?;
        let Value::Str(name) = name else { continue };
        match value {
            Value::Tensor(t) if declared.as_ref().is_none_or(|d| d.contains(name)) => {
                out.push((format!("{prefix}{name}"), (**t).clone()));
            }
            Value::Object(sub) => {
                collect_module(sub, &format!("{prefix}{name}."), code, zip, out, budget)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `rec` lies within its storage of `entry_len` bytes; returns the storage's byte
/// size. Pure arithmetic, so a hostile header cannot make it read out of bounds.
pub fn check_bounds(rec: &TensorRecord, entry_len: u64) -> Result<u64, String> {
    let elem = rec.dtype.size().ok_or("unsupported dtype")? as u64;
    let storage_elem = rec.storage.dtype.size().ok_or("unsupported dtype")? as u64;
    let storage_bytes =
        rec.storage.numel.checked_mul(storage_elem).ok_or("storage size overflows")?;
    if storage_bytes > entry_len {
        return Err(format!(
            "the storage declares {storage_bytes} bytes but its archive entry holds {entry_len}"
        ));
    }
    let mut numel: u64 = 1;
    let mut last = rec.offset; // index of the last element touched
    for (&size, &stride) in rec.shape.iter().zip(&rec.strides) {
        let (size, stride) = (size as u64, stride as u64); // both checked non-negative by the unpickler
        numel = numel.checked_mul(size).ok_or("element count overflows")?;
        if size > 0 {
            last = (size - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(last))
                .ok_or("extent overflows")?;
        }
    }
    let end = if numel == 0 { rec.offset } else { last + 1 };
    let needed = end.checked_mul(elem).ok_or("extent overflows")?;
    if needed > storage_bytes {
        return Err(format!(
            "offset {} with size {:?} and stride {:?} needs {needed} bytes, the storage has {storage_bytes}",
            rec.offset, rec.shape, rec.strides
        ));
    }
    // Zero strides may repeat elements; cap how far, so a header cannot demand terabytes.
    let bytes = numel.checked_mul(elem).ok_or("element count overflows")?;
    if bytes > storage_bytes.max(MIN_EXPANSION_CAP).saturating_mul(MAX_EXPANSION) {
        return Err(format!(
            "size {:?} with stride {:?} expands a {storage_bytes}-byte storage to {bytes} bytes",
            rec.shape, rec.strides
        ));
    }
    Ok(storage_bytes)
}

/// Reads each storage once and turns the records into tch tensors (the one place this happens).
fn read_tensors(
    path: &Path,
    zip: &mut Zip,
    prefix: &str,
    records: Vec<(String, TensorRecord)>,
    stop: &dyn Fn() -> bool,
) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let mut by_storage: BTreeMap<String, Vec<(String, TensorRecord)>> = BTreeMap::new();
    for (key, rec) in records {
        if rec.dtype.size().is_none()
            || kind_of(&rec.dtype).is_none()
            || rec.storage.dtype.size().is_none()
        {
            let dtype = if rec.dtype.size().is_none() { &rec.dtype } else { &rec.storage.dtype };
            return Err(WeightsError::UnsupportedDtype {
                path: path.to_path_buf(),
                key,
                dtype: dtype.name().to_string(),
            });
        }
        by_storage.entry(rec.storage.key.clone()).or_default().push((key, rec));
    }
    let mut out = BTreeMap::new();
    for (storage, users) in by_storage {
        if stop() {
            return Err(WeightsError::Interrupted { path: path.to_path_buf() });
        }
        let entry = format!("{prefix}data/{storage}");
        let first_key = users.first().map(|(k, _)| k.clone()).unwrap_or_default();
        let entry_len = match zip.by_name(&entry) {
            Ok(f) => f.size(),
            Err(ZipError::FileNotFound) => {
                return Err(WeightsError::MissingStorage {
                    path: path.to_path_buf(),
                    key: first_key,
                    entry,
                })
            }
            Err(source) => {
                return Err(WeightsError::Zip { path: path.to_path_buf(), entry, source })
            }
        };
        let mut storage_bytes = 0;
        for (key, rec) in &users {
            storage_bytes =
                check_bounds(rec, entry_len).map_err(|detail| WeightsError::StorageOutOfRange {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    storage: entry.clone(),
                    detail,
                })?;
        }
        let mut bytes = read_entry(path, zip, &entry, u64::MAX)?;
        bytes.truncate(storage_bytes as usize);
        for (key, rec) in users {
            let fail = |source| WeightsError::Tensor {
                path: path.to_path_buf(),
                key: key.clone(),
                source,
            };
            let t = to_tensor(&bytes, &rec).map_err(fail)?;
            out.insert(key, t);
        }
    }
    Ok(out)
}

/// Builds the tensor `rec` describes from its storage's bytes (already bounds-checked).
fn to_tensor(storage: &[u8], rec: &TensorRecord) -> Result<Tensor, tch::TchError> {
    let kind =
        kind_of(&rec.dtype).ok_or_else(|| tch::TchError::Kind(rec.dtype.name().to_string()))?;
    let elem = kind.elt_size_in_bytes();
    let n = storage.len() / elem;
    let flat = Tensor::f_from_data_size(&storage[..n * elem], &[n as i64], kind)?;
    let view = flat.f_as_strided(&rec.shape, &rec.strides, Some(rec.offset as i64))?;
    if view.numel() == n && view.is_contiguous() {
        return Ok(view);
    }
    // A slice or permutation of a shared storage: own a contiguous copy.
    let mut owned = Tensor::f_empty(&rec.shape, (kind, Device::Cpu))?;
    owned.f_copy_(&view)?;
    Ok(owned)
}
