//! `clip_rs.load`, the model object (`encode_image`, `encode_text`, `preprocess`), `tokenize` and
//! `classify`.

use crate::errors::{catch, IntoPy};
use clip_app::device::DeviceChoice;
use clip_app::output::token_for_file;
use clip_core::clip::model::{LoadedClip, Precision};
use clip_core::clip::preprocess;
use clip_core::clip::released;
use clip_core::clip::score;
use clip_core::clip::tokenizer::Tokenizer;
use clip_core::clip::weights::download;
use clip_core::clip::zeroshot::{self, Cache, EncodeOptions, Labels, Templates, ZeroShotOptions};
use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::Arc;
use tch::Device;

/// Moves a value into a closure run with the GIL released. `allow_threads` runs the closure on
/// this very thread, so nothing crosses threads; libtorch tensors (not `Sync` in tch) are only
/// read there, as PyTorch itself reads them from any thread.
pub struct Here<T>(pub T);
unsafe impl<T> Send for Here<T> {}

impl<T> Here<T> {
    /// The value (a method, so that a closure captures the whole wrapper, not its field).
    pub fn take(self) -> T {
        self.0
    }
}

/// A stop flag for work done with the GIL released: set once Python has a pending signal
/// (Ctrl-C), looked at by the work between its steps.
pub fn signals_pending(py: Python<'_>) -> bool {
    py.check_signals().is_err()
}

/// A loaded model, shared by its Python object and the runs that use it. tch marks tensors `Send`
/// only; libtorch's tensors are safe to read from several threads at once (PyTorch's modules are),
/// and the model's weights are only read.
pub struct Shared(pub Arc<LoadedClip>);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl std::ops::Deref for Shared {
    type Target = Arc<LoadedClip>;
    fn deref(&self) -> &Arc<LoadedClip> {
        &self.0
    }
}

/// A CLIP model loaded on a device: `clip_rs.load(...)`.
#[pyclass(module = "clip_rs._native", frozen)]
pub struct Model {
    pub loaded: Shared,
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub device: Device,
    pub precision: Precision,
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    }
}

fn device_choice(device: &str) -> PyResult<DeviceChoice> {
    match device {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" | "cuda:0" => Ok(DeviceChoice::Cuda),
        other => Err(PyValueError::new_err(format!(
            "device: {other:?} is not one of \"auto\", \"cpu\", \"cuda\""
        ))),
    }
}

fn precision_of(precision: Option<&str>, device: Device) -> PyResult<Precision> {
    match precision {
        None => Ok(Precision::for_device(device)),
        Some("fp16") => Ok(Precision::Fp16),
        Some("fp32") => Ok(Precision::Fp32),
        Some(other) => Err(PyValueError::new_err(format!(
            "precision: {other:?} is neither \"fp16\" nor \"fp32\""
        ))),
    }
}

/// `clip_rs.load(name_or_path, device="auto", precision=None)`: a released model's name
/// (downloaded once into ~/.cache/clip, as the CLI does) or a checkpoint file.
#[pyfunction]
#[pyo3(signature = (name_or_path, device = "auto", precision = None))]
pub fn load(
    py: Python<'_>,
    name_or_path: PathBuf,
    device: &str,
    precision: Option<&str>,
) -> PyResult<Model> {
    let choice = device_choice(device)?;
    let device = choice.resolve().py_err()?;
    let precision = precision_of(precision, device)?;
    let given = name_or_path.clone();
    let work = Here(move || -> anyhow::Result<(LoadedClip, PathBuf, String)> {
        let stop = || false;
        let path = if given.exists() {
            given
        } else {
            let text = given.to_string_lossy().into_owned();
            match released::by_name(&text) {
                Ok(model) => clip_app::fetch::resolve_model(model.name, &stop)?,
                // Neither a file nor a released name: say the file is missing, and the names.
                Err(unknown) => {
                    return Err(anyhow::Error::new(
                        clip_core::clip::weights::WeightsError::Missing { path: given.clone() },
                    )
                    .context(unknown.to_string()))
                }
            }
        };
        let loaded = LoadedClip::load_with(&path, device, precision, &stop)?;
        let sha = download::sha256_file_with(&path, &stop)?;
        Ok((loaded, path, sha))
    });
    let result = catch(|| {
        let work = work;
        let out = py.allow_threads(move || Here((work.take())()));
        out.0.py_err()
    })?;
    let (loaded, path, sha256) = result;
    let name = match released::by_config(&loaded.model.config) {
        Some(m) => m.name.to_string(),
        None => token_for_file(&path),
    };
    #[allow(clippy::arc_with_non_send_sync)]
    let loaded = Shared(Arc::new(loaded));
    Ok(Model { loaded, path, sha256, name, device, precision })
}

#[pymethods]
impl Model {
    /// The released model's name (`RN50`, `ViT-B/32`, …), or the checkpoint's file name.
    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// The model's part of result file names and directories (`RN50`, `ViT-B`, `ViT-L-14`, or
    /// the checkpoint's file name), as in the curves' `similarity_<token>` columns of ensembles.
    #[getter]
    fn token(&self) -> String {
        match released::by_config(&self.loaded.model.config) {
            Some(m) => m.token.to_string(),
            None => token_for_file(&self.path),
        }
    }

    /// The image side the model takes (224 for RN50, ViT-B/32, ViT-L/14).
    #[getter]
    fn input_resolution(&self) -> i64 {
        self.loaded.model.config.image_resolution
    }

    #[getter]
    fn device(&self) -> String {
        device_name(self.device)
    }

    #[getter]
    fn precision(&self) -> String {
        self.precision.to_string()
    }

    /// The checkpoint file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The checkpoint's SHA-256.
    #[getter]
    fn sha256(&self) -> String {
        self.sha256.clone()
    }

    /// `model.encode_image(images)`: images [N, 3, R, R] as `preprocess` gives them (any dtype and
    /// device; moved to the model's), the raw (not normalised) image features [N, D] on the
    /// model's device.
    fn encode_image(&self, py: Python<'_>, images: PyTensor) -> PyResult<PyTensor> {
        let res = self.loaded.model.config.image_resolution;
        let size = images.size();
        if size.len() != 4 || size[1] != 3 || size[2] != res || size[3] != res {
            return Err(PyValueError::new_err(format!(
                "images: expected a tensor [N, 3, {res}, {res}] (model.preprocess of each image, \
                 stacked), not {size:?}"
            )));
        }
        if !images.is_floating_point() {
            return Err(PyValueError::new_err(format!(
                "images: expected a floating-point tensor, not {:?}",
                images.kind()
            )));
        }
        let model = Here((Arc::clone(&self.loaded), images.0.shallow_clone(), self.device));
        catch(move || {
            let out = py.allow_threads(move || {
                let (loaded, images, device) = model.take();
                Here(score::image_features(&loaded.model, &images, device))
            });
            Ok(PyTensor(out.0))
        })
    }

    /// `model.encode_text(texts)`: the raw text features [N, D] of a list of strings (each at most
    /// 77 tokens: a longer one is a ValueError naming it).
    fn encode_text(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<PyTensor> {
        let tokens = Tokenizer::new().py_err()?.tokenize(&texts, false).py_err()?;
        let model = Here((Arc::clone(&self.loaded), tokens, self.device));
        catch(move || {
            let out = py.allow_threads(move || {
                let (loaded, tokens, device) = model.take();
                Here(score::text_features(&loaded.model, &tokens, device))
            });
            Ok(PyTensor(out.0))
        })
    }

    /// CLIP's preprocessing of an image file: resize (bicubic, Pillow's), centre crop, CLIP's
    /// normalisation: a float tensor [3, R, R] on the CPU.
    fn preprocess_path(&self, path: PathBuf) -> PyResult<PyTensor> {
        catch(|| Ok(PyTensor(score::file_pixels(&self.loaded.model, &path).py_err()?)))
    }

    /// The same for RGB pixels (what `PIL.Image.convert("RGB").tobytes()` gives).
    fn preprocess_rgb(&self, pixels: Vec<u8>, width: u32, height: u32) -> PyResult<PyTensor> {
        let res = self.loaded.model.config.image_resolution as u32;
        let image = image::RgbImage::from_raw(width, height, pixels).ok_or_else(|| {
            PyValueError::new_err(format!("the pixels are not {width}×{height} RGB"))
        })?;
        if width == 0 || height == 0 {
            return Err(PyValueError::new_err(format!("the image is empty ({width}x{height})")));
        }
        catch(|| Ok(PyTensor(preprocess::preprocess_image(&image, res))))
    }

    fn __repr__(&self) -> String {
        format!(
            "clip_rs.Model({:?}, device={:?}, precision={:?}, path={:?})",
            self.name,
            device_name(self.device),
            self.precision.to_string(),
            self.path.display().to_string()
        )
    }
}

/// `clip_rs.tokenize(texts, truncate=False)`: `clip.tokenize` — a LongTensor [N, 77].
#[pyfunction]
#[pyo3(signature = (texts, truncate = false))]
pub fn tokenize(texts: Vec<String>, truncate: bool) -> PyResult<PyTensor> {
    let tokens = Tokenizer::new().py_err()?.tokenize(&texts, truncate).py_err()?;
    Ok(PyTensor(tokens))
}

/// `clip_rs.classify(model, images, labels, templates, top)`: zero-shot classification as
/// `clip classify` — per image, its `top` most probable classes as dicts (index, label,
/// probability). The class weights are cached as the CLI caches them.
#[pyfunction]
#[pyo3(signature = (model, images, labels = "imagenet", templates = "openai", top = 5, progress = None))]
pub fn classify<'py>(
    py: Python<'py>,
    model: &Model,
    images: PyTensor,
    labels: &str,
    templates: &str,
    top: usize,
    progress: Option<PyObject>,
) -> PyResult<Vec<Vec<Bound<'py, PyDict>>>> {
    if top == 0 {
        return Err(PyValueError::new_err("top: must be at least 1"));
    }
    let labels = Labels::from_spec(labels).py_err()?;
    let templates = Templates::from_spec(templates).py_err()?;
    let tokenizer = Tokenizer::new().py_err()?;
    let features = model.encode_image(py, images)?;
    let options = ZeroShotOptions { encode: EncodeOptions::default(), cache: Cache::Default };
    let interrupted = std::sync::atomic::AtomicBool::new(false);
    let work = Here((Arc::clone(&model.loaded), model.sha256.clone(), features.0, progress));
    let top = catch(|| {
        let out = py.allow_threads(|| {
            let (loaded, sha, features, progress) = work.take();
            let stop = || interrupted.load(std::sync::atomic::Ordering::Relaxed);
            let mut on_progress = |done: usize, total: usize| {
                Python::with_gil(|py| {
                    if let Some(f) = &progress {
                        if f.call1(py, (done, total)).is_err() {
                            interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if signals_pending(py) {
                        interrupted.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            };
            let outcome = zeroshot::class_weights(
                &loaded.model,
                &sha,
                &tokenizer,
                &labels,
                &templates,
                &options,
                &mut on_progress,
                &stop,
            );
            Here(outcome.and_then(|o| o.weights.top_k(&features, top)))
        });
        match out.0 {
            Err(zeroshot::ZeroShotError::Interrupted) => {
                Err(PyKeyboardInterrupt::new_err("interrupted while computing the class weights"))
            }
            other => other.py_err(),
        }
    })?;
    top.into_iter()
        .map(|predictions| {
            predictions
                .into_iter()
                .map(|p| {
                    let d = PyDict::new(py);
                    d.set_item("index", p.index)?;
                    d.set_item("label", p.label)?;
                    d.set_item("probability", p.probability)?;
                    Ok(d)
                })
                .collect()
        })
        .collect()
}
