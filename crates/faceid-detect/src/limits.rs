//! Bounds on decoding an untrusted image (decompression bombs): width, height and pixel count
//! read from the header and checked before any pixel is decoded, and the memory decoding needs
//! checked against an allocation budget that the decoder itself is also held to.

use std::fmt;
use std::path::PathBuf;

use image::ColorType;
use image::metadata::Orientation;

const MIB: u64 = 1 << 20;

/// Bounds on what an image may cost to decode.
///
/// The defaults admit every photo a phone or camera of up to 50 megapixels writes (8160x6120,
/// 8K video frames at 7680x4320) while keeping one decode within half a gigabyte: nothing
/// downstream needs more, since insightface detects on a 640x640 letterbox, fal scales face
/// images to 640x640 and base images to at most 1024 pixels a side.
///
/// | limit | default | why |
/// |---|---|---|
/// | `max_width`, `max_height` | 8192 | the largest side of 50 MP sensors (8160) and 8K frames |
/// | `max_pixels` | 8192 x 6144 (50.3 MP) | 151 MiB as RGB; a 4:3 image at the largest side |
/// | `max_alloc` | 512 MiB | the decoded image, its RGB copy and a rotated copy, with room left |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted number of pixels (`width * height`).
    pub max_pixels: u64,
    /// Most memory decoding may allocate, in bytes: the decoder's own buffers plus the decoded
    /// image, its RGB conversion and its EXIF rotation.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 8192 * 6144,
            max_alloc: 512 * MIB,
        }
    }
}

/// Which limit an image is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLimit {
    /// [`ImageLimits::max_width`].
    Width {
        /// The limit in pixels.
        max: u32,
    },
    /// [`ImageLimits::max_height`].
    Height {
        /// The limit in pixels.
        max: u32,
    },
    /// [`ImageLimits::max_pixels`].
    Pixels {
        /// The limit in pixels.
        max: u64,
    },
    /// [`ImageLimits::max_alloc`].
    Memory {
        /// Bytes decoding would need.
        needed: u64,
        /// The limit in bytes.
        max: u64,
    },
}

impl fmt::Display for ImageLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImageLimit::Width { max } => write!(f, "the width limit of {max} pixels"),
            ImageLimit::Height { max } => write!(f, "the height limit of {max} pixels"),
            ImageLimit::Pixels { max } => write!(
                f,
                "the limit of {max} pixels ({:.1} megapixels)",
                max as f64 / 1e6
            ),
            ImageLimit::Memory { needed, max } => write!(
                f,
                "the decoding memory limit ({} MiB needed, {} MiB allowed)",
                needed.div_ceil(MIB),
                max / MIB
            ),
        }
    }
}

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The image could not be decoded (corrupt, truncated or unsupported).
    #[error("cannot decode image {image}: {message}")]
    Decode {
        /// Image name (file name or archive entry).
        image: String,
        /// What the decoder said.
        message: String,
    },
    /// The image has no pixels.
    #[error("image {image} is empty ({width}x{height})")]
    EmptyImage {
        /// Image name.
        image: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The image header declares a size over one of the [`ImageLimits`]; nothing was decoded.
    #[error(
        "image {image} is {width}x{height}, over {limit}; scale it down (faces are detected at \
         640x640) and send it again"
    )]
    TooLarge {
        /// Image name.
        image: String,
        /// Width in pixels, as the header declares it.
        width: u32,
        /// Height in pixels, as the header declares it.
        height: u32,
        /// The limit it is over.
        limit: ImageLimit,
    },
}

impl ImageLimits {
    /// Checks a declared size against the dimension and pixel limits.
    pub fn check_size(&self, image: &str, width: u32, height: u32) -> Result<(), ImageError> {
        let limit = if width > self.max_width {
            ImageLimit::Width {
                max: self.max_width,
            }
        } else if height > self.max_height {
            ImageLimit::Height {
                max: self.max_height,
            }
        } else if u64::from(width) * u64::from(height) > self.max_pixels {
            ImageLimit::Pixels {
                max: self.max_pixels,
            }
        } else {
            return Ok(());
        };
        Err(too_large(image, width, height, limit))
    }

    /// Checks the bytes decoding needs against [`ImageLimits::max_alloc`]; returns what is left
    /// of the budget for the decoder's own buffers.
    pub(crate) fn check_memory(
        &self,
        image: &str,
        (width, height): (u32, u32),
        needed: u64,
    ) -> Result<u64, ImageError> {
        if needed > self.max_alloc {
            return Err(too_large(
                image,
                width,
                height,
                ImageLimit::Memory {
                    needed,
                    max: self.max_alloc,
                },
            ));
        }
        Ok(self.max_alloc - needed)
    }
}

fn too_large(image: &str, width: u32, height: u32, limit: ImageLimit) -> ImageError {
    ImageError::TooLarge {
        image: image.to_string(),
        width,
        height,
        limit,
    }
}

/// Peak bytes of decoding into RGB: the decoder's output in its own colour type (`native`
/// bytes) next to its RGB conversion, then the RGB image next to its rotation when the EXIF
/// orientation turns it by a quarter.
pub(crate) fn decode_bytes(
    native: u64,
    color: ColorType,
    (width, height): (u32, u32),
    orientation: Orientation,
) -> u64 {
    let rgb = 3 * u64::from(width) * u64::from(height);
    let conversion = if color == ColorType::Rgb8 { 0 } else { rgb };
    let quarter_turn = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let rotation = if quarter_turn { rgb } else { 0 };
    (native + conversion).max(rgb + rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_in_order_and_named() {
        let limits = ImageLimits::default();
        assert!(limits.check_size("a", 8192, 6144).is_ok());
        assert!(limits.check_size("a", 6144, 8192).is_ok());
        let limit_of = |w, h| match limits.check_size("a", w, h) {
            Err(ImageError::TooLarge { limit, .. }) => limit,
            other => panic!("{w}x{h}: {other:?}"),
        };
        assert_eq!(limit_of(8193, 10), ImageLimit::Width { max: 8192 });
        assert_eq!(limit_of(10, 20_000), ImageLimit::Height { max: 8192 });
        assert_eq!(
            limit_of(8192, 8192),
            ImageLimit::Pixels { max: 8192 * 6144 }
        );
    }

    #[test]
    fn decode_bytes_counts_conversion_and_rotation() {
        let (w, h) = (100, 50);
        let rgb = 3 * 100 * 50;
        let none = Orientation::NoTransforms;
        assert_eq!(decode_bytes(rgb, ColorType::Rgb8, (w, h), none), rgb);
        assert_eq!(decode_bytes(5000, ColorType::L8, (w, h), none), 5000 + rgb);
        assert_eq!(
            decode_bytes(rgb, ColorType::Rgb8, (w, h), Orientation::Rotate90),
            2 * rgb
        );
        assert_eq!(
            decode_bytes(
                8 * 5000,
                ColorType::Rgba16,
                (w, h),
                Orientation::FlipHorizontal
            ),
            8 * 5000 + rgb
        );
    }
}
