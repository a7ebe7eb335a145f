//! Reading images as insightface's callers do (`cv2.imread`, then BGR to RGB): any format the
//! `image` crate decodes, EXIF orientation applied, grey and alpha images turned into RGB, and
//! the cost of decoding bounded by [`ImageLimits`] before any pixel is decoded.

use std::io::Cursor;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::limits::{ImageError, ImageLimits, decode_bytes};

/// A decoded RGB image with the name used in messages.
#[derive(Clone, Debug)]
pub struct FaceImage {
    name: String,
    pixels: RgbImage,
}

impl FaceImage {
    /// Wraps RGB pixels.
    pub fn from_rgb(name: impl Into<String>, pixels: RgbImage) -> Result<Self, ImageError> {
        let name = name.into();
        if pixels.width() == 0 || pixels.height() == 0 {
            return Err(ImageError::EmptyImage {
                image: name,
                width: pixels.width(),
                height: pixels.height(),
            });
        }
        Ok(Self { name, pixels })
    }

    /// Reads and decodes an image file.
    pub fn open(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<Self, ImageError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path.display().to_string(), &bytes, limits)
    }

    /// The size an encoded image declares, read from its header alone and checked against the
    /// dimension and pixel limits; nothing is decoded.
    pub fn probe(name: &str, bytes: &[u8], limits: &ImageLimits) -> Result<(u32, u32), ImageError> {
        let (decoder, size) = header(name, bytes, limits)?;
        drop(decoder);
        Ok(size)
    }

    /// Decodes an encoded image (format guessed from the content).
    ///
    /// The header is read first: an image over [`ImageLimits::max_width`],
    /// [`ImageLimits::max_height`] or [`ImageLimits::max_pixels`] fails with
    /// [`ImageError::TooLarge`] before anything is decoded, and so does one whose decoding
    /// (decoded image, RGB conversion, EXIF rotation) would need more than
    /// [`ImageLimits::max_alloc`]; what is left of that budget bounds the decoder's own buffers.
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: &[u8],
        limits: &ImageLimits,
    ) -> Result<Self, ImageError> {
        let name = name.into();
        let (mut decoder, size) = header(&name, bytes, limits)?;
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        let needed = decode_bytes(
            decoder.total_bytes(),
            decoder.color_type(),
            size,
            orientation,
        );
        let left = limits.check_memory(&name, size, needed)?;
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_image_width = Some(limits.max_width);
        decoder_limits.max_image_height = Some(limits.max_height);
        decoder_limits.max_alloc = Some(left);
        decoder
            .set_limits(decoder_limits)
            .map_err(|e| decode_error(&name, &e))?;
        let decoded = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(&name, &e))?;
        // Converted first, so the decoder's buffer is freed before a rotation copies the image.
        let mut rgb = DynamicImage::ImageRgb8(decoded.into_rgb8());
        rgb.apply_orientation(orientation);
        Self::from_rgb(name, rgb.into_rgb8())
    }

    /// The name used in messages (file name or archive entry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RGB pixels, orientation applied.
    pub fn rgb(&self) -> &RgbImage {
        &self.pixels
    }

    /// Takes the RGB pixels.
    pub fn into_rgb(self) -> RgbImage {
        self.pixels
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

fn decode_error(name: &str, e: &dyn std::fmt::Display) -> ImageError {
    ImageError::Decode {
        image: name.to_string(),
        message: e.to_string(),
    }
}

/// A decoder positioned after the header, and the size it declares, checked against the
/// dimension and pixel limits. Only the allocation limit is given to the decoder here, so that
/// an oversized image is reported with its size rather than as a bare decoder error.
fn header<'a>(
    name: &str,
    bytes: &'a [u8],
    limits: &ImageLimits,
) -> Result<(impl ImageDecoder + 'a, (u32, u32)), ImageError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_error(name, &e))?;
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(header_limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(name, &e))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::EmptyImage {
            image: name.to_string(),
            width,
            height,
        });
    }
    limits.check_size(name, width, height)?;
    Ok((decoder, (width, height)))
}
