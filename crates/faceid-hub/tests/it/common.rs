//! A mock hub with the tiny models, and settings pointing at it.

use std::path::{Path, PathBuf};

use faceid_hub::mock::{MockHub, publish_tiny_models};
use faceid_hub::{HubSettings, Manifest, ModelRequest, Weights};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh empty folder.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faceid-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn mock() -> MockHub {
    let hub = MockHub::start();
    publish_tiny_models(&hub, &root()).unwrap();
    hub
}

pub fn settings(hub: &MockHub, dir: &Path) -> HubSettings {
    HubSettings {
        cache_dir: dir.join("hf/hub"),
        endpoint: hub.url(),
        token: None,
        offline: false,
        insightface_root: dir.join("insightface"),
        insightface_url: format!("{}/releases", hub.url()),
        retries: 2,
    }
}

pub fn weights(settings: HubSettings) -> Weights {
    Weights::new(Manifest::builtin(), settings).unwrap()
}

pub fn request(model_type: &str, with_face: bool) -> ModelRequest {
    ModelRequest {
        model_type: model_type.into(),
        base_repo: None,
        local: Default::default(),
        adapter: with_face,
        face_analysis: with_face,
    }
}
