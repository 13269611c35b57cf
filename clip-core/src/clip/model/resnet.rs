//! `ModifiedResNet`, the vision tower of CLIP's RN50, RN101, RN50x4, RN50x16 and RN50x64.
//!
//! Mirrors `clip/model.py` (openai-clip 1.0.1): `Bottleneck`, `AttentionPool2d`, `ModifiedResNet`.
//! Differences from torchvision's ResNet, as there: a 3-convolution stem with an average pool,
//! anti-aliased strided blocks (an `AvgPool2d(stride)` before the stride-1 convolution) and a
//! QKV attention pool instead of global average pooling. BatchNorm runs in evaluation mode with
//! its running statistics, which are buffers in the checkpoints (`num_batches_tracked` too, kept
//! here only so that the key set equals OpenAI's).

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// `nn.BatchNorm2d` in evaluation mode, with torch's parameter and buffer names.
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: Tensor,
}

impl BatchNorm2d {
    pub fn new(vs: nn::Path, channels: i64) -> Self {
        let num_batches_tracked =
            vs.add("num_batches_tracked", Tensor::zeros([], (Kind::Int64, vs.device())), false);
        Self {
            weight: vs.var("weight", &[channels], nn::Init::Const(1.)),
            bias: vs.var("bias", &[channels], nn::Init::Const(0.)),
            running_mean: vs.zeros_no_train("running_mean", &[channels]),
            running_var: vs.ones_no_train("running_var", &[channels]),
            num_batches_tracked,
        }
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.1,
            1e-5,
            true,
        )
    }
}

fn conv(vs: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let config = nn::ConvConfig { stride, padding, bias: false, ..Default::default() };
    nn::conv2d(vs, c_in, c_out, k, config)
}

fn avg_pool(xs: &Tensor, k: i64) -> Tensor {
    xs.avg_pool2d([k, k], [k, k], [0, 0], false, true, None)
}

/// `clip.model.Bottleneck` (expansion 4).
#[derive(Debug)]
pub struct Bottleneck {
    pub conv1: nn::Conv2D,
    pub bn1: BatchNorm2d,
    pub conv2: nn::Conv2D,
    pub bn2: BatchNorm2d,
    pub conv3: nn::Conv2D,
    pub bn3: BatchNorm2d,
    /// `downsample.0` (1×1 convolution) and `downsample.1` (BatchNorm), after `AvgPool2d(stride)`.
    pub downsample: Option<(nn::Conv2D, BatchNorm2d)>,
    stride: i64,
}

impl Bottleneck {
    pub const EXPANSION: i64 = 4;

    pub fn new(vs: nn::Path, inplanes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * Self::EXPANSION;
        let downsample = (stride > 1 || inplanes != out).then(|| {
            let ds = &vs / "downsample";
            (conv(&ds / "0", inplanes, out, 1, 1, 0), BatchNorm2d::new(&ds / "1", out))
        });
        Self {
            conv1: conv(&vs / "conv1", inplanes, planes, 1, 1, 0),
            bn1: BatchNorm2d::new(&vs / "bn1", planes),
            conv2: conv(&vs / "conv2", planes, planes, 3, 1, 1),
            bn2: BatchNorm2d::new(&vs / "bn2", planes),
            conv3: conv(&vs / "conv3", planes, out, 1, 1, 0),
            bn3: BatchNorm2d::new(&vs / "bn3", out),
            downsample,
            stride,
        }
    }
}

impl Module for Bottleneck {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut out = xs.apply(&self.conv1).apply(&self.bn1).relu();
        out = out.apply(&self.conv2).apply(&self.bn2).relu();
        if self.stride > 1 {
            out = avg_pool(&out, self.stride);
        }
        out = out.apply(&self.conv3).apply(&self.bn3);
        let identity = match &self.downsample {
            Some((conv, bn)) => {
                let pooled =
                    if self.stride > 1 { avg_pool(xs, self.stride) } else { xs.shallow_clone() };
                pooled.apply(conv).apply(bn)
            }
            None => xs.shallow_clone(),
        };
        (out + identity).relu()
    }
}

/// `clip.model.AttentionPool2d`: one query (the mean over positions) attends over all positions.
#[derive(Debug)]
pub struct AttentionPool2d {
    pub positional_embedding: Tensor,
    pub k_proj: nn::Linear,
    pub q_proj: nn::Linear,
    pub v_proj: nn::Linear,
    pub c_proj: nn::Linear,
    heads: i64,
}

impl AttentionPool2d {
    pub fn new(
        vs: nn::Path,
        spacial_dim: i64,
        embed_dim: i64,
        heads: i64,
        output_dim: i64,
    ) -> Self {
        let std = (embed_dim as f64).powf(-0.5);
        let positional_embedding = vs.var(
            "positional_embedding",
            &[spacial_dim * spacial_dim + 1, embed_dim],
            nn::Init::Randn { mean: 0., stdev: std },
        );
        Self {
            positional_embedding,
            k_proj: nn::linear(&vs / "k_proj", embed_dim, embed_dim, Default::default()),
            q_proj: nn::linear(&vs / "q_proj", embed_dim, embed_dim, Default::default()),
            v_proj: nn::linear(&vs / "v_proj", embed_dim, embed_dim, Default::default()),
            c_proj: nn::linear(&vs / "c_proj", embed_dim, output_dim, Default::default()),
            heads,
        }
    }
}

impl Module for AttentionPool2d {
    /// [N, C, H, W] → [N, output_dim]. The reference runs `F.multi_head_attention_forward` with every
    /// position as a query and keeps the first output; only that query is computed here.
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (n, c, h, w) = xs.size4().expect("attention pool input is [N, C, H, W]");
        let xs = xs.reshape([n, c, h * w]).permute([0, 2, 1]); // [N, HW, C]
        let kind = xs.kind();
        let xs = Tensor::cat(&[xs.mean_dim(1, true, None), xs], 1); // [N, HW+1, C]
        let xs = xs + self.positional_embedding.to_kind(kind);
        let l = h * w + 1;
        let head_dim = c / self.heads;
        let heads = |t: Tensor, len: i64| t.view([n, len, self.heads, head_dim]).transpose(1, 2);
        let q = heads(xs.narrow(1, 0, 1).apply(&self.q_proj), 1);
        let k = heads(xs.apply(&self.k_proj), l);
        let v = heads(xs.apply(&self.v_proj), l);
        let attn = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        attn.transpose(1, 2).reshape([n, c]).apply(&self.c_proj)
    }
}

/// `clip.model.ModifiedResNet`.
#[derive(Debug)]
pub struct ModifiedResNet {
    pub conv1: nn::Conv2D,
    pub bn1: BatchNorm2d,
    pub conv2: nn::Conv2D,
    pub bn2: BatchNorm2d,
    pub conv3: nn::Conv2D,
    pub bn3: BatchNorm2d,
    pub layers: [Vec<Bottleneck>; 4],
    pub attnpool: AttentionPool2d,
    /// Whether activations and convolution weights are laid out channels-last (NHWC strides, the
    /// same [N, C, H, W] shape): see [`ModifiedResNet::set_channels_last`].
    channels_last: bool,
}

/// The same tensor (shape and values) with NHWC strides: channels-last memory format.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

impl ModifiedResNet {
    pub fn new(
        vs: nn::Path,
        layers: [i64; 4],
        output_dim: i64,
        heads: i64,
        resolution: i64,
        width: i64,
    ) -> Self {
        let mut inplanes = width;
        let mut make_layer =
            |name: &str, planes: i64, blocks: i64, stride: i64| -> Vec<Bottleneck> {
                let layer = &vs / name;
                (0..blocks)
                    .map(|i| {
                        let block = Bottleneck::new(
                            &layer / i,
                            inplanes,
                            planes,
                            if i == 0 { stride } else { 1 },
                        );
                        inplanes = planes * Bottleneck::EXPANSION;
                        block
                    })
                    .collect()
            };
        let stages = [
            make_layer("layer1", width, layers[0], 1),
            make_layer("layer2", width * 2, layers[1], 2),
            make_layer("layer3", width * 4, layers[2], 2),
            make_layer("layer4", width * 8, layers[3], 2),
        ];
        let embed_dim = width * 32;
        Self {
            conv1: conv(&vs / "conv1", 3, width / 2, 3, 2, 1),
            bn1: BatchNorm2d::new(&vs / "bn1", width / 2),
            conv2: conv(&vs / "conv2", width / 2, width / 2, 3, 1, 1),
            bn2: BatchNorm2d::new(&vs / "bn2", width / 2),
            conv3: conv(&vs / "conv3", width / 2, width, 3, 1, 1),
            bn3: BatchNorm2d::new(&vs / "bn3", width),
            layers: stages,
            attnpool: AttentionPool2d::new(
                &vs / "attnpool",
                resolution / 32,
                embed_dim,
                heads,
                output_dim,
            ),
            channels_last: false,
        }
    }

    /// Lays the convolution weights out channels-last (or back), in place after loading, and the
    /// input of every later forward: convolution libraries (cuDNN, oneDNN) then run NHWC kernels,
    /// which BatchNorm, ReLU, pooling and additions keep. The same function; a speed choice.
    pub fn set_channels_last(&mut self, on: bool) {
        if on == self.channels_last {
            return;
        }
        let layout = |t: &Tensor| if on { channels_last(t) } else { t.contiguous() };
        let mut convs: Vec<&mut nn::Conv2D> =
            vec![&mut self.conv1, &mut self.conv2, &mut self.conv3];
        for block in self.layers.iter_mut().flatten() {
            convs.extend([&mut block.conv1, &mut block.conv2, &mut block.conv3]);
            if let Some((conv, _)) = &mut block.downsample {
                convs.push(conv);
            }
        }
        tch::no_grad(|| {
            for conv in convs {
                let laid_out = layout(&conv.ws);
                conv.ws.set_data(&laid_out);
            }
        });
        self.channels_last = on;
    }

    pub fn is_channels_last(&self) -> bool {
        self.channels_last
    }
}

impl Module for ModifiedResNet {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs.to_kind(self.conv1.ws.kind());
        let xs = if self.channels_last { channels_last(&xs) } else { xs };
        let mut xs = xs.apply(&self.conv1).apply(&self.bn1).relu();
        xs = xs.apply(&self.conv2).apply(&self.bn2).relu();
        xs = xs.apply(&self.conv3).apply(&self.bn3).relu();
        xs = avg_pool(&xs, 2);
        for block in self.layers.iter().flatten() {
            xs = xs.apply(block);
        }
        xs.apply(&self.attnpool)
    }
}
