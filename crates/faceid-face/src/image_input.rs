//! Reading images: any format the `image` crate decodes, EXIF orientation applied, grey and alpha
//! images turned into RGB, decoder memory bounded.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::FaceError;

/// Bounds on what an image may cost to decode (protection against decompression bombs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest memory the decoder may allocate, in bytes.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 20_000,
            max_height: 20_000,
            max_alloc: 512 << 20,
        }
    }
}

/// A decoded RGB image with the name used in messages.
#[derive(Clone, Debug)]
pub struct FaceImage {
    name: String,
    pixels: RgbImage,
}

impl FaceImage {
    /// Wraps RGB pixels.
    pub fn from_rgb(name: impl Into<String>, pixels: RgbImage) -> Result<Self, FaceError> {
        let name = name.into();
        if pixels.width() == 0 || pixels.height() == 0 {
            return Err(FaceError::EmptyImage {
                image: name,
                width: pixels.width(),
                height: pixels.height(),
            });
        }
        Ok(Self { name, pixels })
    }

    /// Reads and decodes an image file.
    pub fn open(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<Self, FaceError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FaceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path.display().to_string(), &bytes, limits)
    }

    /// Decodes an encoded image (format guessed from the content).
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: &[u8],
        limits: &ImageLimits,
    ) -> Result<Self, FaceError> {
        let name = name.into();
        let decode_error = |e: &dyn std::fmt::Display| FaceError::Decode {
            image: name.clone(),
            message: e.to_string(),
        };
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_error(&e))?;
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_image_width = Some(limits.max_width);
        decoder_limits.max_image_height = Some(limits.max_height);
        decoder_limits.max_alloc = Some(limits.max_alloc);
        reader.limits(decoder_limits);
        let mut decoder = reader.into_decoder().map_err(|e| decode_error(&e))?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let (width, height) = decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(FaceError::EmptyImage {
                image: name,
                width,
                height,
            });
        }
        let mut decoded = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(&e))?;
        decoded.apply_orientation(orientation);
        Self::from_rgb(name, decoded.to_rgb8())
    }

    /// The name used in messages (file name or archive entry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RGB pixels, orientation applied.
    pub fn rgb(&self) -> &RgbImage {
        &self.pixels
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.pixels.width()
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.pixels.height()
    }
}
