//! How a run's steps are executed: eagerly, op by op, or — on CUDA — as replays of one captured
//! CUDA graph. The state machine (warm-up on a side stream, capture, replay, and the eager
//! fallback with its reason) lives here, apart from what a step computes (`optimize.rs`).
//!
//! On CUDA the first [`GRAPH_WARMUP_STEPS`] steps run eagerly on the graph's side stream (libraries
//! choose their algorithms and allocate their workspaces there, as `torch.cuda.graph`'s examples
//! warm up for 3 iterations), the next is captured and every step from then on is one replay of
//! it: the same operations, so the same numbers. Eager instead, with the reason, on the CPU, when
//! turned off, for runs no longer than the warm-up, when the draws cannot be captured, without the
//! CUDA-graph shim, or when the capture fails.

use super::cuda_graph::CudaGraph;
use tch::Device;

/// Eager steps run on the side stream before the step is captured.
pub const GRAPH_WARMUP_STEPS: usize = 3;

/// How the steps of a run were executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// Every step ran eagerly, op by op; why no CUDA graph was used.
    Eager { reason: String },
    /// The first `warmup` steps ran eagerly, the rest were replays of one captured CUDA graph.
    Graph { warmup: usize },
}

impl std::fmt::Display for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eager { reason } => write!(f, "eager ({reason})"),
            Self::Graph { warmup } => {
                write!(f, "CUDA graph (one replay per step after {warmup} eager warm-up steps)")
            }
        }
    }
}

/// What the executor plans to do, from the run's circumstances.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub device: Device,
    /// `false`: `--eager`.
    pub cuda_graph: bool,
    pub steps: usize,
    /// Whether the random draws may be captured (not when recorded or replayed).
    pub capturable_draws: bool,
}

/// Where the executor is in running its steps.
enum Runner {
    Eager,
    /// Eager steps on the graph's side stream, then capture.
    WarmUp(CudaGraph),
    Replay(CudaGraph),
}

/// Runs a step closure however the plan allows; see the module's header.
pub struct Executor {
    runner: Option<Runner>,
    execution: Execution,
    steps_run: usize,
    /// Why the steps fell back to eager mid-run, until the loop takes it to report it.
    fallback: Option<String>,
}

impl Executor {
    pub fn new(plan: Plan) -> Self {
        let planned = if !plan.cuda_graph {
            Err("CUDA graphs turned off by --eager".to_string())
        } else if !plan.device.is_cuda() {
            Err(format!("the device is {}, not CUDA", format!("{:?}", plan.device).to_lowercase()))
        } else if plan.steps <= GRAPH_WARMUP_STEPS {
            Err(format!(
                "{} steps: no more than the {GRAPH_WARMUP_STEPS} warm-up steps",
                plan.steps
            ))
        } else if !plan.capturable_draws {
            Err("the random draws are recorded or replayed".to_string())
        } else {
            CudaGraph::new(plan.device).map_err(|e| e.to_string())
        };
        let (runner, execution) = match planned {
            Ok(graph) => (Runner::WarmUp(graph), Execution::Graph { warmup: GRAPH_WARMUP_STEPS }),
            Err(reason) => (Runner::Eager, Execution::Eager { reason }),
        };
        Self { runner: Some(runner), execution, steps_run: 0, fallback: None }
    }

    /// Whether the steps were replayed from a CUDA graph, or why not.
    pub fn execution(&self) -> &Execution {
        &self.execution
    }

    /// Why the run fell back to eager steps since this was last asked, if it did: the engine
    /// prints nothing, so the loop hands this on with its statistics and the application warns.
    pub fn take_fallback(&mut self) -> Option<String> {
        self.fallback.take()
    }

    /// Runs one step (`work` runs it eagerly; replays run what it queued when captured).
    ///
    /// A replay that fails means the device itself failed (the same work ran when captured), so
    /// it ends the run as a libtorch error does (a panic, turned into an error line by the
    /// binaries).
    pub fn step(&mut self, work: &mut dyn FnMut()) {
        self.steps_run += 1;
        let runner = self.runner.take().unwrap_or(Runner::Eager);
        let next = match runner {
            Runner::Eager => {
                work();
                Runner::Eager
            }
            Runner::WarmUp(mut graph) if self.steps_run <= GRAPH_WARMUP_STEPS => {
                match graph.on_side_stream(&mut *work) {
                    Ok(()) => Runner::WarmUp(graph),
                    Err(e) => {
                        self.fall_back(format!("entering the side stream failed: {e}"));
                        work();
                        Runner::Eager
                    }
                }
            }
            Runner::WarmUp(mut graph) => match graph.capture(&mut *work) {
                // Capturing ran nothing: the replay does this step.
                Ok(()) => {
                    replay(&graph);
                    Runner::Replay(graph)
                }
                Err(e) => {
                    self.fall_back(format!("capturing the step failed: {e}"));
                    work();
                    Runner::Eager
                }
            },
            Runner::Replay(graph) => {
                replay(&graph);
                Runner::Replay(graph)
            }
        };
        self.runner = Some(next);
    }

    /// The run goes on eagerly; why is kept for [`take_fallback`](Self::take_fallback).
    fn fall_back(&mut self, reason: String) {
        self.fallback = Some(reason.clone());
        self.execution = Execution::Eager { reason };
    }
}

fn replay(graph: &CudaGraph) {
    if let Err(e) = graph.replay() {
        panic!("replaying the CUDA graph of the step failed: {e}");
    }
}
