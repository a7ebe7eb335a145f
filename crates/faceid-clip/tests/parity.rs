//! The tokenizer and text encoder against transformers' output on the fixtures in `tests/data/sd`.

use std::path::PathBuf;

use faceid_clip::{ClipTextModel, ClipTokenizer};
use faceid_core::Device;
use faceid_core::testing::{max_abs_diff, read_reference};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/sd")
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    prompt: String,
    pad: String,
    input_ids: Vec<u32>,
}

#[test]
fn tokenizer_matches_transformers_on_tricky_prompts() {
    let cases: Cases = serde_json::from_str(
        &std::fs::read_to_string(data().join("tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    // tiny-a pads with <|endoftext|> and ships vocab.json + merges.txt (SD 1.x layout);
    // tiny-b pads with "!" and ships tokenizer.json (SD 2.x layout).
    let by_vocab = ClipTokenizer::from_dir(&data().join("tiny-a/tokenizer")).unwrap();
    let by_json = ClipTokenizer::from_dir(&data().join("tiny-b/tokenizer")).unwrap();
    assert!(cases.cases.len() >= 40);
    let mut failures = Vec::new();
    for case in &cases.cases {
        let tokenizer = match case.pad.as_str() {
            "endoftext" => &by_vocab,
            "!" => &by_json,
            other => panic!("unknown pad style {other}"),
        };
        let ids = tokenizer.encode(&case.prompt).unwrap();
        if ids != case.input_ids {
            failures.push(format!(
                "{:?} (pad {}): {:?} != {:?}",
                case.prompt, case.pad, ids, case.input_ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn text_encoder_matches_transformers() {
    let device = Device::flex();
    for model in ["tiny-a", "tiny-b"] {
        let reference = read_reference(&data().join(model).join("reference.safetensors"));
        let encoder =
            ClipTextModel::from_dir(&data().join(model).join("text_encoder"), &device).unwrap();
        let ids = &reference["text.input_ids"];
        let rows: Vec<Vec<u32>> = ids
            .data
            .chunks(ids.shape[1])
            .map(|r| r.iter().map(|&v| v as u32).collect())
            .collect();
        let tokenizer = ClipTokenizer::from_dir(&data().join(model).join("tokenizer")).unwrap();
        let hidden = encoder.encode(&rows).unwrap();
        let err = max_abs_diff(hidden, &reference["text.last_hidden_state"]);
        assert!(err < 1e-4, "{model}: text encoder max abs error {err}");
        // The stored ids are the tokenizer's own output for the stored prompts.
        assert_eq!(
            rows[1],
            tokenizer.encode("").unwrap(),
            "{model}: empty prompt ids"
        );
    }
}

#[test]
fn text_encoder_rejects_overlong_input() {
    let device = Device::flex();
    let encoder = ClipTextModel::from_dir(&data().join("tiny-a/text_encoder"), &device).unwrap();
    let err = encoder.encode(&[vec![1; 78]]).unwrap_err();
    assert!(err.to_string().contains("78 tokens"), "{err}");
}
