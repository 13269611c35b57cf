//! safetensors checkpoints (open_clip's releases use OpenAI's state-dict keys).
//!
//! Mirrors `safetensors.torch.load_file`: an 8-byte little-endian header length, a JSON header
//! (`{"key": {"dtype", "shape", "data_offsets"}, "__metadata__": …}`), then the raw bytes. The
//! `safetensors` crate validates the header and offsets; this file maps dtypes onto tch.

use std::collections::BTreeMap;
use std::path::Path;

use ::safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor};

use super::WeightsError;

/// Whether a file starting with `head` (its first bytes) and `len` bytes long is plausibly a
/// safetensors file: a header length that fits in the file, followed by `{`.
pub(crate) fn looks_like(head: &[u8], len: u64) -> bool {
    let Some(n) = head.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else { return false };
    let n = u64::from_le_bytes(n);
    n >= 2 && n.checked_add(8).is_some_and(|end| end <= len) && head.get(8) == Some(&b'{')
}

fn kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Reads every tensor of the safetensors file at `path`.
pub(crate) fn load(
    path: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let bytes = crate::clip::files::read_regular(path)
        .map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|source| WeightsError::Safetensors { path: path.to_path_buf(), source })?;
    let mut out = BTreeMap::new();
    for (key, view) in st.iter() {
        if stop() {
            return Err(WeightsError::Interrupted { path: path.to_path_buf() });
        }
        let kind = kind(view.dtype()).ok_or_else(|| WeightsError::UnsupportedDtype {
            path: path.to_path_buf(),
            key: key.to_string(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let fail = |source| WeightsError::Tensor {
            path: path.to_path_buf(),
            key: key.to_string(),
            source,
        };
        let shape: Vec<i64> =
            view.shape().iter().map(|&d| i64::try_from(d)).collect::<Result<_, _>>().map_err(
                |_| fail(tch::TchError::Shape(format!("{:?} is too large", view.shape()))),
            )?;
        let t = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(fail)?;
        out.insert(key.to_string(), t);
    }
    Ok(out)
}
