//! The built-in manifest against the API's model types, and the checks on manifests.

use faceid_fal::{DEFAULT_BASE_1_5_REPO, DEFAULT_BASE_SDXL_REPO, ModelType};
use faceid_hub::{ComponentKind, HubError, Manifest};

#[test]
fn every_model_type_of_the_api_has_an_entry_and_no_other() {
    let manifest = Manifest::builtin();
    let names: Vec<&str> = ModelType::ALL.iter().map(|m| m.name()).collect();
    let mut listed: Vec<&str> = manifest.model_types.keys().map(String::as_str).collect();
    let mut expected = names.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    for model_type in ModelType::ALL {
        let entry = manifest.model_type(model_type.name()).unwrap();
        let base = manifest.component(&entry.base).unwrap();
        let default = if model_type.is_sdxl() {
            DEFAULT_BASE_SDXL_REPO
        } else {
            DEFAULT_BASE_1_5_REPO
        };
        assert_eq!(base.repo.as_deref(), Some(default), "{}", model_type.name());
        let plus = model_type.name().contains("plus");
        assert_eq!(entry.image_encoder.is_some(), plus, "{}", model_type.name());
    }
}

#[test]
fn licences_say_which_weights_are_non_commercial() {
    let manifest = Manifest::builtin();
    for name in ["faceid-sd15", "faceid-plusv2-sdxl", "buffalo_l"] {
        let c = manifest.component(name).unwrap();
        assert!(!c.commercial_use, "{name}");
        assert!(
            c.license.contains("non-commercial"),
            "{name}: {}",
            c.license
        );
    }
    let aura = manifest.component("auraface").unwrap();
    assert_eq!(aura.license, "apache-2.0");
    assert!(aura.commercial_use);
    let pack = manifest.component("buffalo_l").unwrap();
    assert_eq!(pack.kind, ComponentKind::InsightfacePack);
    assert_eq!(pack.detector.as_deref(), Some("det_10g.onnx"));
    assert_eq!(pack.recognizer.as_deref(), Some("w600k_r50.onnx"));
}

#[test]
fn fp16_weights_come_first_where_a_repo_may_have_them() {
    let manifest = Manifest::builtin();
    let base = manifest.component("realistic-vision-v4-novae").unwrap();
    let unet = base
        .files
        .iter()
        .find(|f| f.candidates()[0].starts_with("unet/diffusion"))
        .unwrap();
    assert_eq!(
        unet.candidates(),
        [
            "unet/diffusion_pytorch_model.fp16.safetensors",
            "unet/diffusion_pytorch_model.safetensors"
        ]
    );
    // The SDXL VAE is read in f32 only.
    let xl = manifest.component("realvisxl-v3").unwrap();
    assert!(xl.files.iter().all(|f| {
        !f.candidates()
            .iter()
            .any(|c| c.starts_with("vae/") && c.contains("fp16"))
    }));
}

fn broken(text: &str) -> String {
    match Manifest::parse(text, "test.toml") {
        Err(HubError::Manifest { reason, .. }) => reason,
        other => panic!("expected a manifest error, got {other:?}"),
    }
}

const SOURCES: &str = "schema = 1\n[sources]\nhub = \"h\"\ninsightface = \"i\"\n";

#[test]
fn inconsistent_manifests_are_refused_with_the_reason() {
    let reason = broken(&format!(
        "{SOURCES}[model_types.a]\nbase = \"nope\"\nip_adapter = \"x\"\nface = \"y\"\n"
    ));
    assert!(reason.contains("'nope', which is not defined"), "{reason}");

    let reason = broken(&format!(
        "{SOURCES}[model_types.a]\nbase = \"v\"\nip_adapter = \"v\"\nface = \"v\"\n\
         [components.v]\nkind = \"vae\"\nrepo = \"r\"\nlicense = \"mit\"\nfiles = [\"config.json\"]\n"
    ));
    assert!(
        reason.contains("base names 'v', a Vae component"),
        "{reason}"
    );

    let reason = broken(&format!(
        "{SOURCES}[components.v]\nkind = \"vae\"\nlicense = \"mit\"\nfiles = [\"config.json\"]\n"
    ));
    assert!(
        reason.contains("component v: a published hub component names its repo"),
        "{reason}"
    );

    let reason = broken(&format!(
        "{SOURCES}[components.v]\nkind = \"vae\"\nrepo = \"r\"\nlicense = \"mit\"\nfiles = [\"a\"]\nsha256 = {{ a = \"abc\" }}\n"
    ));
    assert!(reason.contains("'abc' is not a SHA-256"), "{reason}");

    let reason = broken(
        "schema = 2\n[sources]\nhub = \"h\"\ninsightface = \"i\"\n[model_types]\n[components]\n",
    );
    assert!(reason.contains("schema 2 is not supported"), "{reason}");

    let reason = broken(&format!(
        "{SOURCES}[components.v]\nkind = \"vae\"\nrepo = \"r\"\nlicence = \"typo\"\n"
    ));
    assert!(reason.contains("licence"), "{reason}");
}

#[test]
fn an_unknown_model_type_lists_the_known_ones() {
    let err = Manifest::builtin().model_type("2_0-v9").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("'2_0-v9'") && text.contains("1_5-v1") && text.contains("SDXL-v2-plus"),
        "{text}"
    );
}
