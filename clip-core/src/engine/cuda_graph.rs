//! CUDA graphs for the optimisation step, and the CUDA caching allocator's peak memory: what tch
//! does not expose, through a small C++ shim over libtorch (`csrc/cuda_graph.cpp`, compiled by
//! `build.rs` against the same libtorch's headers).
//!
//! A [`CudaGraph`] captures the work that a closure queues on the GPU and replays it later as one
//! launch. As with `torch.cuda.graph`: the work is warmed up and captured on a side stream
//! (capture is not allowed on the default stream); every tensor that the captured work reads or
//! writes across replays must be allocated before capture and updated in place; tensors created
//! during capture live in the graph's private memory pool, at the same addresses in every replay;
//! random draws (`Tensor::rand`) inside the capture draw new numbers at every replay from torch's
//! graph-safe CUDA generator; nothing inside may synchronise with the host (`.to_device(Cpu)`,
//! reading a value), which invalidates the capture.
//!
//! Built without the shim (a libtorch without CUDA, or no CUDA headers at build time),
//! [`CudaGraph::new`] fails with the reason, and callers run eagerly.

use std::ffi::c_void;
use tch::Device;

/// Why a graph could not be made, captured or replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GraphError(pub String);

#[cfg(clip_cuda_graph)]
mod ffi {
    use super::*;
    use std::ffi::{c_char, CStr};

    extern "C" {
        pub fn clip_cuda_free_message(message: *mut c_char);
        pub fn clip_cuda_graph_new(
            device: i32,
            out: *mut *mut c_void,
            error: *mut *mut c_char,
        ) -> i32;
        pub fn clip_cuda_graph_free(graph: *mut c_void);
        pub fn clip_cuda_graph_enter_side_stream(
            graph: *mut c_void,
            error: *mut *mut c_char,
        ) -> i32;
        pub fn clip_cuda_graph_leave_side_stream(
            graph: *mut c_void,
            error: *mut *mut c_char,
        ) -> i32;
        pub fn clip_cuda_graph_capture_begin(graph: *mut c_void, error: *mut *mut c_char) -> i32;
        pub fn clip_cuda_graph_capture_end(graph: *mut c_void, error: *mut *mut c_char) -> i32;
        pub fn clip_cuda_graph_abort_capture(graph: *mut c_void, error: *mut *mut c_char) -> i32;
        pub fn clip_cuda_graph_replay(graph: *mut c_void, error: *mut *mut c_char) -> i32;
        pub fn clip_cuda_peak_allocated(
            device: i32,
            bytes: *mut u64,
            error: *mut *mut c_char,
        ) -> i32;
        pub fn clip_cuda_reset_peak(device: i32, error: *mut *mut c_char) -> i32;
    }

    /// Calls a shim function that reports failure by returning non-zero with a message.
    pub fn check(call: impl FnOnce(*mut *mut c_char) -> i32) -> Result<(), GraphError> {
        let mut message: *mut c_char = std::ptr::null_mut();
        if call(&mut message) == 0 {
            return Ok(());
        }
        let text = if message.is_null() {
            "unknown error in the CUDA-graph shim".to_string()
        } else {
            // SAFETY: the shim returns a NUL-terminated string from malloc, freed just below.
            let text = unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned();
            unsafe { clip_cuda_free_message(message) };
            text
        };
        Err(GraphError(text))
    }
}

/// Whether this build can capture CUDA graphs at all; `Err` says why not.
pub fn support() -> Result<(), GraphError> {
    #[cfg(clip_cuda_graph)]
    {
        Ok(())
    }
    #[cfg(not(clip_cuda_graph))]
    {
        Err(GraphError(format!(
            "built without the CUDA-graph shim: {}",
            option_env!("CLIP_CUDA_GRAPH_MISSING").unwrap_or("unknown reason")
        )))
    }
}

/// `device`'s CUDA index, once the shim is known to be there; else why `what` cannot be had.
fn shim_device(device: Device, what: &str) -> Result<i32, GraphError> {
    support()?;
    match device {
        Device::Cuda(index) => Ok(index as i32),
        other => Err(GraphError(format!("{what} a CUDA device, not {other:?}"))),
    }
}

/// One captured piece of GPU work and the side stream it is captured on.
#[derive(Debug)]
pub struct CudaGraph {
    #[cfg_attr(not(clip_cuda_graph), allow(dead_code))]
    handle: *mut c_void,
    captured: bool,
}

impl CudaGraph {
    /// An empty graph for `device` (must be CUDA).
    pub fn new(device: Device) -> Result<Self, GraphError> {
        let index = shim_device(device, "CUDA graphs need")?;
        #[cfg(clip_cuda_graph)]
        {
            let mut handle = std::ptr::null_mut();
            // SAFETY: the shim writes a new graph to `handle` on success.
            ffi::check(|e| unsafe { ffi::clip_cuda_graph_new(index, &mut handle, e) })?;
            Ok(Self { handle, captured: false })
        }
        #[cfg(not(clip_cuda_graph))]
        {
            let _ = index;
            unreachable!("support() fails without the shim")
        }
    }

    /// Runs `work` eagerly on the graph's side stream (warm-up before capture: libraries pick
    /// their algorithms and workspaces there). Work queued before is finished first, and `work`'s
    /// is finished on return. `Err` means that `work` did not run.
    pub fn on_side_stream<T>(&mut self, work: impl FnOnce() -> T) -> Result<T, GraphError> {
        self.enter()?;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        self.leave();
        match result {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Records the GPU work that `work` queues, without running it; [`replay`](Self::replay)
    /// runs it. On failure (the work synchronised with the host, or libtorch raised an error) the
    /// capture is abandoned, nothing ran, and the stream and generator are usable eagerly again.
    pub fn capture(&mut self, work: impl FnOnce()) -> Result<(), GraphError> {
        if self.captured {
            return Err(GraphError("this graph is already captured".into()));
        }
        self.enter()?;
        let result = self.capture_on_side_stream(work);
        self.leave();
        result?;
        self.captured = true;
        Ok(())
    }

    /// Runs the captured work once more, on the current stream.
    pub fn replay(&self) -> Result<(), GraphError> {
        if !self.captured {
            return Err(GraphError("replay before a successful capture".into()));
        }
        #[cfg(clip_cuda_graph)]
        {
            // SAFETY: `handle` is a live graph from clip_cuda_graph_new.
            ffi::check(|e| unsafe { ffi::clip_cuda_graph_replay(self.handle, e) })
        }
        #[cfg(not(clip_cuda_graph))]
        unreachable!("no graph exists without the shim")
    }

    #[cfg(clip_cuda_graph)]
    fn capture_on_side_stream(&mut self, work: impl FnOnce()) -> Result<(), GraphError> {
        // SAFETY (all calls): `handle` is a live graph from clip_cuda_graph_new.
        ffi::check(|e| unsafe { ffi::clip_cuda_graph_capture_begin(self.handle, e) })?;
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let ended = match &ran {
            Ok(()) => ffi::check(|e| unsafe { ffi::clip_cuda_graph_capture_end(self.handle, e) }),
            Err(panic) => Err(GraphError(format!(
                "the captured step failed: {}",
                crate::clip::torch_error::panic_message(panic.as_ref())
            ))),
        };
        if let Err(reason) = ended {
            let _ = ffi::check(|e| unsafe { ffi::clip_cuda_graph_abort_capture(self.handle, e) });
            return Err(reason);
        }
        Ok(())
    }

    #[cfg(not(clip_cuda_graph))]
    fn capture_on_side_stream(&mut self, _work: impl FnOnce()) -> Result<(), GraphError> {
        unreachable!("no graph exists without the shim")
    }

    fn enter(&mut self) -> Result<(), GraphError> {
        #[cfg(clip_cuda_graph)]
        {
            // SAFETY: `handle` is a live graph from clip_cuda_graph_new.
            ffi::check(|e| unsafe { ffi::clip_cuda_graph_enter_side_stream(self.handle, e) })
        }
        #[cfg(not(clip_cuda_graph))]
        unreachable!("no graph exists without the shim")
    }

    /// Back to the stream that was current before [`enter`](Self::enter). Failing here means the
    /// device failed while work ran on the side stream (a synchronisation reports it), and which
    /// stream is current is unknown: the run cannot go on, eagerly or not, so this panics, which
    /// the binaries report as an error.
    fn leave(&mut self) {
        #[cfg(clip_cuda_graph)]
        // SAFETY: `handle` is a live graph from clip_cuda_graph_new.
        if let Err(e) =
            ffi::check(|e| unsafe { ffi::clip_cuda_graph_leave_side_stream(self.handle, e) })
        {
            panic!("the CUDA device failed on the graph's side stream: {e}");
        }
        #[cfg(not(clip_cuda_graph))]
        unreachable!("no graph exists without the shim")
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(clip_cuda_graph)]
        // SAFETY: `handle` came from clip_cuda_graph_new and is freed once, here.
        unsafe {
            ffi::clip_cuda_graph_free(self.handle)
        };
    }
}

/// The CUDA caching allocator's peak of allocated bytes on `device` since the process started or
/// since [`reset_peak_memory`]; `Err` when it cannot be read (not CUDA, no shim).
pub fn peak_memory(device: Device) -> Result<u64, GraphError> {
    let index = shim_device(device, "the CUDA allocator's statistics need")?;
    #[cfg(clip_cuda_graph)]
    {
        let mut bytes = 0u64;
        // SAFETY: the shim writes one u64 on success.
        ffi::check(|e| unsafe { ffi::clip_cuda_peak_allocated(index, &mut bytes, e) })?;
        Ok(bytes)
    }
    #[cfg(not(clip_cuda_graph))]
    {
        let _ = index;
        unreachable!("support() fails without the shim")
    }
}

/// Starts [`peak_memory`] afresh from what is allocated now.
pub fn reset_peak_memory(device: Device) -> Result<(), GraphError> {
    let index = shim_device(device, "the CUDA allocator's statistics need")?;
    #[cfg(clip_cuda_graph)]
    {
        // SAFETY: plain call with a device index.
        ffi::check(|e| unsafe { ffi::clip_cuda_reset_peak(index, e) })
    }
    #[cfg(not(clip_cuda_graph))]
    {
        let _ = index;
        unreachable!("support() fails without the shim")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_build_has_the_shim_when_built_against_a_cuda_libtorch() {
        // scripts/setup.sh installs PyPI's CUDA build of torch and the CUDA headers the shim
        // needs: with a CUDA libtorch the shim must be there (a missing header would otherwise
        // turn graphs off for everyone, silently but for a build warning). A CPU-only libtorch
        // of the user's own legitimately has none.
        if env!("CLIP_LIBTORCH_HAS_CUDA") == "1" {
            support().expect("libtorch has CUDA, but the CUDA-graph shim was not built");
        } else {
            assert!(support().is_err());
        }
    }

    #[test]
    fn graphs_and_allocator_statistics_need_a_cuda_device() {
        let err = CudaGraph::new(Device::Cpu).unwrap_err();
        assert!(err.0.contains("CUDA"), "{err}");
        assert!(peak_memory(Device::Cpu).is_err());
        assert!(reset_peak_memory(Device::Cpu).is_err());
    }
}
