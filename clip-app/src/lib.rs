//! The applications built on `clip_core` (CLIP and the engine, a library that prints nothing): one
//! generation run (`run`), asked for by one typed request (`request`), driven by the experiment binaries (`experiment`) and `clip generate`
//! (`generate`), with its outputs (`output`) and progress (`progress`); the `clip` tool's shared
//! flags (`cli`, `device`) and weight downloads (`fetch`); Ctrl-C and libtorch errors
//! (`interrupt`); the cross-model report (`compare`), the step's benchmark (`bench`) and
//! zero-shot classification (`classify`); grids of runs, batched, sharded, on workers or Slurm
//! (`sweep`). The `clip` tool is `src/bin/clip/`; the three model crates' binaries call
//! `experiment::main`.
pub mod bench;
pub mod classify;
pub mod cli;
pub mod compare;
pub mod device;
pub mod experiment;
pub mod fetch;
pub mod generate;
pub mod interrupt;
pub mod output;
pub mod progress;
pub mod reporter;
pub mod request;
pub mod run;
pub mod sweep;
