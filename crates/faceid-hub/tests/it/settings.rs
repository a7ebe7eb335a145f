//! The environment variables of the Hugging Face tools mean the same here.

use std::path::PathBuf;

use faceid_hub::{HubSettings, Manifest};

#[test]
fn the_cache_follows_hf_hub_cache_then_hf_home_then_xdg_then_home() {
    let m = Manifest::builtin();
    let s = HubSettings::from(&[("HOME", "/h")], &m);
    assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
    assert_eq!(s.insightface_root, PathBuf::from("/h/.insightface"));
    assert_eq!(s.endpoint, "https://huggingface.co");
    assert!(!s.offline);
    let s = HubSettings::from(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")], &m);
    assert_eq!(s.cache_dir, PathBuf::from("/x/huggingface/hub"));
    let s = HubSettings::from(
        &[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")],
        &m,
    );
    assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
    let s = HubSettings::from(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")], &m);
    assert_eq!(s.cache_dir, PathBuf::from("/c"));
}

#[test]
fn endpoint_offline_and_insightface_come_from_the_environment() {
    let m = Manifest::builtin();
    let s = HubSettings::from(
        &[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "1"),
            ("FACEID_INSIGHTFACE_ROOT", "/if"),
            ("FACEID_INSIGHTFACE_URL", "http://mirror/"),
        ],
        &m,
    );
    assert_eq!(s.endpoint, "http://127.0.0.1:9");
    assert!(s.offline);
    assert_eq!(s.insightface_root, PathBuf::from("/if"));
    assert_eq!(s.insightface_url, "http://mirror");
    for (value, offline) in [
        ("true", true),
        ("ON", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("", false),
    ] {
        let s = HubSettings::from(&[("HF_HUB_OFFLINE", value)], &m);
        assert_eq!(s.offline, offline, "HF_HUB_OFFLINE={value}");
    }
}

#[test]
fn the_token_comes_from_hf_token_then_the_token_file() {
    let m = Manifest::builtin();
    let dir = crate::common::temp("token");
    std::fs::write(dir.join("token"), "hf_from_file\n").unwrap();
    let home = dir.to_str().unwrap();
    let s = HubSettings::from(&[("HF_HOME", home)], &m);
    assert_eq!(s.token.as_deref(), Some("hf_from_file"));
    let s = HubSettings::from(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")], &m);
    assert_eq!(s.token.as_deref(), Some("hf_env"));
    std::fs::write(dir.join("other"), "hf_other").unwrap();
    let other = dir.join("other");
    let s = HubSettings::from(
        &[
            ("HF_HOME", home),
            ("HF_TOKEN_PATH", other.to_str().unwrap()),
        ],
        &m,
    );
    assert_eq!(s.token.as_deref(), Some("hf_other"));
    let s = HubSettings::from(&[("HF_HOME", "/nonexistent")], &m);
    assert_eq!(s.token, None);
}
