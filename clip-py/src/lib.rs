//! `clip_rs._native`: the clip-rs engine for Python (the `clip_rs` package wraps it in
//! `python/clip_rs/__init__.py`). Tensors cross without copies (pyo3-tch: the same libtorch as
//! the `torch` package, which `clip_rs` imports first). `generate`'s keyword arguments are the run
//! request's own settings (`clip_app::request::RunSettings`, read by serde: a wrong type is a
//! `TypeError`) and the request is checked by its own validation, so the defaults, checks and
//! messages are the CLI's; `compare`'s keywords are still read as `clip compare`'s flags. Long work (loading, optimising, comparing) runs with
//! the GIL released; progress and Ctrl-C are looked at with it, at every read-back.
//!
//! Errors become Python exceptions: `ValueError` for a bad argument (what the CLI reports with exit
//! status 2, a bad checkpoint, a prompt over 77 tokens), `FileNotFoundError` for a missing file,
//! `KeyboardInterrupt` for Ctrl-C before anything could be saved, `RuntimeError` for libtorch (a
//! panic inside tch included: it never reaches the interpreter).

mod errors;
mod kwargs;
mod model;
mod run;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::install_panic_hook();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::Model>()?;
    m.add_class::<run::GeneratedResult>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(model::tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(model::classify, m)?)?;
    m.add_function(wrap_pyfunction!(run::generate, m)?)?;
    m.add_function(wrap_pyfunction!(run::compare, m)?)?;
    m.add_function(wrap_pyfunction!(run::generate_settings, m)?)?;
    m.add_function(wrap_pyfunction!(run::interrupt_runs, m)?)?;
    Ok(())
}
