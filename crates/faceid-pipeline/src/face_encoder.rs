//! From face photos to a [`FaceConditioning`]: detect, align and embed with ArcFace (averaging
//! several photos), and for the FaceID Plus models run the aligned crops through the CLIP image
//! encoder (tencent-ailab `IPAdapterFaceIDPlus.get_image_embeds`: `CLIPImageProcessor`, then
//! `hidden_states[-2]` of `CLIPVisionModelWithProjection`).

use std::path::Path;
use std::sync::Arc;

use burn::tensor::Tensor;
use faceid_clip::{ClipImageProcessor, ClipVisionModel};
use faceid_core::{ComponentMemory, Device, HostTensor, Precision, device_lock};
use faceid_face::{
    AverageMode, DetectOptions, FaceAnalyzer, FaceError, FaceImage, Identity, IdentityBuilder,
};
use image::RgbImage;

use crate::error::PipelineError;
use crate::face_conditioning::FaceConditioning;

/// Crops the image encoder takes at once (bounds its activations for many photos).
const CLIP_CHUNK: usize = 4;

/// The channel order of the aligned face crop handed to the CLIP image processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaceCrop {
    /// As the reference implementation (and so fal's endpoint) does it: insightface aligns the
    /// OpenCV image, whose channels are BGR, and the crop goes to the CLIP processor as if it
    /// were RGB. The default, so that results match the reference.
    #[default]
    ReferenceBgr,
    /// The crop in its true colours.
    Rgb,
}

/// CLIP ViT image encoder with its preprocessing: aligned face crops to the penultimate hidden
/// states FaceID Plus reads.
#[derive(Debug)]
pub struct ClipImageEncoder {
    processor: ClipImageProcessor,
    model: ClipVisionModel,
    device: Device,
}

impl ClipImageEncoder {
    /// Loads a transformers `CLIPVisionModelWithProjection` folder (h94/IP-Adapter
    /// `models/image_encoder`): `config.json`, `model.safetensors`, and
    /// `preprocessor_config.json` when present (otherwise `CLIPImageProcessor()`'s defaults, as
    /// the reference builds it).
    pub fn from_dir_in(
        dir: &Path,
        device: &Device,
        precision: Precision,
    ) -> Result<Self, PipelineError> {
        let processor = if dir.join("preprocessor_config.json").is_file() {
            ClipImageProcessor::from_dir(dir)?
        } else {
            ClipImageProcessor::default()
        };
        Ok(Self {
            processor,
            model: ClipVisionModel::from_dir_in(dir, device, precision)?,
            device: device.clone(),
        })
    }

    /// The side of the face crop to align (the processor's crop size, 224).
    pub fn crop_size(&self) -> u32 {
        self.processor.config().crop_size.height as u32
    }

    /// Weights on the device.
    pub fn memory(&self) -> ComponentMemory {
        ComponentMemory::of("image_encoder", &self.model)
    }

    /// The mean over `crops` of their penultimate hidden states, `[1, tokens, width]` in f32.
    pub fn mean_features(&self, crops: &[RgbImage]) -> Result<Tensor<3>, PipelineError> {
        let device = self.device();
        let mut sum: Option<Tensor<3>> = None;
        for chunk in crops.chunks(CLIP_CHUNK) {
            let pixels = self.processor.preprocess(chunk)?.to_tensor::<4>(&device);
            let features = self.model.penultimate_hidden_state(pixels)?.sum_dim(0);
            sum = Some(match sum {
                Some(total) => total + features,
                None => features,
            });
        }
        let sum = sum.ok_or(PipelineError::InvalidRequest {
            field: "face",
            reason: "no face crop to encode".into(),
        })?;
        Ok(sum / crops.len() as f32)
    }

    /// The features of an all-zero pixel tensor (`torch.zeros_like(clip_image)`: zeros after
    /// normalisation), which the reference projects for the unconditional branch.
    pub fn zero_image_features(&self) -> Result<Tensor<3>, PipelineError> {
        let side = self.model.image_size();
        let zeros = Tensor::<4>::zeros([1, 3, side, side], &self.device());
        Ok(self.model.penultimate_hidden_state(zeros)?)
    }

    fn device(&self) -> Device {
        self.device.clone()
    }
}

/// Face photos to face conditioning: the face analyzer and, for FaceID Plus, the CLIP image
/// encoder (shared between models that use the same one).
#[derive(Debug)]
pub struct FaceEncoder {
    analyzer: FaceAnalyzer,
    image_encoder: Option<Arc<ClipImageEncoder>>,
    crop: FaceCrop,
}

impl FaceEncoder {
    /// An encoder from loaded models; `image_encoder` is needed for FaceID Plus.
    pub fn new(
        analyzer: FaceAnalyzer,
        image_encoder: Option<Arc<ClipImageEncoder>>,
        crop: FaceCrop,
    ) -> Self {
        Self {
            analyzer,
            image_encoder,
            crop,
        }
    }

    /// The face analyzer.
    pub fn analyzer(&self) -> &FaceAnalyzer {
        &self.analyzer
    }

    /// The CLIP image encoder, for FaceID Plus.
    pub fn image_encoder(&self) -> Option<&Arc<ClipImageEncoder>> {
        self.image_encoder.as_ref()
    }

    /// Starts an identity that photos are added to one at a time (each photo can be dropped
    /// once added); the aligned crops are kept only when an image encoder will read them.
    pub fn identity_builder(
        &self,
        options: &DetectOptions,
    ) -> Result<IdentityBuilder<'_>, FaceError> {
        let crop = self.image_encoder.as_ref().map(|e| e.crop_size());
        self.analyzer
            .identity_builder(options, AverageMode::NormalizedMean, crop)
    }

    /// The identity of the photos (several are averaged).
    pub fn identity(
        &self,
        images: &[FaceImage],
        options: &DetectOptions,
    ) -> Result<Identity, FaceError> {
        let mut builder = self.identity_builder(options)?;
        for image in images {
            builder.add(image)?;
        }
        builder.finish()
    }

    /// What an identity contributes to generation: the averaged normalised embedding `[1, 512]`
    /// and, with an image encoder, the mean CLIP features of the faces' aligned crops.
    pub fn encode(&self, identity: &Identity) -> Result<FaceConditioning, PipelineError> {
        let dim = identity.embedding.len();
        let id_embedding = HostTensor::new(vec![1, dim], identity.embedding.clone());
        let Some(encoder) = &self.image_encoder else {
            return Ok(FaceConditioning::identity(id_embedding));
        };
        let crops: Vec<RgbImage> = identity
            .crops()
            .map(|crop| match self.crop {
                FaceCrop::ReferenceBgr => swap_red_blue(crop),
                FaceCrop::Rgb => crop.clone(),
            })
            .collect();
        let features = device_lock::exclusive(&encoder.device, || {
            encoder.mean_features(&crops).map(to_host)
        })?;
        Ok(FaceConditioning {
            id_embedding,
            clip_embeds: Some(features),
        })
    }

    /// [`Self::identity`] then [`Self::encode`].
    pub fn encode_images(
        &self,
        images: &[FaceImage],
        options: &DetectOptions,
    ) -> Result<(Identity, FaceConditioning), PipelineError> {
        let identity = self.identity(images, options)?;
        let face = self.encode(&identity)?;
        Ok((identity, face))
    }
}

/// The crop with its red and blue channels exchanged: OpenCV's BGR pixels read as RGB.
fn swap_red_blue(crop: &RgbImage) -> RgbImage {
    let mut out = crop.clone();
    for pixel in out.pixels_mut() {
        pixel.0.swap(0, 2);
    }
    out
}

/// Reads a tensor back to the host (f32).
fn to_host<const D: usize>(tensor: Tensor<D>) -> HostTensor {
    let shape = tensor.dims().to_vec();
    let data = tensor.try_into_vec_as::<f32>().expect("f32 readback");
    HostTensor::new(shape, data)
}
