//! A cache written by huggingface_hub itself (tests/data/hf_cache, made by
//! tests/fixtures/gen_hf_cache.py) is found offline, file for file.

use faceid_hub::{HubSettings, Manifest, Quiet, Weights, verify};
use serde_json::Value;

use crate::common::root;

#[test]
fn a_cache_filled_by_huggingface_hub_is_used_offline() {
    let data = root().join("tests/data/hf_cache");
    let listing: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("cache.json")).unwrap()).unwrap();
    let manifest = Manifest::builtin();
    let mut settings = HubSettings::from(&[("HOME", "/nonexistent")], &manifest);
    settings.cache_dir = data.join("hub");
    settings.offline = true;
    let weights = Weights::new(manifest, settings).unwrap();
    for (repo, files) in listing["sources"].as_object().unwrap() {
        for (name, source) in files.as_object().unwrap() {
            let got = weights
                .hub()
                .fetch(
                    repo,
                    "main",
                    &[name.clone()],
                    &|_| None,
                    "1_5-v1",
                    &mut Quiet,
                )
                .unwrap_or_else(|e| panic!("{repo}/{name}: {e}"));
            assert!(!got.downloaded);
            let expected = &listing["files"][format!("{repo}/{name}")];
            assert_eq!(got.path, data.join("hub").join(expected.as_str().unwrap()));
            let bytes = std::fs::read(root().join(source.as_str().unwrap())).unwrap();
            assert_eq!(std::fs::read(&got.path).unwrap(), bytes, "{repo}/{name}");
            // LFS blobs are named by their SHA-256, and check out.
            verify(&got.path, None, name).unwrap();
        }
    }
    let blob = faceid_hub::expected_digest(
        &data.join("hub").join(
            listing["files"]["h94/IP-Adapter-FaceID/ip-adapter-faceid_sd15.bin"]
                .as_str()
                .unwrap(),
        ),
        None,
    );
    assert!(blob.is_some(), "the LFS blob is named by its SHA-256");
}
