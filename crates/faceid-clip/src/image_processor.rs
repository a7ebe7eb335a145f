//! Port of transformers' `CLIPImageProcessor` as transformers 5.24 runs it in the reference stack:
//! the PIL backend (`CLIPImageProcessorPil`, which `CLIPImageProcessor` resolves to without
//! torchvision, and the only implementation transformers 4 had). Per image: resize with
//! Pillow's resampling (8-bit, see [`Resample`]), centre crop (zero padding when the crop is
//! larger), rescale (`u8 as f64 * rescale_factor`, then f32), normalise in f32
//! (`(x - mean) / std`). On 8-bit input the result is bit for bit the reference's.

use std::path::Path;

use faceid_core::{ConfigError, HostTensor};
use image::RgbImage;

pub use crate::pil_resize::Resample;
use crate::pil_resize::resize_rgb;

/// transformers' `OPENAI_CLIP_MEAN`.
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// transformers' `OPENAI_CLIP_STD`.
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// A `preprocessor_config.json` (`CLIPImageProcessor` / legacy `CLIPFeatureExtractor`); absent
/// fields take `CLIPImageProcessor`'s defaults, which are also [`Default`]'s (and the values of
/// h94/IP-Adapter's image encoder).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct ClipImageProcessorConfig {
    /// Whether to resize.
    pub do_resize: bool,
    /// The resize target.
    pub size: ResizeSize,
    /// The Pillow filter (`resample`, Pillow's number; 3 = bicubic).
    pub resample: Resample,
    /// Whether to centre-crop after resizing.
    pub do_center_crop: bool,
    /// The crop.
    pub crop_size: CropSize,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Usually 1/255.
    pub rescale_factor: f64,
    /// Whether to normalise with `image_mean` / `image_std`.
    pub do_normalize: bool,
    /// Per-channel mean (one number means the same for every channel).
    pub image_mean: PerChannel,
    /// Per-channel standard deviation (one number means the same for every channel).
    pub image_std: PerChannel,
    /// Whether to convert to RGB first (the input here is always RGB already).
    pub do_convert_rgb: bool,
}

impl Default for ClipImageProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: ResizeSize::ShortestEdge(224),
            resample: Resample::Bicubic,
            do_center_crop: true,
            crop_size: CropSize {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: PerChannel::Each(CLIP_MEAN.to_vec()),
            image_std: PerChannel::Each(CLIP_STD.to_vec()),
            do_convert_rgb: true,
        }
    }
}

/// The `size` of a preprocessor config.
#[derive(Debug, Clone, PartialEq)]
pub enum ResizeSize {
    /// `{"shortest_edge": n}` (or a bare number, as CLIP reads it): the short side becomes `n`,
    /// the long side `int(n * long / short)`.
    ShortestEdge(usize),
    /// `{"height": h, "width": w}`: exactly that size.
    Exact {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
    },
    /// Another combination (`longest_edge`, `max_height`, ...), which is not supported.
    Other(String),
}

/// The `crop_size` of a preprocessor config (a bare number means a square).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropSize {
    /// Crop height.
    pub height: usize,
    /// Crop width.
    pub width: usize,
}

/// `image_mean` / `image_std`: one number or one per channel.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum PerChannel {
    /// The same value for every channel.
    All(f64),
    /// One value per channel.
    Each(Vec<f64>),
}

impl PerChannel {
    fn channels(&self) -> Option<[f64; 3]> {
        match self {
            Self::All(v) => Some([*v; 3]),
            Self::Each(v) => v.as_slice().try_into().ok(),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SizeField {
    Number(usize),
    Map(std::collections::BTreeMap<String, Option<usize>>),
}

impl<'de> serde::Deserialize<'de> for ResizeSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match SizeField::deserialize(deserializer)? {
            SizeField::Number(n) => Self::ShortestEdge(n),
            SizeField::Map(map) => {
                let set: Vec<(&str, usize)> = map
                    .iter()
                    .filter_map(|(k, v)| v.map(|v| (k.as_str(), v)))
                    .collect();
                match set.as_slice() {
                    [("shortest_edge", n)] => Self::ShortestEdge(*n),
                    [("height", h), ("width", w)] => Self::Exact {
                        height: *h,
                        width: *w,
                    },
                    _ => Self::Other(format!("{set:?}")),
                }
            }
        })
    }
}

impl<'de> serde::Deserialize<'de> for CropSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Field {
            Number(usize),
            Map { height: usize, width: usize },
        }
        Ok(match Field::deserialize(deserializer)? {
            Field::Number(n) => Self {
                height: n,
                width: n,
            },
            Field::Map { height, width } => Self { height, width },
        })
    }
}

impl ClipImageProcessorConfig {
    /// Reads a `preprocessor_config.json` and checks it (see [`Self::validate`]).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = faceid_core::config::read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Rejects what this port does not do, naming the field (`path` is where the config came
    /// from, for the message): resize targets other than `shortest_edge` or `height`+`width`,
    /// nearest-neighbour resampling, empty sizes, `image_mean`/`image_std` not for 3 channels.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        use faceid_core::config::unsupported;
        if self.do_resize {
            match &self.size {
                ResizeSize::ShortestEdge(n) if *n > 0 => {}
                ResizeSize::Exact { height, width } if *height > 0 && *width > 0 => {}
                other => {
                    return Err(unsupported(
                        path,
                        "size",
                        other,
                        "`shortest_edge` or `height` and `width`, positive",
                    ));
                }
            }
            if self.resample == Resample::Nearest {
                return Err(unsupported(
                    path,
                    "resample",
                    self.resample.pil_number(),
                    "lanczos (1), bilinear (2), bicubic (3), box (4) or hamming (5)",
                ));
            }
        }
        if self.do_center_crop && (self.crop_size.height == 0 || self.crop_size.width == 0) {
            return Err(unsupported(
                path,
                "crop_size",
                self.crop_size,
                "positive sizes",
            ));
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return Err(unsupported(
                path,
                "rescale_factor",
                self.rescale_factor,
                "a finite number",
            ));
        }
        if self.do_normalize {
            if self.image_mean.channels().is_none() {
                return Err(unsupported(
                    path,
                    "image_mean",
                    &self.image_mean,
                    "one number or three",
                ));
            }
            if self.image_std.channels().is_none() {
                return Err(unsupported(
                    path,
                    "image_std",
                    &self.image_std,
                    "one number or three",
                ));
            }
        }
        Ok(())
    }
}

/// An image batch that cannot be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum ImageProcessorError {
    /// The config is unreadable or unsupported.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No images were given.
    #[error("no images to preprocess")]
    EmptyBatch,
    /// An image has no pixels.
    #[error("image {index} is {width}x{height}: it has no pixels")]
    EmptyImage {
        /// Position in the batch.
        index: usize,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// Without a crop or a fixed size the outputs differ in size and do not make one batch.
    #[error(
        "image {index} preprocesses to {found:?} (height, width), image 0 to {expected:?}: one batch needs one size"
    )]
    MixedSizes {
        /// Position in the batch.
        index: usize,
        /// Its output size.
        found: (usize, usize),
        /// The first image's output size.
        expected: (usize, usize),
    },
}

/// `CLIPImageProcessor`: RGB images to pixel values `[n, 3, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageProcessor {
    config: ClipImageProcessorConfig,
}

impl Default for ClipImageProcessor {
    /// `CLIPImageProcessor()`: what tencent-ailab's IP-Adapter builds, and the values of
    /// h94/IP-Adapter's image encoder (224, bicubic, OpenAI CLIP mean and std).
    fn default() -> Self {
        Self {
            config: ClipImageProcessorConfig::default(),
        }
    }
}

impl ClipImageProcessor {
    /// A processor with `config`, checked (errors name the field).
    pub fn new(config: ClipImageProcessorConfig) -> Result<Self, ConfigError> {
        config.validate(Path::new("preprocessor config"))?;
        Ok(Self { config })
    }

    /// Reads `preprocessor_config.json` of a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self, ConfigError> {
        Self::from_file(&dir.join("preprocessor_config.json"))
    }

    /// Reads a preprocessor config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Ok(Self {
            config: ClipImageProcessorConfig::from_file(path)?,
        })
    }

    /// The config.
    pub fn config(&self) -> &ClipImageProcessorConfig {
        &self.config
    }

    /// The size (width, height) the resize step gives an image of `width` x `height`.
    pub fn resized_size(&self, width: usize, height: usize) -> (usize, usize) {
        if !self.config.do_resize {
            return (width, height);
        }
        match self.config.size {
            ResizeSize::ShortestEdge(target) => {
                let (short, long) = (width.min(height), width.max(height));
                // Python: int(target * long / short), a float64 quotient truncated.
                let new_long = ((target * long) as f64 / short as f64) as usize;
                if width <= height {
                    (target, new_long)
                } else {
                    (new_long, target)
                }
            }
            ResizeSize::Exact { height, width } => (width, height),
            // Rejected by validation.
            ResizeSize::Other(_) => (width, height),
        }
    }

    /// The 8-bit image after the resize and the centre crop (before rescaling and normalising).
    pub fn resize_and_crop(&self, image: &RgbImage) -> Result<RgbImage, ImageProcessorError> {
        self.resize_and_crop_at(0, image)
    }

    /// Preprocesses a batch: pixel values `[n, 3, height, width]`, row-major f32.
    pub fn preprocess(&self, images: &[RgbImage]) -> Result<HostTensor, ImageProcessorError> {
        let mut data = Vec::new();
        let mut size = None;
        for (index, image) in images.iter().enumerate() {
            let crop = self.resize_and_crop_at(index, image)?;
            let found = (crop.height() as usize, crop.width() as usize);
            match size {
                None => size = Some(found),
                Some(expected) if expected != found => {
                    return Err(ImageProcessorError::MixedSizes {
                        index,
                        found,
                        expected,
                    });
                }
                Some(_) => {}
            }
            self.append_pixel_values(&crop, &mut data);
        }
        let (height, width) = size.ok_or(ImageProcessorError::EmptyBatch)?;
        Ok(HostTensor::new(vec![images.len(), 3, height, width], data))
    }

    fn resize_and_crop_at(
        &self,
        index: usize,
        image: &RgbImage,
    ) -> Result<RgbImage, ImageProcessorError> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        if width == 0 || height == 0 {
            return Err(ImageProcessorError::EmptyImage {
                index,
                width: image.width(),
                height: image.height(),
            });
        }
        let (new_w, new_h) = self.resized_size(width, height);
        let pixels = resize_rgb(
            image.as_raw(),
            (width, height),
            (new_w, new_h),
            self.config.resample,
        )
        .ok_or_else(|| {
            ConfigError::from(faceid_core::config::unsupported(
                Path::new("preprocessor config"),
                "resample",
                self.config.resample.pil_number(),
                "not nearest",
            ))
        })?;
        let pixels = if self.config.do_center_crop {
            let crop = self.config.crop_size;
            center_crop(&pixels, (new_w, new_h), (crop.width, crop.height))
        } else {
            pixels
        };
        let (out_w, out_h) = if self.config.do_center_crop {
            (self.config.crop_size.width, self.config.crop_size.height)
        } else {
            (new_w, new_h)
        };
        Ok(RgbImage::from_raw(out_w as u32, out_h as u32, pixels)
            .expect("the buffer holds exactly out_w x out_h pixels"))
    }

    /// Rescales and normalises an 8-bit image into planar f32 values, appended to `out`.
    fn append_pixel_values(&self, image: &RgbImage, out: &mut Vec<f32>) {
        let c = &self.config;
        let mean = c
            .image_mean
            .channels()
            .unwrap_or([0.0; 3])
            .map(|v| v as f32);
        let std = c.image_std.channels().unwrap_or([1.0; 3]).map(|v| v as f32);
        for channel in 0..3 {
            out.extend(image.as_raw().chunks_exact(3).map(|p| {
                let v = p[channel];
                let x = if c.do_rescale {
                    (v as f64 * c.rescale_factor) as f32
                } else {
                    v as f32
                };
                if c.do_normalize {
                    (x - mean[channel]) / std[channel]
                } else {
                    x
                }
            }));
        }
    }
}

/// transformers' `center_crop`: the window starts at `(size - crop) // 2` (floor), and parts of
/// it outside the image are zero.
fn center_crop(pixels: &[u8], (w, h): (usize, usize), (cw, ch): (usize, usize)) -> Vec<u8> {
    let top = (h as i64 - ch as i64).div_euclid(2);
    let left = (w as i64 - cw as i64).div_euclid(2);
    let mut out = vec![0u8; cw * ch * 3];
    for r in 0..ch {
        let y = r as i64 + top;
        if y < 0 || y >= h as i64 {
            continue;
        }
        for c in 0..cw {
            let x = c as i64 + left;
            if x < 0 || x >= w as i64 {
                continue;
            }
            let src = (y as usize * w + x as usize) * 3;
            let dst = (r * cw + c) * 3;
            out[dst..dst + 3].copy_from_slice(&pixels[src..src + 3]);
        }
    }
    out
}
