//! The endpoint's input fields with their types, defaults and ranges: the one table both the
//! validation (`FalRequest::from_json`) and the published JSON Schema read.

use serde_json::{Map, Value, json};

/// The type, default and range of a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    /// A string, with its default if any.
    Str(Option<&'static str>),
    /// One of fixed strings, with the default.
    Enum(&'static [&'static str], &'static str),
    /// An integer within `min..=max`, with its default.
    Int {
        /// The default.
        default: i64,
        /// The smallest value accepted.
        min: i64,
        /// The largest value accepted.
        max: i64,
    },
    /// A non-negative integer without default (the seed).
    Seed,
    /// A number within `min..=max`, with its default.
    Float {
        /// The default.
        default: f64,
        /// The smallest value accepted.
        min: f64,
        /// The largest value accepted.
        max: f64,
    },
}

/// One input field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    /// Its name in the JSON body.
    pub name: &'static str,
    /// Its type, default and range.
    pub kind: FieldKind,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub description: &'static str,
}

/// fal's default negative prompt.
pub const DEFAULT_NEGATIVE_PROMPT: &str = "blurry, low resolution, bad, ugly, low quality, pixelated, interpolated, compression artifacts, noisey, grainy";
/// fal's default SD 1.5 base model.
pub const DEFAULT_BASE_1_5_REPO: &str = "SG161222/Realistic_Vision_V4.0_noVAE";
/// fal's default SDXL base model.
pub const DEFAULT_BASE_SDXL_REPO: &str = "SG161222/RealVisXL_V3.0";

/// The model types, in the schema's order.
pub const MODEL_TYPES: [&str; 6] = [
    "1_5-v1",
    "1_5-v1-plus",
    "1_5-v2-plus",
    "SDXL-v1",
    "SDXL-v2-plus",
    "1_5-auraface-v1",
];

/// Every input field of `fal-ai/ip-adapter-face-id`, in the schema's order.
pub const FIELDS: [Field; 14] = [
    Field {
        name: "model_type",
        kind: FieldKind::Enum(&MODEL_TYPES, "1_5-v1"),
        required: false,
        description: "The model type to use. 1_5 is the default and is recommended for most use cases.",
    },
    Field {
        name: "prompt",
        kind: FieldKind::Str(None),
        required: true,
        description: "The prompt to use for generating the image.",
    },
    Field {
        name: "face_image_url",
        kind: FieldKind::Str(None),
        required: false,
        description: "An image of a face to match (http(s) URL or data URI).",
    },
    Field {
        name: "face_images_data_url",
        kind: FieldKind::Str(None),
        required: false,
        description: "A zip archive of face images whose embeddings are averaged (URL or data URI).",
    },
    Field {
        name: "negative_prompt",
        kind: FieldKind::Str(Some(DEFAULT_NEGATIVE_PROMPT)),
        required: false,
        description: "What to avoid in the image.",
    },
    Field {
        name: "seed",
        kind: FieldKind::Seed,
        required: false,
        description: "The same seed and prompt on the same model give the same image; random when absent.",
    },
    Field {
        name: "guidance_scale",
        kind: FieldKind::Float {
            default: 7.5,
            min: 0.0,
            max: 16.0,
        },
        required: false,
        description: "Classifier-free guidance scale: how closely the image follows the prompt.",
    },
    Field {
        name: "num_inference_steps",
        kind: FieldKind::Int {
            default: 50,
            min: 1,
            max: 200,
        },
        required: false,
        description: "Denoising steps.",
    },
    Field {
        name: "num_samples",
        kind: FieldKind::Int {
            default: 4,
            min: 1,
            max: 4,
        },
        required: false,
        description: "Images to generate.",
    },
    Field {
        name: "width",
        kind: FieldKind::Int {
            default: 512,
            min: 512,
            max: 1024,
        },
        required: false,
        description: "Width of the generated image (a multiple of 8).",
    },
    Field {
        name: "height",
        kind: FieldKind::Int {
            default: 512,
            min: 512,
            max: 1024,
        },
        required: false,
        description: "Height of the generated image (a multiple of 8).",
    },
    Field {
        name: "face_id_det_size",
        kind: FieldKind::Int {
            default: 640,
            min: 64,
            max: 640,
        },
        required: false,
        description: "Face detector input size; lower it when no face is found.",
    },
    Field {
        name: "base_1_5_model_repo",
        kind: FieldKind::Str(Some(DEFAULT_BASE_1_5_REPO)),
        required: false,
        description: "The base SD 1.5 model repository.",
    },
    Field {
        name: "base_sdxl_model_repo",
        kind: FieldKind::Str(Some(DEFAULT_BASE_SDXL_REPO)),
        required: false,
        description: "The base SDXL model repository.",
    },
];

/// The field named `name` (a name from [`FIELDS`]).
pub fn field(name: &str) -> &'static Field {
    FIELDS
        .iter()
        .find(|f| f.name == name)
        .expect("a field of the table")
}

/// The JSON Schema of the input, from [`FIELDS`].
pub fn input_schema() -> Value {
    let mut properties = Map::new();
    for f in &FIELDS {
        let mut p = match f.kind {
            FieldKind::Str(default) => json!({"type": "string", "default": default}),
            FieldKind::Enum(options, default) => {
                json!({"type": "string", "enum": options, "default": default})
            }
            FieldKind::Int { default, min, max } => {
                json!({"type": "integer", "default": default, "minimum": min, "maximum": max})
            }
            FieldKind::Seed => json!({"type": "integer", "minimum": 0}),
            FieldKind::Float { default, min, max } => {
                json!({"type": "number", "default": default, "minimum": min, "maximum": max})
            }
        };
        if p["default"].is_null() {
            p.as_object_mut().expect("an object").remove("default");
        }
        p["title"] = json!(f.name);
        p["description"] = json!(f.description);
        properties.insert(f.name.into(), p);
    }
    let required: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({"type": "object", "title": "Input", "properties": properties, "required": required})
}

/// The JSON Schema of the output.
pub fn output_schema() -> Value {
    let image = json!({
        "type": "object",
        "title": "Image",
        "properties": {
            "url": {"type": "string", "description": "Where the PNG is served, or a data URI with sync_mode."},
            "content_type": {"type": "string"},
            "file_name": {"type": "string"},
            "file_size": {"type": "integer"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
        },
        "required": ["url", "content_type", "file_name", "file_size", "width", "height"],
    });
    json!({
        "type": "object",
        "title": "Output",
        "properties": {
            "image": {"description": "Every sample in one grid.", "allOf": [image.clone()]},
            "images": {"type": "array", "items": image, "description": "Each sample on its own."},
            "seed": {"type": "integer", "description": "The seed used."},
        },
        "required": ["image", "seed"],
    })
}
