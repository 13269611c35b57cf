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
//! - [`KeyedDraws`]: each prompt of the batch draws from its own seed, by a counter-based hash
//!   computed on the device (graph-safe like torch's generator), so a prompt's draws are the same
//!   whatever its batch-mates — what `clip sweep` needs to batch runs that each have their seed.
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

/// The SplitMix64 finaliser's constants (Steele, Lea and Flood 2014), as `i64` bit patterns.
const MIX_1: i64 = 0xbf58_476d_1ce4_e5b9_u64 as i64;
const MIX_2: i64 = 0x94d0_49bb_1331_11eb_u64 as i64;
/// The golden-ratio increment of SplitMix64's state.
const GOLDEN: i64 = 0x9e37_79b9_7f4a_7c15_u64 as i64;

/// SplitMix64's finaliser, on the host: the reference the device version is tested against.
pub fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(MIX_1 as u64);
    let z = (z ^ (z >> 27)).wrapping_mul(MIX_2 as u64);
    z ^ (z >> 31)
}

/// The 64-bit word a [`KeyedDraws`] gives element `index` of draw number `draw` (1-based, counting
/// every draw of the run) for a prompt of seed `seed`, on the host.
pub fn keyed_word(seed: u64, draw: u64, index: u64) -> u64 {
    let stream = mix64(mix64(seed) ^ mix64(draw));
    mix64(stream.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN as u64)))
}

/// A logical right shift of Int64 words (torch's is arithmetic on signed integers).
fn shr(z: &Tensor, s: i64) -> Tensor {
    z.bitwise_right_shift_tensor_scalar(s).bitwise_and((1i64 << (64 - s)) - 1)
}

/// [`mix64`] on a tensor of Int64 words (multiplications wrap, as two's-complement hardware does).
fn mix(z: &Tensor) -> Tensor {
    let z = z.bitwise_xor_tensor(&shr(z, 30)) * MIX_1;
    let z = z.bitwise_xor_tensor(&shr(&z, 27)) * MIX_2;
    z.bitwise_xor_tensor(&shr(&z, 31))
}

/// Counter-based draws keyed per prompt: element `j` of prompt `b`'s share of the `k`-th draw is a
/// hash of (seed of `b`, `k`, `j`) — [`keyed_word`] — turned into a uniform or (Box–Muller) a
/// normal number. A prompt's draws therefore depend only on its own seed and on the sequence of
/// draws the settings make, never on the other prompts of its batch, their number or its place
/// among them. The draw counter lives on the device and is advanced by the draw itself, so a CUDA
/// graph that captures the step replays fresh draws, as with torch's generator.
///
/// As with every [`Draws`], a draw's first dimension runs over the batch prompt-major: it must be a
/// multiple of the number of seeds, and each prompt's share is a contiguous block of rows.
pub struct KeyedDraws {
    /// [B, 1]: each prompt's seed, mixed.
    keys: Tensor,
    /// [1]: the number of draws made so far.
    counter: Tensor,
}

impl KeyedDraws {
    /// One seed per prompt of the batch, in its order; the tensors live on `device`.
    pub fn new(seeds: &[u64], device: Device) -> Self {
        let keys: Vec<i64> = seeds.iter().map(|&s| mix64(s) as i64).collect();
        Self {
            keys: Tensor::from_slice(&keys).view([-1, 1]).to_device(device),
            counter: Tensor::zeros([1], (Kind::Int64, device)),
        }
    }

    /// The number of prompts.
    pub fn batch(&self) -> i64 {
        self.keys.size()[0]
    }

    /// `per` words for each prompt of the next draw: [B, per] Int64; `per` counts elements of a
    /// prompt's share (times `words` per element).
    fn words(&mut self, shape: &[i64], words: i64, device: Device) -> Tensor {
        let batch = self.batch();
        let rows = shape.first().copied().unwrap_or(1);
        assert!(
            rows % batch == 0,
            "a draw of {rows} rows cannot be split over the {batch} prompts' seeds"
        );
        let per = shape.iter().product::<i64>() / batch * words;
        let _ = self.counter.g_add_scalar_(1);
        let keys = self.keys.to_device(device);
        let counter = self.counter.to_device(device);
        let stream = mix(&keys.bitwise_xor_tensor(&mix(&counter)));
        let index = (Tensor::arange(per, (Kind::Int64, device)) + 1) * GOLDEN;
        mix(&(stream + index.unsqueeze(0)))
    }
}

/// Uniform on [0, 1) from the top `bits` bits of each word: exact in a float type with `bits`
/// bits of mantissa, so never rounded up to 1.
fn unit(words: &Tensor, bits: i64) -> Tensor {
    shr(words, 64 - bits).to_kind(Kind::Double) * 0.5f64.powi(bits as i32)
}

/// The mantissa bits of a floating kind (its significand precision).
fn mantissa_bits(kind: Kind) -> i64 {
    match kind {
        Kind::Double => 53,
        Kind::Half => 11,
        Kind::BFloat16 => 8,
        _ => 24,
    }
}

impl Draws for KeyedDraws {
    fn uniform(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        let words = self.words(shape, 1, device);
        unit(&words, mantissa_bits(kind)).to_kind(kind).view(shape)
    }

    fn normal(&mut self, shape: &[i64], kind: Kind, device: Device) -> Tensor {
        // Box–Muller on two words per element: sqrt(-2 ln u1) cos(2π u2), u1 in (0, 1].
        let words = self.words(shape, 2, device).view([self.batch(), -1, 2]);
        let u1 = unit(&words.select(2, 0), 53).neg() + 1.0;
        let u2 = unit(&words.select(2, 1), 53);
        let n = (u1.log() * -2.0).sqrt() * (u2 * (2.0 * std::f64::consts::PI)).cos();
        n.to_kind(kind).view(shape)
    }

    fn capturable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_words_are_the_host_reference() {
        let mut draws = KeyedDraws::new(&[7, u64::MAX, 0], Device::Cpu);
        let _ = draws.words(&[3, 2], 1, Device::Cpu);
        let words = draws.words(&[6, 5], 1, Device::Cpu);
        let got: Vec<i64> = Vec::try_from(words.flatten(0, -1)).unwrap();
        let mut want = Vec::new();
        for seed in [7, u64::MAX, 0] {
            want.extend((0..10).map(|j| keyed_word(seed, 2, j) as i64));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_prompts_keyed_draws_ignore_its_batch_mates() {
        let mut together = KeyedDraws::new(&[1, 2, 3], Device::Cpu);
        let mut alone = KeyedDraws::new(&[2], Device::Cpu);
        for _ in 0..3 {
            let a = together.normal(&[6, 4], Kind::Float, Device::Cpu);
            let b = alone.normal(&[2, 4], Kind::Float, Device::Cpu);
            assert!(a.narrow(0, 2, 2).equal(&b));
            let a = together.uniform(&[3], Kind::Double, Device::Cpu);
            let b = alone.uniform(&[1], Kind::Double, Device::Cpu);
            assert!(a.narrow(0, 1, 1).equal(&b));
        }
    }

    #[test]
    fn keyed_draws_have_the_right_distribution() {
        let mut draws = KeyedDraws::new(&[42, 43], Device::Cpu);
        let u = draws.uniform(&[2, 100_000], Kind::Float, Device::Cpu);
        let (lo, hi) = (u.min().double_value(&[]), u.max().double_value(&[]));
        assert!((0.0..1.0).contains(&lo) && hi < 1.0 && hi > 0.999);
        assert!((u.mean(Kind::Double).double_value(&[]) - 0.5).abs() < 0.005);
        let n = draws.normal(&[2, 100_000], Kind::Float, Device::Cpu);
        assert!(n.mean(Kind::Double).double_value(&[]).abs() < 0.01);
        assert!((n.std(true).double_value(&[]) - 1.0).abs() < 0.01);
        // The two prompts' draws and consecutive draws are uncorrelated.
        let corr = n.corrcoef().double_value(&[0, 1]);
        assert!(corr.abs() < 0.01, "{corr}");
        let h = draws.uniform(&[2, 4], Kind::Half, Device::Cpu);
        assert!(h.max().double_value(&[]) < 1.0);
    }

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
