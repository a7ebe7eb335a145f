//! Where the LoRA of a FaceID adapter comes from, and kohya's names for it.
//!
//! The FaceID checkpoints carry the LoRA per attention processor
//! (`{i}.to_q_lora.down.weight`, ...); the same LoRA is also published as a kohya-style
//! safetensors file (`lora_unet_<module path with _>_to_q.lora_down.weight`, `.alpha`).

use std::path::PathBuf;

use faceid_blocks::Projection;

/// Where to take the LoRA from.
#[derive(Debug, Clone, PartialEq)]
pub enum LoraSource {
    /// The `*_lora.{down,up}.weight` tensors inside the adapter checkpoint.
    Checkpoint,
    /// A kohya-style LoRA file (e.g. `ip-adapter-faceid_sd15_lora.safetensors`); the
    /// checkpoint's own LoRA tensors are then ignored.
    Kohya(PathBuf),
    /// No LoRA.
    None,
}

/// The checkpoint suffix of a projection (`to_q`, ..., `to_out`) in FaceID checkpoints.
pub(crate) fn checkpoint_suffix(projection: Projection) -> &'static str {
    match projection {
        Projection::Q => "to_q",
        Projection::K => "to_k",
        Projection::V => "to_v",
        Projection::Out => "to_out",
    }
}

/// kohya's name of the LoRA on `projection` of the attention layer at `path`
/// (`down_blocks.0.attentions.0.transformer_blocks.0.attn1`).
pub fn kohya_name(path: &str, projection: Projection) -> String {
    let target = match projection {
        Projection::Q => "to_q",
        Projection::K => "to_k",
        Projection::V => "to_v",
        Projection::Out => "to_out_0",
    };
    format!("lora_unet_{}_{target}", path.replace('.', "_"))
}

/// The four adapted projections, in checkpoint order.
pub(crate) const PROJECTIONS: [Projection; 4] =
    [Projection::Q, Projection::K, Projection::V, Projection::Out];
