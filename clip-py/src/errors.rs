//! Rust errors and panics as Python exceptions.

use clip_app::cli::is_usage_error;
use clip_app::interrupt;
use clip_core::clip::model::LoadError;
use clip_core::clip::preprocess::PreprocessError;
use clip_core::clip::tokenizer::TokenizeError;
use clip_core::clip::weights::WeightsError;
use clip_core::clip::zeroshot::ZeroShotError;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::{PyErr, PyResult};
use std::cell::RefCell;

thread_local! {
    /// The message of the last panic on this thread (tch's ops panic on libtorch errors).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics are recorded for [`catch`] instead of printed: the Python caller gets the exception.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = clip_core::clip::torch_error::payload_text(info.payload());
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(message));
        }));
    });
}

/// libtorch's grad mode (thread-local, shared with `torch`: a caller inside `torch.no_grad()` has
/// it off), set for the engine and restored on the way out — after a panic too, which
/// `tch::no_grad` alone would leave off.
struct GradMode(i32);

impl GradMode {
    fn on() -> Self {
        // SAFETY: sets a thread-local flag; returns the previous value.
        Self(unsafe { pyo3_tch::torch_sys::at_grad_set_enabled(1) })
    }
}

impl Drop for GradMode {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { pyo3_tch::torch_sys::at_grad_set_enabled(self.0) };
    }
}

/// Runs `f` with grad mode on, a panic inside it (a libtorch error through tch) becoming a
/// `RuntimeError`.
pub fn catch<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let _mode = GradMode::on();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| clip_core::clip::torch_error::payload_text(&*payload));
            Err(PyRuntimeError::new_err(clip_core::clip::torch_error::panic_error(&message)))
        }
    }
}

fn not_found(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(cause.downcast_ref::<WeightsError>(), Some(WeightsError::Missing { .. }))
            || matches!(
                cause.downcast_ref::<LoadError>(),
                Some(LoadError::Weights(WeightsError::Missing { .. }))
            )
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            || matches!(
                cause.downcast_ref::<PreprocessError>(),
                Some(PreprocessError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
            )
            || matches!(
                cause.downcast_ref::<ZeroShotError>(),
                Some(ZeroShotError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
            )
    })
}

/// Whether the error is about what the caller gave: a usage error, a file that is not a
/// checkpoint or an image, a text the tokenizer refuses.
fn bad_argument(err: &anyhow::Error) -> bool {
    is_usage_error(err)
        || err.chain().any(|cause| {
            cause.is::<TokenizeError>()
                || cause.is::<PreprocessError>()
                || cause.is::<LoadError>()
                || cause.is::<WeightsError>()
                || cause.is::<clip_core::clip::released::UnknownModel>()
                || matches!(
                    cause.downcast_ref::<ZeroShotError>(),
                    Some(e) if !matches!(e, ZeroShotError::Interrupted)
                )
        })
}

/// The Python exception for an error, with its message on one line (the CLI's).
pub fn to_py(err: anyhow::Error) -> PyErr {
    let line = interrupt::error_line(&err);
    if interrupt::is_interrupted(&err) {
        PyKeyboardInterrupt::new_err(line)
    } else if not_found(&err) {
        PyFileNotFoundError::new_err(line)
    } else if bad_argument(&err) {
        PyValueError::new_err(line)
    } else {
        PyRuntimeError::new_err(line)
    }
}

/// `?` for anyhow results inside Python functions.
pub trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T, E: Into<anyhow::Error>> IntoPy<T> for Result<T, E> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}
