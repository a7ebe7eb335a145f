//! `faceid detect` and `faceid embed`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use faceid_core::{DeviceKind, Precision};
use faceid_face::{
    DetectOptions, DetectorModel, FaceAnalyzer, FaceChoice, FaceImage, ImageLimits,
    RecognizerModel, ZipLimits, for_each_zip_image,
};
use faceid_pipeline::{ClipImageEncoder, FaceCrop, FaceEncoder};

use crate::CliError;

#[derive(Args)]
pub struct DetectArgs {
    /// The image.
    image: PathBuf,
    /// Detector input size (64-640; lower it when no face is found).
    #[arg(long, default_value_t = faceid_face::DEFAULT_DET_SIZE)]
    det_size: u32,
    /// `retinaface` (built in) or an SCRFD / RetinaFace ONNX file (e.g. buffalo_l's det_10g.onnx).
    #[arg(long, default_value = "retinaface")]
    detector: DetectorModel,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write a copy of the image with the detections drawn.
    #[arg(long)]
    draw: Option<PathBuf>,
    /// flex (CPU), wgpu or cuda.
    #[arg(long, default_value = "flex")]
    device: DeviceKind,
}

pub fn detect(args: DetectArgs) -> Result<(), CliError> {
    let device = args.device.device()?;
    let analyzer = FaceAnalyzer::new(args.detector, None, &device)?;
    let image = FaceImage::open(&args.image, &ImageLimits::default())?;
    let options = DetectOptions {
        det_size: args.det_size,
        ..DetectOptions::default()
    };
    let faces = analyzer.detect(&image, &options)?;
    if args.json {
        let list: Vec<_> = faces
            .iter()
            .map(|f| serde_json::json!({"bbox": f.bbox, "score": f.score, "kps": f.kps}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"image": image.name(), "faces": list})
            )?
        );
    } else {
        println!("{}: {} face(s)", image.name(), faces.len());
        for (i, f) in faces.iter().enumerate() {
            let [x1, y1, x2, y2] = f.bbox;
            println!(
                "  #{i} score {:.4} box ({x1:.1}, {y1:.1})-({x2:.1}, {y2:.1}) keypoints {:?}",
                f.score, f.kps
            );
        }
    }
    if let Some(path) = args.draw {
        let mut canvas = image.rgb().clone();
        crate::draw::faces(&mut canvas, &faces);
        canvas.save(&path)?;
    }
    Ok(())
}

#[derive(Args)]
pub struct EmbedArgs {
    /// Face images (their normalised embeddings are averaged).
    images: Vec<PathBuf>,
    /// A zip archive of face images, added to the images (decoded one at a time).
    #[arg(long)]
    zip: Option<PathBuf>,
    /// The ArcFace ONNX model (insightface buffalo_l's w600k_r50.onnx, or AuraFace's glintr100.onnx).
    #[arg(long, env = "FACEID_RECOGNIZER")]
    recognizer: PathBuf,
    /// `retinaface` (built in) or an SCRFD / RetinaFace ONNX file.
    #[arg(long, default_value = "retinaface")]
    detector: DetectorModel,
    /// Detector input size (64-640).
    #[arg(long, default_value_t = faceid_face::DEFAULT_DET_SIZE)]
    det_size: u32,
    /// Which face when an image has several.
    #[arg(long, value_parser = ["highest-score", "largest"], default_value = "highest-score")]
    face: String,
    /// A CLIP image encoder folder (h94/IP-Adapter models/image_encoder): also write the
    /// faces' CLIP features (the mean of their aligned crops' penultimate hidden states), which
    /// the FaceID Plus model types read. The output must then be .safetensors.
    #[arg(long, env = "FACEID_IMAGE_ENCODER")]
    image_encoder: Option<PathBuf>,
    /// With --image-encoder: hand it the face crop in its true colours instead of the
    /// reference's red/blue-exchanged crop (see `generate --face-crop-rgb`).
    #[arg(long, requires = "image_encoder")]
    face_crop_rgb: bool,
    /// flex (CPU), wgpu or cuda.
    #[arg(long, default_value = "flex")]
    device: DeviceKind,
    /// Output: .safetensors (identity, and CLIP features with --image-encoder) or .npy
    /// (identity only), identity shape [1, 512].
    #[arg(short, long)]
    output: PathBuf,
}

pub fn embed(args: EmbedArgs) -> Result<(), CliError> {
    if args.images.is_empty() && args.zip.is_none() {
        return Err("no images: give image paths and/or --zip".into());
    }
    let device = args.device.device()?;
    let analyzer = FaceAnalyzer::new(
        args.detector,
        Some(RecognizerModel::File(args.recognizer)),
        &device,
    )?;
    let image_encoder = args
        .image_encoder
        .as_deref()
        .map(|dir| {
            ClipImageEncoder::from_dir_in(dir, &device, Precision::preferred_for(args.device))
        })
        .transpose()?
        .map(Arc::new);
    let crop = if args.face_crop_rgb {
        FaceCrop::Rgb
    } else {
        FaceCrop::ReferenceBgr
    };
    let encoder = FaceEncoder::new(analyzer, image_encoder, crop);
    let choice = if args.face == "largest" {
        FaceChoice::Largest
    } else {
        FaceChoice::HighestScore
    };
    let options = DetectOptions {
        det_size: args.det_size,
        choice,
        ..DetectOptions::default()
    };
    let limits = ImageLimits::default();
    let mut builder = encoder.identity_builder(&options)?;
    for path in &args.images {
        builder.add(&FaceImage::open(path, &limits)?)?;
    }
    if let Some(zip) = &args.zip {
        let bytes = std::fs::read(zip)?;
        for_each_zip_image(
            &zip.display().to_string(),
            &bytes,
            &ZipLimits::default(),
            &limits,
            |image| builder.add(&image),
        )?;
    }
    let identity = builder.finish()?;
    let face = encoder.encode(&identity)?;
    face.write(&args.output)?;
    eprintln!(
        "{} of {} image(s) written to {}{}",
        if face.clip_embeds.is_some() {
            "identity and CLIP features"
        } else {
            "identity"
        },
        identity.faces.len(),
        args.output.display(),
        if identity.skipped.is_empty() {
            String::new()
        } else {
            format!(" (no face in: {})", identity.skipped.join(", "))
        }
    );
    Ok(())
}
