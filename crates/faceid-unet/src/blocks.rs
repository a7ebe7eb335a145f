//! Ports of diffusers' `CrossAttnDownBlock2D` / `DownBlock2D`, `UNetMidBlock2DCrossAttn` and
//! `CrossAttnUpBlock2D` / `UpBlock2D` (models/unets/unet_2d_blocks.py). A block without
//! attention simply has no transformers.

use burn::module::Module;
use burn::tensor::Tensor;
use faceid_blocks::{Downsample2D, ResnetBlock2D, Upsample2D};
use faceid_core::{Scope, WeightError};

use crate::Context;
use crate::transformer::{Transformer2DModel, TransformerShape};
use faceid_blocks::Attention;

/// What every resnet of a UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct ResnetShape {
    /// Width of the timestep embedding.
    pub temb: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// GroupNorm epsilon.
    pub eps: f64,
}

fn load_resnet(
    scope: &Scope,
    d_in: usize,
    d_out: usize,
    r: ResnetShape,
) -> Result<ResnetBlock2D, WeightError> {
    ResnetBlock2D::load(scope, d_in, d_out, Some(r.temb), r.groups, r.eps)
}

/// A down block: resnets (each followed by a transformer in cross-attention blocks), then an
/// optional downsampler. Every intermediate output is kept for the skip connections.
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsamplers: Option<Downsample2D>,
}

/// The sizes of one down or up block.
#[derive(Debug, Clone, Copy)]
pub struct BlockShape {
    /// Channels coming in.
    pub d_in: usize,
    /// Channels going out.
    pub d_out: usize,
    /// Resnets in the block.
    pub layers: usize,
    /// Whether the block has transformers.
    pub attention: bool,
    /// Whether the block ends with a down/up sampler.
    pub resample: bool,
    /// Shape of the transformers (its `channels` is set per block).
    pub transformer: TransformerShape,
}

impl DownBlock {
    /// Loads `resnets.*`, `attentions.*` and `downsamplers.0`.
    pub fn load(
        scope: &Scope,
        s: BlockShape,
        r: ResnetShape,
        padding: usize,
    ) -> Result<Self, WeightError> {
        let mut resnets = Vec::with_capacity(s.layers);
        let mut attentions = Vec::new();
        for i in 0..s.layers {
            let d_in = if i == 0 { s.d_in } else { s.d_out };
            resnets.push(load_resnet(&scope.at("resnets").at(i), d_in, s.d_out, r)?);
            if s.attention {
                attentions.push(Transformer2DModel::load(
                    &scope.at("attentions").at(i),
                    s.transformer,
                )?);
            }
        }
        let downsamplers = s
            .resample
            .then(|| Downsample2D::load(&scope.at("downsamplers.0"), s.d_out, padding))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            downsamplers,
        })
    }

    /// Runs the block, pushing each output onto `skips`.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        context: Context,
        skips: &mut Vec<Tensor<4>>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context);
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsamplers {
            x = down.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

fn collect<'a>(
    attentions: &'a mut [Transformer2DModel],
    prefix: &str,
    out: &mut Vec<(String, &'a mut Attention)>,
) {
    for (j, t) in attentions.iter_mut().enumerate() {
        t.attentions_mut(&format!("{prefix}.attentions.{j}"), out);
    }
}

impl DownBlock {
    /// The block's attention layers with their paths.
    pub fn attentions_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Attention)>,
    ) {
        collect(&mut self.attentions, prefix, out);
    }
}

impl MidBlock {
    /// The block's attention layers with their paths.
    pub fn attentions_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Attention)>,
    ) {
        collect(&mut self.attentions, prefix, out);
    }
}

impl UpBlock {
    /// The block's attention layers with their paths.
    pub fn attentions_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Attention)>,
    ) {
        collect(&mut self.attentions, prefix, out);
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
#[derive(Module, Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    /// Loads `resnets.0`, `attentions.0`, `resnets.1`.
    pub fn load(
        scope: &Scope,
        channels: usize,
        r: ResnetShape,
        transformer: TransformerShape,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            resnets: (0..2)
                .map(|i| load_resnet(&scope.at("resnets").at(i), channels, channels, r))
                .collect::<Result<_, _>>()?,
            attentions: vec![Transformer2DModel::load(
                &scope.at("attentions.0"),
                transformer,
            )?],
        })
    }

    /// Runs the block.
    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, context: Context) -> Tensor<4> {
        let x = self.resnets[0].forward(x, Some(temb));
        let x = self.attentions[0].forward(x, context);
        self.resnets[1].forward(x, Some(temb))
    }
}

/// An up block: resnets fed with the skip connections (each followed by a transformer in
/// cross-attention blocks), then an optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsamplers: Option<Upsample2D>,
}

impl UpBlock {
    /// Loads the block. `skip_channels[i]` is the width of the skip connection resnet `i`
    /// concatenates; `prev` is the width of the block's input.
    pub fn load(
        scope: &Scope,
        s: BlockShape,
        r: ResnetShape,
        prev: usize,
        skip_channels: &[usize],
    ) -> Result<Self, WeightError> {
        let mut resnets = Vec::with_capacity(s.layers);
        let mut attentions = Vec::new();
        for (i, skip) in skip_channels.iter().enumerate() {
            let d_in = if i == 0 { prev } else { s.d_out };
            resnets.push(load_resnet(
                &scope.at("resnets").at(i),
                d_in + skip,
                s.d_out,
                r,
            )?);
            if s.attention {
                attentions.push(Transformer2DModel::load(
                    &scope.at("attentions").at(i),
                    s.transformer,
                )?);
            }
        }
        let upsamplers = s
            .resample
            .then(|| Upsample2D::load(&scope.at("upsamplers.0"), s.d_out))
            .transpose()?;
        Ok(Self {
            resnets,
            attentions,
            upsamplers,
        })
    }

    /// Number of skip connections the block consumes.
    pub fn layers(&self) -> usize {
        self.resnets.len()
    }

    /// Runs the block, popping its skip connections; `upsample_to` is the size of the next
    /// block's first skip connection.
    pub fn forward(
        &self,
        mut x: Tensor<4>,
        temb: &Tensor<2>,
        context: Context,
        skips: &mut Vec<Tensor<4>>,
        upsample_to: Option<[usize; 2]>,
    ) -> Tensor<4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip connection per up resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb));
            if let Some(attention) = self.attentions.get(i) {
                x = attention.forward(x, context);
            }
        }
        if let Some(up) = &self.upsamplers {
            x = up.forward(x, upsample_to);
        }
        x
    }
}
