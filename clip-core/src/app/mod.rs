//! The applications built on the library: the experiment binaries' flags and run (`experiment`),
//! outputs (`output`), the `clip` tool's shared flags (`cli`, `device`), Ctrl-C and libtorch
//! errors (`interrupt`), the cross-model report (`compare`) and the step's benchmark (`bench`).
pub mod bench;
pub mod cli;
pub mod compare;
pub mod device;
pub mod experiment;
pub mod interrupt;
pub mod output;
