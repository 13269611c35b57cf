//! TEMPORARY stub (replaced by the weights branch): safetensors only.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;
pub mod download {
    pub fn resolve_model(
        name: &str,
        _c: Option<&std::path::Path>,
    ) -> Result<std::path::PathBuf, super::WeightsError> {
        Err(super::WeightsError::Other(format!("no download yet: {name}")))
    }
}
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{0}")]
    Other(String),
}
pub struct StateDict {
    pub path: PathBuf,
    tensors: BTreeMap<String, Tensor>,
}
impl StateDict {
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let t = Tensor::read_safetensors(path).map_err(|e| WeightsError::Other(e.to_string()))?;
        Ok(Self { path: path.into(), tensors: t.into_iter().collect() })
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|k| k.as_str())
    }
    pub fn shape(&self, key: &str) -> Option<Vec<i64>> {
        self.tensors.get(key).map(|t| t.size())
    }
    pub fn load_into(&self, vs: &tch::nn::VarStore, ignored: &[&str]) -> Result<(), WeightsError> {
        let vars = vs.variables();
        for k in self.tensors.keys() {
            if !vars.contains_key(k) && !ignored.contains(&k.as_str()) {
                return Err(WeightsError::Other(format!("unexpected {k}")));
            }
        }
        tch::no_grad(|| {
            for (k, mut v) in vars {
                let t = self
                    .tensors
                    .get(&k)
                    .ok_or_else(|| WeightsError::Other(format!("missing {k}")))?;
                if t.size() != v.size() {
                    return Err(WeightsError::Other(format!("shape {k}")));
                }
                v.copy_(&t.to_kind(v.kind()));
            }
            Ok(())
        })
    }
}
