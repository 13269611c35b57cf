//! Where the engine's random numbers come from: the initial image and every augmentation's
//! parameters are drawn through [`Draws`], separately from applying them (as torchvision's and
//! kornia's `get_params` / `apply` split), so that a run can be recorded and replayed.
//!
//! - [`TorchDraws`]: torch's generator for the tensor's device (`Tensor::rand` / `randn`); seed it
//!   with `tch::manual_seed`. On CUDA these draws are graph-safe: a captured step draws anew at
//!   every replay.
//! - [`Recorder`]: passes another source's draws through and keeps a copy of each.
//! - [`Replay`]: hands recorded draws back in order — all of them, or one prompt's share, which is
//!   how a batch of prompts is checked against separate runs of each prompt.
//!
//! Every draw's first dimension runs over the images of the batch, prompt-major (a prompt's
//! cutouts are consecutive rows), so a prompt's share of any draw is a contiguous block of rows.

use std::collections::VecDeque;
use tch::{Device, Kind, Tensor};

/// A source of random tensors.
pub trait Draws {
    /// Uniform on [0, 1).
    fn uniform(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor;
    /// Standard normal.
    fn normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor;
    /// Whether a CUDA graph may capture these draws (each replay then draws anew).
    fn capturable(&self) -> bool;
}

/// torch's own generator for the device.
#[derive(Debug, Default, Clone, Copy)]
pub struct TorchDraws;

impl Draws for TorchDraws {
    fn uniform(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        Tensor::rand(shape, (kind, device))
    }

    fn normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        Tensor::randn(shape, (kind, device))
    }

    fn capturable(&self) -> bool {
        true
    }
}

/// Draws from `inner`, keeping a copy of each (on the CPU) in order.
pub struct Recorder<D: Draws> {
    pub inner: D,
    pub recorded: Vec<Tensor>,
}

impl<D: Draws> Recorder<D> {
    pub fn new(inner: D) -> Self {
        Self { inner, recorded: Vec::new() }
    }
}

impl<D: Draws> Draws for Recorder<D> {
    fn uniform(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        let t = self.inner.uniform(shape, kind, device);
        self.recorded.push(t.to_device(Device::Cpu));
        t
    }

    fn normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        let t = self.inner.normal(shape, kind, device);
        self.recorded.push(t.to_device(Device::Cpu));
        t
    }

    fn capturable(&self) -> bool {
        // Recording reads every draw back to the host.
        false
    }
}

/// Recorded draws, handed back in order. Asking for a draw of another shape or kind than the
/// next recorded one, or for more draws than were recorded, is a programming error and panics
/// (replays are for tests and reproductions, which must ask for exactly what was recorded).
pub struct Replay {
    draws: VecDeque<Tensor>,
}

impl Replay {
    pub fn new(draws: Vec<Tensor>) -> Self {
        Self { draws: draws.into() }
    }

    /// The share of prompt `index` of a batch of `batch` prompts: each draw's rows split into
    /// `batch` equal, consecutive blocks, block `index` kept.
    pub fn for_prompt(draws: &[Tensor], batch: i64, index: i64) -> Self {
        Self::for_prompts(draws, batch, &[index])
    }

    /// The share of prompts `indices` (in that order) of a batch of `batch` prompts: as
    /// [`for_prompt`](Self::for_prompt), the blocks concatenated.
    pub fn for_prompts(draws: &[Tensor], batch: i64, indices: &[i64]) -> Self {
        let share = draws
            .iter()
            .map(|t| {
                let rows = t.size()[0];
                assert!(
                    rows % batch == 0,
                    "a draw of {rows} rows is not split over {batch} prompts"
                );
                let block = rows / batch;
                let parts: Vec<Tensor> =
                    indices.iter().map(|&i| t.narrow(0, i * block, block)).collect();
                Tensor::cat(&parts, 0)
            })
            .collect();
        Self::new(share)
    }

    /// Draws not yet handed back.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }

    fn next(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        let t = self.draws.pop_front().expect("the replay asked for more draws than were recorded");
        assert_eq!(t.size(), shape, "the replayed draw has another shape than the one asked for");
        t.to_kind(kind).to_device(device)
    }
}

impl Draws for Replay {
    fn uniform(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        self.next(shape, kind, device)
    }

    fn normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        self.next(shape, kind, device)
    }

    fn capturable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_hands_back_each_prompts_rows() {
        let mut recorder = Recorder::new(TorchDraws);
        let a = recorder.uniform(&[6, 2], Kind::Float, Device::Cpu);
        let b = recorder.normal(&[3], Kind::Double, Device::Cpu);
        let mut replay = Replay::for_prompt(&recorder.recorded, 3, 1);
        assert!(replay.uniform(&[2, 2], Kind::Float, Device::Cpu).equal(&a.narrow(0, 2, 2)));
        assert!(replay.normal(&[1], Kind::Double, Device::Cpu).equal(&b.narrow(0, 1, 1)));
        assert_eq!(replay.remaining(), 0);
    }
}
