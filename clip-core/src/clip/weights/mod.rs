//! Checkpoints: reading OpenAI's TorchScript archives, `torch.save` state dicts and safetensors
//! files into a [`StateDict`], and copying one strictly into a `tch::nn::VarStore`.
//!
//! Mirrors `clip.load` (`clip/clip.py`: `torch.jit.load(...).state_dict()`, then
//! `build_model`'s `model.load_state_dict(state_dict)`, which is strict) and `_download`
//! ([`download`]). The format is told from the file's first bytes, never its extension.

pub mod archive;
pub mod download;
pub mod pickle;
pub mod safetensors;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

pub use download::{model_names, resolve_model};
pub use pickle::PickleError;

/// How many problems of each kind a [`WeightsError::Mismatch`] message spells out in full.
const SHOWN: usize = 5;

/// A key whose checkpoint shape differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub checkpoint: Vec<i64>,
    pub model: Vec<i64>,
}

/// Everything that can go wrong reading a checkpoint, fetching one, or loading it into a model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("weights path {} is a directory, not a checkpoint file", path.display())]
    IsDirectory { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a checkpoint: {reason}", path.display())]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error(
        "{} is a legacy (pre-1.6, non-zip) torch.save file, which is not supported; re-save it \
         with a current PyTorch (`torch.save(torch.load(f), f2)`) or convert it to safetensors",
        path.display()
    )]
    LegacyTorchSave { path: PathBuf },
    #[error("{} is a corrupt or truncated zip archive (reading {entry}): {source}", path.display())]
    Zip {
        path: PathBuf,
        entry: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{} is a zip archive without a `<name>/data.pkl` entry, so not a PyTorch checkpoint", path.display())]
    NoDataPkl { path: PathBuf },
    #[error("{}: {entry}: {source}", path.display())]
    Pickle {
        path: PathBuf,
        entry: String,
        #[source]
        source: PickleError,
    },
    #[error("{}: {reason}", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("{}: tensor `{key}` lies outside its storage `{storage}`: {detail}", path.display())]
    StorageOutOfRange { path: PathBuf, key: String, storage: String, detail: String },
    #[error("{}: tensor `{key}`: the archive has no storage entry `{entry}`", path.display())]
    MissingStorage { path: PathBuf, key: String, entry: String },
    #[error("{}: tensor `{key}` has dtype {dtype}, which is not supported", path.display())]
    UnsupportedDtype { path: PathBuf, key: String, dtype: String },
    #[error("{}: safetensors: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: ::safetensors::SafeTensorError,
    },
    #[error("{}: tensor `{key}`: {source}", path.display())]
    Tensor {
        path: PathBuf,
        key: String,
        #[source]
        source: tch::TchError,
    },
    #[error("{}", mismatch_report(path, missing, unexpected, shapes))]
    Mismatch {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
        shapes: Vec<ShapeMismatch>,
    },
    #[error("unknown model `{name}`; available models: {}", download::model_names().join(", "))]
    UnknownModel { name: String },
    #[error(
        "cannot find the home directory for the default cache ~/.cache/clip (HOME is not set); \
         pass a cache directory or the weights file itself (--weights PATH)"
    )]
    NoHome,
    #[error(
        "downloading {url} failed: {reason}\nDownload it yourself and pass `--weights PATH`, or put \
         the file at {}",
        target.display()
    )]
    Download { url: String, target: PathBuf, reason: String },
    #[error(
        "downloaded {url} but its SHA-256 is {actual}, not the expected {expected}; nothing was \
         saved. Download it yourself and pass `--weights PATH`, or put the file at {}",
        target.display()
    )]
    Checksum { url: String, target: PathBuf, expected: String, actual: String },
    /// The caller's `stop` asked to stop (Ctrl-C) while reading, hashing or downloading `path`.
    #[error("interrupted while reading {}: nothing was saved", path.display())]
    Interrupted { path: PathBuf },
}

fn mismatch_report(
    path: &Path,
    missing: &[String],
    unexpected: &[String],
    shapes: &[ShapeMismatch],
) -> String {
    let mut s = format!("{} does not match the model:", path.display());
    let mut list = |what: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        let _ = write!(s, "\n  {} {what}:", items.len());
        for item in items.iter().take(SHOWN) {
            let _ = write!(s, " {item};");
        }
        if items.len() > SHOWN {
            let _ = write!(s, " … and {} more", items.len() - SHOWN);
        }
    };
    list(
        "keys the model needs are missing from the checkpoint",
        missing.iter().map(|k| format!("`{k}`")).collect(),
    );
    list(
        "checkpoint keys are not in the model",
        unexpected.iter().map(|k| format!("`{k}`")).collect(),
    );
    list(
        "shapes differ",
        shapes
            .iter()
            .map(|m| {
                format!(
                    "`{}` is {:?} in the checkpoint but {:?} in the model",
                    m.key, m.checkpoint, m.model
                )
            })
            .collect(),
    );
    s
}

/// Maps a stored dtype onto a tch kind; `None` for dtypes this crate does not load.
pub(crate) fn kind_of(dtype: &pickle::Dtype) -> Option<Kind> {
    use pickle::Dtype as D;
    Some(match dtype {
        D::Half => Kind::Half,
        D::BFloat16 => Kind::BFloat16,
        D::Float => Kind::Float,
        D::Double => Kind::Double,
        D::Int64 => Kind::Int64,
        D::Int32 => Kind::Int,
        D::Int16 => Kind::Int16,
        D::Int8 => Kind::Int8,
        D::UInt8 => Kind::Uint8,
        D::Bool => Kind::Bool,
        D::Other(_) | D::Untyped => return None,
    })
}

/// The tensors of a checkpoint under their state-dict keys, on the CPU, in the dtype stored.
#[derive(Debug)]
pub struct StateDict {
    /// The file they were read from, for error messages.
    pub path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
}

impl StateDict {
    /// Reads a TorchScript archive (OpenAI's releases), a `torch.save` zip checkpoint or a
    /// safetensors file, told apart by content.
    ///
    /// For `torch.save` files the pickled object must be a dict of tensors, or a dict whose
    /// `state_dict` (else `model`) entry is one, as training scripts often save
    /// `{"state_dict": …, "epoch": …}`. For TorchScript archives the keys are those of
    /// `torch.jit.load(path).state_dict()`: every module's parameters and buffers.
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        Self::load_with(path, &|| false)
    }

    /// [`load`](Self::load), asking `stop` between tensors whether to give up
    /// ([`WeightsError::Interrupted`]).
    pub fn load_with(path: &Path, stop: &dyn Fn() -> bool) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WeightsError::Missing { path: path.to_path_buf() })
            }
            Err(e) => return Err(io(e)),
        };
        if meta.is_dir() {
            return Err(WeightsError::IsDirectory { path: path.to_path_buf() });
        }
        let mut file = crate::clip::files::open_regular(path).map_err(io)?;
        let mut head = Vec::with_capacity(16);
        file.by_ref().take(16).read_to_end(&mut head).map_err(io)?;
        let tensors = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            archive::load(path, stop)?
        } else if safetensors::looks_like(&head, meta.len()) {
            safetensors::load(path, stop)?
        } else if head.starts_with(&[0x80]) && head.get(2) == Some(&0x8a) {
            // Pickle protocol 2 opening with a long: torch's legacy magic number.
            return Err(WeightsError::LegacyTorchSave { path: path.to_path_buf() });
        } else {
            let reason = if head.is_empty() {
                "the file is empty".to_string()
            } else {
                "it is neither a zip archive (TorchScript or torch.save) nor a safetensors file"
                    .to_string()
            };
            return Err(WeightsError::NotACheckpoint { path: path.to_path_buf(), reason });
        };
        Ok(StateDict { path: path.to_path_buf(), tensors })
    }

    /// A state dict from tensors already in memory (random weights in tests, converted files);
    /// `path` only names them in error messages.
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: BTreeMap<String, Tensor>) -> Self {
        StateDict { path: path.into(), tensors }
    }

    /// The tensors, by key.
    pub fn into_tensors(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }

    /// (key, tensor) pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// The tensor stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape of the tensor under `key`.
    pub fn shape(&self, key: &str) -> Option<Vec<i64>> {
        self.tensors.get(key).map(Tensor::size)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Copies the checkpoint into `vs`, strictly.
    ///
    /// Every variable of `vs` must be present with the same shape, and every key must be a
    /// variable, except `ignored` keys (which may be present or not). Values are converted to
    /// each variable's kind and device and copied in place under `no_grad`. All problems are
    /// reported together; nothing is copied unless there are none.
    pub fn load_into(&self, vs: &tch::nn::VarStore, ignored: &[&str]) -> Result<(), WeightsError> {
        self.load_into_with(vs, ignored, &|| false)
    }

    /// [`load_into`](Self::load_into), asking `stop` between tensors whether to give up
    /// ([`WeightsError::Interrupted`]; the variables are then partly copied).
    pub fn load_into_with(
        &self,
        vs: &tch::nn::VarStore,
        ignored: &[&str],
        stop: &dyn Fn() -> bool,
    ) -> Result<(), WeightsError> {
        let mut vars = vs.variables();
        let ignored: BTreeSet<&str> = ignored.iter().copied().collect();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        let mut missing = Vec::new();
        let mut shapes = Vec::new();
        for name in names {
            match self.tensors.get(name.as_str()) {
                None => missing.push(name.clone()),
                Some(t) => {
                    let (checkpoint, model) = (t.size(), vars[name].size());
                    if checkpoint != model {
                        shapes.push(ShapeMismatch { key: name.clone(), checkpoint, model });
                    }
                }
            }
        }
        let unexpected: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !vars.contains_key(k.as_str()) && !ignored.contains(k.as_str()))
            .cloned()
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && shapes.is_empty()) {
            return Err(WeightsError::Mismatch {
                path: self.path.clone(),
                missing,
                unexpected,
                shapes,
            });
        }
        tch::no_grad(|| {
            for (name, var) in vars.iter_mut() {
                if stop() {
                    return Err(WeightsError::Interrupted { path: self.path.clone() });
                }
                let fail = |source| WeightsError::Tensor {
                    path: self.path.clone(),
                    key: name.clone(),
                    source,
                };
                let Some(src) = self.tensors.get(name) else { continue };
                let src = src
                    .f_to_kind(var.kind())
                    .map_err(fail)?
                    .f_to_device(var.device())
                    .map_err(fail)?;
                var.f_copy_(&src).map_err(fail)?;
            }
            Ok(())
        })
    }
}
