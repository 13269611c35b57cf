//! Build script shared by every crate that produces binaries (see `build = ...` in their Cargo.toml).
//!
//! Two link-time fixes that tch leaves to its users (`docs/gpu.md`):
//! - Rust links with `--as-needed`; nothing in our code references a `libtorch_cuda` symbol, so the
//!   linker would drop it and CUDA would report *unavailable* at run time. Keep it with `--no-as-needed`.
//! - An rpath to libtorch's lib dir, so the binaries run without `LD_LIBRARY_PATH`.
//!
//! `DEP_TCH_LIBTORCH_LIB` is set by torch-sys (its `links` key is `tch`) for direct dependents only,
//! which is why each binary crate lists `torch-sys` among its dependencies.
//! `cargo:rustc-link-arg` reaches only the targets of the package that emits it, hence one script
//! shared by all of them (clip-core's `build.rs` calls it too, then compiles its CUDA-graph shim).
//!
//! With PyPI's torch, `libtorch_cuda.so` finds the CUDA runtime through its own RUNPATH; the
//! CUDA-graph shim references no CUDA runtime symbol, so nothing more is linked here.

pub fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::Path::new(&lib);
    if cfg!(target_os = "linux") || cfg!(target_os = "macos") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if cfg!(target_os = "linux") && lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
