//! A request to the endpoint: every field with its default and range, validated in one place.
//! Errors come back as fal (FastAPI) reports them: a list of `{loc, msg, type}` naming each field
//! at fault, so a server can return them as a 422 as they are.

use serde::Serialize;
use serde_json::{Map, Value};

use faceid_pipeline::GenerateRequest;

use crate::model_type::ModelType;
use crate::schema::{FieldKind, field};

/// One invalid input, as FastAPI/fal report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Where: `["body", field]`.
    pub loc: Vec<String>,
    /// What is wrong, for people.
    pub msg: String,
    /// What kind of error, for programs (`missing`, `int_type`, `less_than_equal`, ...).
    #[serde(rename = "type")]
    pub kind: String,
}

/// A validated request to the endpoint, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalRequest {
    /// Which adapter and base model.
    pub model_type: ModelType,
    /// What to draw.
    pub prompt: String,
    /// A face image (http(s) URL or data URI).
    pub face_image_url: Option<String>,
    /// A zip of face images whose embeddings are averaged (URL or data URI).
    pub face_images_data_url: Option<String>,
    /// What to avoid.
    pub negative_prompt: String,
    /// The seed (random when absent).
    pub seed: Option<u64>,
    /// Classifier-free guidance, 0-16.
    pub guidance_scale: f32,
    /// Steps, 1-200.
    pub num_inference_steps: usize,
    /// Images, 1-4.
    pub num_samples: usize,
    /// Width, 512-1024.
    pub width: usize,
    /// Height, 512-1024.
    pub height: usize,
    /// Face detector input size, 64-640.
    pub face_id_det_size: u32,
    /// SD 1.5 base model repo.
    pub base_1_5_model_repo: String,
    /// SDXL base model repo.
    pub base_sdxl_model_repo: String,
}

/// Reads fields one by one so that every problem is reported, not just the first.
struct Reader<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Reader<'_> {
    fn error(&mut self, field: &str, kind: &str, msg: String) {
        self.errors.push(FieldError {
            loc: vec!["body".into(), field.into()],
            msg,
            kind: kind.into(),
        });
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.body.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(
                    field,
                    "string_type",
                    "Input should be a valid string".into(),
                );
                None
            }
        }
    }

    /// A string field, its default when absent.
    fn string_or_default(&mut self, name: &str) -> String {
        let default = match field(name).kind {
            FieldKind::Str(default) => default.unwrap_or_default(),
            other => unreachable!("{name} is a {other:?} field"),
        };
        self.string(name).unwrap_or_else(|| default.into())
    }

    /// An integer field within its range, its default when absent.
    fn integer(&mut self, name: &str) -> i64 {
        let FieldKind::Int { default, min, max } = field(name).kind else {
            unreachable!("{name} is not an integer field")
        };
        self.integer_in(name, default, (min, max))
    }

    /// A number field within its range, its default when absent.
    fn number(&mut self, name: &str) -> f64 {
        let FieldKind::Float { default, min, max } = field(name).kind else {
            unreachable!("{name} is not a number field")
        };
        self.float(name, default, (min, max))
    }

    fn integer_in(&mut self, field: &str, default: i64, range: (i64, i64)) -> i64 {
        let value = match self.body.get(field) {
            None | Some(Value::Null) => return default,
            Some(Value::Number(n)) => match n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            {
                Some(v) => v,
                None => {
                    self.error(field, "int_type", "Input should be a valid integer".into());
                    return default;
                }
            },
            Some(_) => {
                self.error(field, "int_type", "Input should be a valid integer".into());
                return default;
            }
        };
        self.check_range(field, value as f64, (range.0 as f64, range.1 as f64));
        value
    }

    fn float(&mut self, field: &str, default: f64, range: (f64, f64)) -> f64 {
        let value = match self.body.get(field) {
            None | Some(Value::Null) => return default,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(_) => {
                self.error(field, "float_type", "Input should be a valid number".into());
                return default;
            }
        };
        self.check_range(field, value, range);
        value
    }

    fn check_range(&mut self, field: &str, value: f64, (min, max): (f64, f64)) {
        if value < min {
            self.error(
                field,
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
            );
        } else if value > max {
            self.error(
                field,
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
            );
        }
    }
}

impl FalRequest {
    /// Validates a JSON body. Unknown fields are ignored, as fal does.
    pub fn from_json(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(object) = body.as_object() else {
            return Err(vec![FieldError {
                loc: vec!["body".into()],
                msg: "Input should be a valid dictionary".into(),
                kind: "dict_type".into(),
            }]);
        };
        let mut r = Reader {
            body: object,
            errors: Vec::new(),
        };
        let model_type = match r.string("model_type") {
            None => ModelType::Sd15V1,
            Some(name) => name.parse().unwrap_or_else(|msg| {
                r.error("model_type", "enum", msg);
                ModelType::Sd15V1
            }),
        };
        let prompt = r.string("prompt");
        if prompt.is_none() && !r.errors.iter().any(|e| e.loc[1] == "prompt") {
            r.error("prompt", "missing", "Field required".into());
        }
        let face_image_url = r.string("face_image_url");
        let face_images_data_url = r.string("face_images_data_url");
        let negative_prompt = r.string_or_default("negative_prompt");
        let seed = match object.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(seed) => Some(seed),
                None => {
                    r.error(
                        "seed",
                        "int_type",
                        "Input should be a non-negative integer".into(),
                    );
                    None
                }
            },
        };
        let guidance_scale = r.number("guidance_scale") as f32;
        let num_inference_steps = r.integer("num_inference_steps") as usize;
        let num_samples = r.integer("num_samples") as usize;
        let width = r.integer("width") as usize;
        let height = r.integer("height") as usize;
        for (name, side) in [("width", width), ("height", height)] {
            let FieldKind::Int { min, max, .. } = field(name).kind else {
                unreachable!()
            };
            if side % 8 != 0 && (min..=max).contains(&(side as i64)) {
                r.error(
                    name,
                    "multiple_of",
                    "Input should be a multiple of 8".into(),
                );
            }
        }
        let face_id_det_size = r.integer("face_id_det_size") as u32;
        let base_1_5_model_repo = r.string_or_default("base_1_5_model_repo");
        let base_sdxl_model_repo = r.string_or_default("base_sdxl_model_repo");
        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        Ok(Self {
            model_type,
            prompt: prompt.unwrap_or_default(),
            face_image_url,
            face_images_data_url,
            negative_prompt,
            seed,
            guidance_scale,
            num_inference_steps,
            num_samples,
            width,
            height,
            face_id_det_size,
            base_1_5_model_repo,
            base_sdxl_model_repo,
        })
    }

    /// The pipeline request for this input, with `seed` (the request's, or one drawn by the
    /// caller) and the face conditioning computed from the face images.
    pub fn to_generate_request(
        &self,
        seed: u64,
        face: Option<faceid_pipeline::FaceConditioning>,
    ) -> GenerateRequest {
        GenerateRequest {
            prompt: self.prompt.clone(),
            negative_prompt: Some(self.negative_prompt.clone()),
            num_samples: self.num_samples,
            width: self.width,
            height: self.height,
            steps: self.num_inference_steps,
            guidance_scale: self.guidance_scale,
            seed,
            scheduler: Some(faceid_pipeline::SchedulerKind::Ddim),
            eta: 0.0,
            latents: None,
            face,
            size_conditioning: None,
        }
    }
}
