//! The model crates' experiment binaries, found by what they are rather than by their path: the
//! three crates' `constrained` (and `unconstrained`) binaries are all copied to
//! `target/<profile>/constrained`, so `CARGO_BIN_EXE_constrained` names whichever crate was built
//! last. Cargo keeps each crate's own copy in `target/<profile>/deps/constrained-<hash>`; the one
//! whose `--version` names `model` (newest first) is that crate's.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary `name` (`constrained` or `unconstrained`) of the crate whose model is `model`
/// (`RN50`, `ViT-B/32`, `ViT-L/14`); `cargo_bin_exe` is the test's `CARGO_BIN_EXE_<name>`.
pub fn own_binary(cargo_bin_exe: &str, name: &str, model: &str) -> PathBuf {
    let deps = Path::new(cargo_bin_exe).parent().expect("target/<profile>").join("deps");
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .expect("target/<profile>/deps")
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let hash = file.strip_prefix(&format!("{name}-"))?;
            if hash.contains('.') || !e.path().is_file() {
                return None;
            }
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (_, path) in candidates {
        // Test harnesses of the same name answer --version with an error; only the real binary
        // prints `<name> <version> (<model>)`.
        let Ok(out) = Command::new(&path).arg("--version").output() else { continue };
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.trim_end().ends_with(&format!("({model})")) {
            return path;
        }
    }
    panic!(
        "no `{name}` binary of {model} in {}: build it (cargo test --workspace does)",
        deps.display()
    )
}
