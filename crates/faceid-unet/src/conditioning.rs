//! What the UNet is conditioned on besides the sample and the timestep, as one value: diffusers'
//! `encoder_hidden_states` plus its `added_cond_kwargs` bag (IP-Adapter image tokens, and SDXL's
//! `text_embeds` / `time_ids` for `addition_embed_type = "text_time"`).

use burn::tensor::Tensor;

/// The conditioning of one UNet call; every tensor has the sample's batch size first.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// Text tokens `[batch, tokens, cross_attention_dim]` (`encoder_hidden_states`).
    pub text: Tensor<3>,
    /// IP-Adapter image tokens `[batch, tokens, dim]`, attended to by the layers that have an
    /// image branch installed.
    pub image: Option<Tensor<3>>,
    /// SDXL's added conditioning (`addition_embed_type = "text_time"`).
    pub text_time: Option<TextTime>,
}

/// SDXL's `added_cond_kwargs`: the pooled text embedding and the size/crop micro-conditioning.
#[derive(Debug, Clone)]
pub struct TextTime {
    /// The second text encoder's projected pooled output `[batch, projection_dim]`.
    pub text_embeds: Tensor<2>,
    /// `(original height, original width, crop top, crop left, target height, target width)`
    /// per sample. Kept on the host: the UNet embeds them there, in f32 as torch does, so a step
    /// never waits on the device to read them back.
    pub time_ids: Vec<[f32; crate::TIME_IDS]>,
}

impl Conditioning {
    /// Text tokens alone.
    pub fn text(text: Tensor<3>) -> Self {
        Self {
            text,
            image: None,
            text_time: None,
        }
    }

    /// The same with IP-Adapter image tokens (`None` leaves it without).
    pub fn with_image(mut self, image: Option<Tensor<3>>) -> Self {
        self.image = image;
        self
    }

    /// The same with SDXL's added conditioning.
    pub fn with_text_time(mut self, text_time: Option<TextTime>) -> Self {
        self.text_time = text_time;
        self
    }

    /// The batch size, read from the text tokens.
    pub fn batch(&self) -> usize {
        self.text.dims()[0]
    }
}
