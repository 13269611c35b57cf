//! `clip_rs.generate` and `clip_rs.compare`: keyword arguments parsed by `clip generate`'s and
//! `clip compare`'s own flags, the run done by `clip_app::run` (the same PNG/JSON/CSV bytes
//! as the CLI), with the GIL released, progress and Ctrl-C looked at every read-back.

use crate::errors::{catch, to_py, IntoPy};
use crate::kwargs;
use crate::model::{device_name, signals_pending, Here, Model};
use clap::Args;
use clip_app::compare::args::CompareArgs;
use clip_app::compare::{self as comparison, CompareError};
use clip_app::device::DeviceChoice;
use clip_app::reporter::Reporter;
use clip_app::request::{ModelSource, RequestError, RunRequest, RunSettings, Setting};
use clip_app::run::{self, Hooks, ModelCache};
use clip_core::engine::optimize::StepStats;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Settings the Python functions take elsewhere: the models, prompts and output of `generate`
/// come as its arguments.
const GENERATE_RESERVED: &[(&str, &str)] = &[
    ("weights", "pass loaded models (clip_rs.load) as the first argument"),
    ("model", "pass loaded models (clip_rs.load) as the first argument"),
    ("models", "pass loaded models (clip_rs.load) as the first argument"),
    ("prompt", "pass the prompts as the second argument"),
    ("device", "the model's device is chosen by clip_rs.load(..., device=...)"),
    ("precision", "the model's precision is chosen by clip_rs.load(..., precision=...)"),
    ("out", "results are kept in memory; write them with result.save(dir)"),
    ("log_every", "progress goes to the callback (default: a tqdm bar)"),
    ("help", "see help(clip_rs.generate)"),
    ("version", "see clip_rs.__version__"),
];

/// The settings (`snake_case`) a command's flags take: the names of the keyword arguments.
fn settings_of(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments().filter_map(|a| a.get_long()).map(|l| l.replace('-', "_")).collect()
}

/// `clip_rs._native.generate_settings()`: the keyword arguments `generate` takes — the fields of
/// the request's settings (`RunSettings`), by their flags' names in `snake_case`.
#[pyfunction]
pub fn generate_settings() -> Vec<String> {
    settings_of(&RunSettings::augment_args(clap::Command::new("generate")))
}

/// The keyword arguments `compare` takes: `clip compare`'s flags in `snake_case`.
fn compare_settings() -> Vec<String> {
    settings_of(&CompareArgs::augment_args(clap::Command::new("compare")))
}

/// The first keyword that is a setting taken elsewhere, as a TypeError saying where.
fn reserved(
    function: &str,
    kwargs: &[(String, Bound<'_, PyAny>)],
    reserved: &[(&str, &str)],
) -> PyResult<()> {
    match kwargs.iter().find_map(|(k, _)| reserved.iter().find(|(r, _)| r == k)) {
        Some((key, why)) => {
            Err(PyTypeError::new_err(format!("{function}: `{key}` is not a setting here: {why}")))
        }
        None => Ok(()),
    }
}

/// One prompt's result, as `clip generate` writes it: the files in a private directory (the
/// Python side copies them with `save(dir)`), the image as a view of the engine's result.
#[pyclass(module = "clip_rs._native", frozen)]
pub struct GeneratedResult {
    #[pyo3(get)]
    image: PyObject,
    #[pyo3(get)]
    png: PathBuf,
    #[pyo3(get)]
    json: PathBuf,
    #[pyo3(get)]
    csv: PathBuf,
    /// The JSON record's text.
    #[pyo3(get)]
    record: String,
}

/// Ctrl-Cs seen by the main thread's SIGINT handler (`clip_rs` wraps Python's default one):
/// every `generate` stops when this moves, whichever thread it runs in.
static INTERRUPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `clip_rs._native.interrupt_runs()`: stops every `generate` running now (called by the SIGINT
/// handler `clip_rs` installs, before Python's own raises KeyboardInterrupt).
#[pyfunction]
pub fn interrupt_runs() {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
}

/// A run's reporter in Python: at every read-back the callback gets `(step, steps,
/// similarities)`; a callback that raises (kept in `failure`) or a pending signal stops the run.
struct Callback<'a> {
    callback: &'a Option<PyObject>,
    steps: usize,
    stopped: &'a AtomicBool,
    failure: &'a std::sync::Mutex<Option<PyErr>>,
}

impl Reporter for Callback<'_> {
    fn steps(&mut self, chunk: &[StepStats]) {
        let Some(last) = chunk.last() else { return };
        Python::with_gil(|py| {
            if let Some(f) = self.callback {
                let sims: Vec<f32> = last.similarity.clone();
                if let Err(e) = f.call1(py, (last.step, self.steps, sims)) {
                    self.stopped.store(true, Ordering::Relaxed);
                    let mut slot = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(e);
                }
            }
            if signals_pending(py) {
                self.stopped.store(true, Ordering::Relaxed);
            }
        });
    }
}

/// `clip_rs._native.generate(models, prompts, out, callback, **settings)`.
#[pyfunction]
#[pyo3(signature = (models, prompts, out, callback = None, **settings))]
pub fn generate(
    py: Python<'_>,
    models: Vec<PyRef<'_, Model>>,
    prompts: Vec<String>,
    out: PathBuf,
    callback: Option<PyObject>,
    settings: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<GeneratedResult>> {
    if models.is_empty() {
        return Err(PyValueError::new_err("generate: give at least one model (clip_rs.load)"));
    }
    if prompts.is_empty() {
        return Err(PyValueError::new_err("generate: give at least one prompt"));
    }
    let first = &models[0];
    if let Some(other) =
        models.iter().find(|m| m.device != first.device || m.precision != first.precision)
    {
        return Err(PyValueError::new_err(format!(
            "generate: the models must share a device and precision ({} is on {} in {}, {} on {} in {})",
            first.name,
            device_name(first.device),
            first.precision,
            other.name,
            device_name(other.device),
            other.precision
        )));
    }
    let kwargs = kwargs::pairs(settings)?;
    reserved("clip_rs.generate", &kwargs, GENERATE_RESERVED)?;
    let settings: RunSettings =
        kwargs::settings("clip_rs.generate", &generate_settings(), &kwargs)?;
    let sources = models.iter().map(|m| ModelSource::file(m.path.clone())).collect();
    let mut spec = RunRequest::preset(settings.preset, sources, prompts);
    settings.apply(&mut spec);
    spec.device = if first.device.is_cuda() { DeviceChoice::Cuda } else { DeviceChoice::Cpu };
    spec.precision = Some(first.precision);
    spec.out = out;
    spec.validate().map_err(|e| request_error("clip_rs.generate", &spec, e))?;
    let steps = spec.settings.steps;

    let mut cache = ModelCache::new();
    for m in &models {
        cache.insert(
            std::sync::Arc::clone(&m.loaded),
            m.path.clone(),
            m.sha256.clone(),
            m.device,
            m.precision,
        );
    }
    let stopped = AtomicBool::new(false);
    let epoch = INTERRUPTS.load(Ordering::SeqCst);
    let failure: std::sync::Mutex<Option<PyErr>> = std::sync::Mutex::new(None);
    let work = Here((spec, cache, callback));
    let results = catch(|| {
        let out = py.allow_threads(|| {
            let (spec, mut cache, callback) = work.take();
            // Ctrl-C reaches the main thread only: its handler (`interrupt_runs`) counts it, and
            // a run in any thread stops when the count moves.
            let stop =
                || stopped.load(Ordering::Relaxed) || INTERRUPTS.load(Ordering::SeqCst) != epoch;
            let mut reporter =
                Callback { callback: &callback, steps, stopped: &stopped, failure: &failure };
            let hooks = Hooks { models: &mut cache, reporter: &mut reporter, stop: &stop };
            Here(run::run_with(&spec, hooks))
        });
        out.0.map_err(to_py)
    });
    // A callback that raised stops the run (its images are saved, marked interrupted) and its
    // exception is raised — but a KeyboardInterrupt (Ctrl-C landing in the callback) is Ctrl-C:
    // the images reached are returned, marked interrupted, as when it lands elsewhere.
    if let Some(err) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        if !(err.is_instance_of::<PyKeyboardInterrupt>(py) && results.is_ok()) {
            return Err(err);
        }
    }
    let results = match results {
        Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => return Err(e),
        other => other?,
    };
    results
        .into_iter()
        .map(|r| {
            Ok(GeneratedResult {
                image: PyTensor(r.image).into_pyobject(py)?.unbind(),
                png: r.png,
                json: r.json.clone(),
                csv: r.csv,
                record: std::fs::read_to_string(&r.json).map_err(|e| to_py(e.into()))?,
            })
        })
        .collect()
}

/// `clip compare`'s stop, asked between its files, batches and pictures on the caller's thread:
/// Python's pending signals (Ctrl-C).
fn compare_stop() -> bool {
    Python::with_gil(signals_pending)
}

/// `clip_rs._native.compare(results_dir, **options)`: `clip compare`, its report's files.
#[pyfunction]
#[pyo3(signature = (results_dir, **options))]
pub fn compare(
    py: Python<'_>,
    results_dir: PathBuf,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<PathBuf>> {
    let kwargs = kwargs::pairs(options)?;
    let taken = [
        ("results_dir", "the first argument"),
        ("help", "see help(clip_rs.compare)"),
        ("version", "see clip_rs.__version__"),
    ];
    reserved("clip_rs.compare", &kwargs, &taken)?;
    let mut args: CompareArgs = kwargs::settings("clip_rs.compare", &compare_settings(), &kwargs)?;
    args.results_dir = results_dir;
    let options = args.options(compare_stop).py_err()?;
    catch(|| {
        let work = Here(&options);
        let out = py.allow_threads(move || Here(comparison::run(work.take())));
        match out.0 {
            Ok(comparison) => Ok(comparison.written),
            Err(CompareError::Interrupted(_)) => {
                Err(PyKeyboardInterrupt::new_err("interrupted: clip_rs.compare wrote nothing"))
            }
            Err(e) => Err(to_py(e.into())),
        }
    })
}

/// A request the validation refused, as Python's exception: the setting in Python's spelling; a
/// start photo that does not exist is a `FileNotFoundError`.
fn request_error(function: &str, request: &RunRequest, err: RequestError) -> PyErr {
    let message = format!("{function}: {}: {}", err.setting.key(), err.problem);
    let missing =
        err.setting == Setting::Init && request.init.as_ref().is_some_and(|p| !p.exists());
    if missing {
        PyFileNotFoundError::new_err(message)
    } else {
        PyValueError::new_err(message)
    }
}
