//! Port of transformers' `CLIPTokenizer` (models/clip/tokenization_clip.py, tokenizers backend).
//!
//! Reads `tokenizer.json` when the folder has one; otherwise builds the same tokenizer from
//! `vocab.json` + `merges.txt`: NFC, whitespace runs to one space, lowercase; CLIP's word split;
//! byte-level BPE with the `</w>` end-of-word suffix. Encoding gives exactly `max_length` ids:
//! `<|startoftext|>`, at most `max_length - 2` tokens, `<|endoftext|>`, then the pad id, as
//! `tokenizer(text, padding="max_length", truncation=True)` does.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::Tokenizer;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// CLIP's pre-tokenizer split, as in the reference tokenizer.
const WORD_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// Sequence length of every Stable Diffusion text encoder, used when the config gives none.
const DEFAULT_MAX_LENGTH: usize = 77;

/// A tokenizer folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file has unexpected content.
    #[error("invalid tokenizer file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The folder has neither `tokenizer.json` nor `vocab.json` + `merges.txt`.
    #[error("{0} holds no tokenizer: expected tokenizer.json, or vocab.json and merges.txt")]
    NotFound(PathBuf),
    /// The text could not be encoded.
    #[error("cannot tokenize the prompt: {0}")]
    Encode(String),
}

/// The CLIP tokenizer of a Stable Diffusion model.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
}

impl ClipTokenizer {
    /// Loads a tokenizer folder (`tokenizer/` of a diffusers pipeline).
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let settings = Settings::read(dir)?;
        let json_path = dir.join("tokenizer.json");
        let inner = if json_path.is_file() {
            Tokenizer::from_file(&json_path).map_err(|e| TokenizerError::Invalid {
                path: json_path.clone(),
                reason: e.to_string(),
            })?
        } else {
            let vocab = dir.join("vocab.json");
            let merges = dir.join("merges.txt");
            if !vocab.is_file() || !merges.is_file() {
                return Err(TokenizerError::NotFound(dir.to_owned()));
            }
            Self::build(&vocab, &merges, &settings.pad)?
        };
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::Invalid {
                    path: dir.to_owned(),
                    reason: format!("the vocabulary has no token `{token}`"),
                })
        };
        Ok(Self {
            bos: id(BOS)?,
            eos: id(EOS)?,
            pad: id(&settings.pad)?,
            max_length: settings.max_length,
            inner,
        })
    }

    /// Builds the tokenizer from `vocab.json` and `merges.txt` (the layout SD 1.x repos ship).
    fn build(vocab: &Path, merges: &Path, pad: &str) -> Result<Tokenizer, TokenizerError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let vocab_map: Value =
            serde_json::from_str(&read(vocab)?).map_err(|e| TokenizerError::Invalid {
                path: vocab.to_owned(),
                reason: e.to_string(),
            })?;
        let merge_text = read(merges)?;
        let merge_list: Vec<Value> = merge_text
            .lines()
            .filter(|line| !line.starts_with("#version") && !line.trim().is_empty())
            .map(|line| {
                let mut parts = line.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok(json!([a, b])),
                    _ => Err(TokenizerError::Invalid {
                        path: merges.to_owned(),
                        reason: format!("merge line `{line}` is not two tokens"),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        let special = |content: &str, id: &Value| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let mut added = Vec::new();
        for token in [pad, BOS, EOS] {
            let id = vocab_map
                .get(token)
                .ok_or_else(|| TokenizerError::Invalid {
                    path: vocab.to_owned(),
                    reason: format!("the vocabulary has no token `{token}`"),
                })?;
            if !added.iter().any(|t: &Value| t["content"] == token) {
                added.push(special(token, id));
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}
            ]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": WORD_SPLIT}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
                "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab_map, "merges": merge_list
            }
        });
        spec.to_string()
            .parse::<Tokenizer>()
            .map_err(|e| TokenizerError::Invalid {
                path: vocab.to_owned(),
                reason: e.to_string(),
            })
    }

    /// The ids of `text`: exactly [`Self::max_length`] of them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let body = encoding.get_ids();
        let keep = body.len().min(self.max_length - 2);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Ok(ids)
    }

    /// How many tokens of `text` are cut off by truncation (0 when it fits).
    pub fn truncated_tokens(&self, text: &str) -> Result<usize, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().len().saturating_sub(self.max_length - 2))
    }

    /// The number of ids [`Self::encode`] returns.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }
}

/// What `tokenizer_config.json` / `special_tokens_map.json` say about padding and length.
struct Settings {
    pad: String,
    max_length: usize,
}

impl Settings {
    fn read(dir: &Path) -> Result<Self, TokenizerError> {
        let mut pad = None;
        let mut max_length = None;
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| TokenizerError::Io {
                path: path.clone(),
                source,
            })?;
            let value: Value =
                serde_json::from_str(&text).map_err(|e| TokenizerError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if pad.is_none() {
                pad = match &value["pad_token"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
                    _ => None,
                };
            }
            if max_length.is_none() {
                // transformers writes a huge sentinel when the length is unset.
                max_length = value["model_max_length"]
                    .as_f64()
                    .filter(|&n| (3.0..=1e6).contains(&n))
                    .map(|n| n as usize);
            }
        }
        Ok(Self {
            pad: pad.unwrap_or_else(|| EOS.to_owned()),
            max_length: max_length.unwrap_or(DEFAULT_MAX_LENGTH),
        })
    }
}
