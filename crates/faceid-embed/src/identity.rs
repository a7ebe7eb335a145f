//! The identity IP-Adapter FaceID draws from one or more photos: the average of insightface's
//! `normed_embedding`s, and per face what later stages need of it (the keypoints that gave the
//! embedding and, for the Plus models' CLIP image encoder, `norm_crop(image, kps, 224)`).

use faceid_detect::Face;
use image::RgbImage;

use crate::align::template;
use crate::average::{AverageMode, average_embeddings};
use crate::error::EmbedError;

/// Largest aligned crop an identity keeps (image encoders take 224; 1024 leaves room for any).
pub const MAX_CROP_SIZE: u32 = 1024;

/// One face of an identity.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityFace {
    /// The image it was found in (file name or archive entry).
    pub image: String,
    /// The detection: box, score and the keypoints the embedding and the crop were aligned to.
    pub face: Face,
    /// The L2-normalised embedding (insightface's `normed_embedding`).
    pub embedding: Vec<f32>,
    /// Length of the raw embedding before normalisation.
    pub norm: f32,
    /// The face aligned at the requested crop size, RGB (`norm_crop(image, kps, crop_size)`);
    /// `None` when no crop was asked for.
    pub crop: Option<RgbImage>,
}

/// The identity of one person from one or more photos.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The faces' embeddings combined (with [`AverageMode::NormalizedMean`], a unit vector).
    pub embedding: Vec<f32>,
    /// The faces that contributed, one per image, in order.
    pub faces: Vec<IdentityFace>,
    /// Images skipped because no face was found in them, in order.
    pub skipped: Vec<String>,
}

impl Identity {
    /// Combines the faces' embeddings. Fails with [`EmbedError::NoFaceInAny`] (naming the
    /// skipped images) when there is no face, and with [`EmbedError::ModelOutput`] when the
    /// embeddings differ in length.
    pub fn from_faces(
        faces: Vec<IdentityFace>,
        skipped: Vec<String>,
        mode: AverageMode,
    ) -> Result<Self, EmbedError> {
        if faces.is_empty() {
            return Err(EmbedError::NoFaceInAny { images: skipped });
        }
        let embeddings: Vec<Vec<f32>> = faces.iter().map(|f| f.embedding.clone()).collect();
        let embedding = average_embeddings(&embeddings, mode).ok_or_else(|| {
            let lengths: Vec<usize> = embeddings.iter().map(Vec::len).collect();
            EmbedError::ModelOutput(format!("embeddings of different lengths {lengths:?}"))
        })?;
        Ok(Self {
            embedding,
            faces,
            skipped,
        })
    }

    /// The images that contributed a face, in order.
    pub fn used(&self) -> Vec<String> {
        self.faces.iter().map(|f| f.image.clone()).collect()
    }

    /// The aligned crops, in the order of [`Identity::faces`] (empty when none was asked for).
    pub fn crops(&self) -> impl Iterator<Item = &RgbImage> {
        self.faces.iter().filter_map(|f| f.crop.as_ref())
    }
}

/// Checks that `size` is a crop size `norm_crop` accepts (a multiple of 112 or 128) and at most
/// [`MAX_CROP_SIZE`].
pub fn check_crop_size(size: u32) -> Result<(), EmbedError> {
    if size > MAX_CROP_SIZE {
        return Err(EmbedError::InvalidOption(format!(
            "crop size {size} is over the largest allowed, {MAX_CROP_SIZE}"
        )));
    }
    template(size).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(image: &str, embedding: Vec<f32>) -> IdentityFace {
        IdentityFace {
            image: image.into(),
            face: Face {
                bbox: [0.0; 4],
                kps: [[0.0; 2]; 5],
                score: 1.0,
            },
            embedding,
            norm: 1.0,
            crop: None,
        }
    }

    #[test]
    fn identity_averages_and_names_what_it_skipped() {
        let faces = vec![face("a", vec![1.0, 0.0]), face("b", vec![0.0, 1.0])];
        let id = Identity::from_faces(faces, vec!["c".into()], AverageMode::Mean).unwrap();
        assert_eq!(id.embedding, [0.5, 0.5]);
        assert_eq!(id.used(), ["a", "b"]);
        assert_eq!(id.skipped, ["c"]);
        assert_eq!(id.crops().count(), 0);
        match Identity::from_faces(Vec::new(), vec!["x".into()], AverageMode::Mean) {
            Err(EmbedError::NoFaceInAny { images }) => assert_eq!(images, ["x"]),
            other => panic!("{other:?}"),
        }
        let uneven = vec![face("a", vec![1.0]), face("b", vec![0.0, 1.0])];
        assert!(matches!(
            Identity::from_faces(uneven, Vec::new(), AverageMode::Mean),
            Err(EmbedError::ModelOutput(_))
        ));
    }

    #[test]
    fn crop_sizes_are_checked() {
        assert!(check_crop_size(224).is_ok());
        assert!(check_crop_size(256).is_ok());
        assert!(check_crop_size(200).is_err());
        assert!(check_crop_size(0).is_err());
        assert!(check_crop_size(112 * 10).is_err());
    }
}
