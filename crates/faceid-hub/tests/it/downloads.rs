//! Fetching from a mock hub on loopback: the Hugging Face cache layout, offline use, hash checks,
//! resumed transfers, gated repositories, insightface packs.

use std::path::Path;

use faceid_hub::mock::{MockHub, TINY_BASE_FILES, sha256_hex};
use faceid_hub::{FetchProgress, HubError, Quiet};

use crate::common::{mock, request, root, settings, temp, weights};

const BASE: &str = "SG161222/Realistic_Vision_V4.0_noVAE";
const BASE_COMMIT: &str = "1111111111111111111111111111111111111111";

#[derive(Default)]
struct Recorder {
    notices: Vec<String>,
    started: Vec<(String, u64, u64)>,
    bytes: u64,
}

impl FetchProgress for Recorder {
    fn notice(&mut self, message: &str) {
        self.notices.push(message.into());
    }
    fn start(&mut self, what: &str, size: u64, done: u64) {
        self.started.push((what.into(), size, done));
    }
    fn advance(&mut self, bytes: u64) {
        self.bytes += bytes;
    }
}

fn tiny(rel: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/data/sd/tiny-a").join(rel)).unwrap()
}

#[test]
fn an_empty_cache_is_filled_in_the_hugging_face_layout_then_used_offline() {
    let hub = mock();
    let dir = temp("layout");
    let w = weights(settings(&hub, &dir));
    let mut progress = Recorder::default();
    let files = w.resolve(&request("1_5-v1", true), &mut progress).unwrap();

    // Python's layout: models--org--name/{refs/main, snapshots/<commit>/<path> -> ../../blobs/<etag>}.
    let repo_dir = dir.join("hf/hub/models--SG161222--Realistic_Vision_V4.0_noVAE");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        BASE_COMMIT
    );
    assert_eq!(files.base, repo_dir.join("snapshots").join(BASE_COMMIT));
    let unet = files.base.join("unet/diffusion_pytorch_model.safetensors");
    let bytes = tiny("unet/diffusion_pytorch_model.safetensors");
    let link = std::fs::read_link(&unet).unwrap();
    assert_eq!(link, Path::new("../../../blobs").join(sha256_hex(&bytes)));
    assert_eq!(std::fs::read(&unet).unwrap(), bytes);
    assert_eq!(
        std::fs::read(files.base.join("tokenizer/vocab.json")).unwrap(),
        tiny("tokenizer/vocab.json")
    );
    assert!(
        !files.base.join("vae").exists(),
        "the noVAE repo has no VAE"
    );
    let vae = files.vae.clone().unwrap();
    assert_eq!(
        std::fs::read(vae.join("config.json")).unwrap(),
        tiny("vae/config.json")
    );
    assert!(
        files
            .ip_adapter
            .as_ref()
            .unwrap()
            .ends_with("ip-adapter-faceid_sd15.bin")
    );
    assert_eq!(
        files.detector.as_ref().unwrap(),
        &dir.join("insightface/models/buffalo_l/det_10g.onnx")
    );
    assert_eq!(
        std::fs::read(files.recognizer.as_ref().unwrap()).unwrap(),
        std::fs::read(root().join("tests/data/face/arcface_r50_bn.onnx")).unwrap()
    );
    assert_eq!(
        files.downloaded.len(),
        10 + 2 + 1 + 1,
        "{:?}",
        files.downloaded
    );
    // The licence is shown once per component that is downloaded, and says non-commercial where so.
    assert!(
        progress
            .notices
            .iter()
            .any(|n| n.contains("faceid-sd15") && n.contains("non-commercial"))
    );
    assert!(
        progress
            .notices
            .iter()
            .any(|n| n.contains("buffalo_l") && n.contains("non-commercial"))
    );
    assert_eq!(progress.notices.len(), 4, "{:?}", progress.notices);
    let total: u64 = progress.started.iter().map(|s| s.1).sum();
    assert_eq!(
        progress.bytes, total,
        "progress adds up to the sizes announced"
    );

    // Again, offline, from a server that is gone: the same files, no requests.
    let mut offline = settings(&hub, &dir);
    offline.offline = true;
    drop(hub);
    let again = weights(offline)
        .resolve(&request("1_5-v1", true), &mut Quiet)
        .unwrap();
    assert_eq!(again.base, files.base);
    assert_eq!(again.vae, files.vae);
    assert_eq!(again.recognizer, files.recognizer);
    assert!(again.downloaded.is_empty());
}

#[test]
fn online_runs_use_the_cache_without_asking_the_hub() {
    let hub = mock();
    let dir = temp("cached");
    let w = weights(settings(&hub, &dir));
    w.resolve(&request("1_5-v1", true), &mut Quiet).unwrap();
    hub.clear_log();
    let again = w.resolve(&request("1_5-v1", true), &mut Quiet).unwrap();
    assert!(again.downloaded.is_empty());
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn offline_with_an_empty_cache_says_what_is_missing_and_what_to_run() {
    let hub = mock();
    let dir = temp("offline-empty");
    let mut s = settings(&hub, &dir);
    s.offline = true;
    let err = weights(s)
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(BASE) && text.contains("faceid fetch --model-type 1_5-v1"),
        "{text}"
    );
    assert!(hub.requests().is_empty());
}

#[test]
fn fp16_variants_are_preferred_when_the_repo_has_them() {
    let hub = MockHub::start();
    let plain = b"plain weights".to_vec();
    let half = b"fp16 weights".to_vec();
    hub.add_repo(
        "stabilityai/sd-vae-ft-mse",
        "4444444444444444444444444444444444444444",
        vec![
            ("config.json".into(), b"{}".to_vec()),
            ("diffusion_pytorch_model.safetensors".into(), plain.clone()),
        ],
    );
    let mut files: Vec<(String, Vec<u8>)> = TINY_BASE_FILES
        .iter()
        .map(|f| {
            let weights = f.ends_with(".safetensors");
            (
                f.to_string(),
                if weights {
                    plain.clone()
                } else {
                    b"{}".to_vec()
                },
            )
        })
        .collect();
    files.push((
        "unet/diffusion_pytorch_model.fp16.safetensors".into(),
        half.clone(),
    ));
    hub.add_repo(BASE, BASE_COMMIT, files);
    let dir = temp("fp16");
    let got = weights(settings(&hub, &dir))
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap();
    assert_eq!(
        std::fs::read(
            got.base
                .join("unet/diffusion_pytorch_model.fp16.safetensors")
        )
        .unwrap(),
        half
    );
    assert!(
        !got.base
            .join("unet/diffusion_pytorch_model.safetensors")
            .exists(),
        "only one variant is downloaded"
    );
    assert_eq!(
        std::fs::read(got.base.join("text_encoder/model.safetensors")).unwrap(),
        plain
    );
}

#[test]
fn a_corrupt_download_is_an_error_and_is_not_kept() {
    let hub = mock();
    hub.corrupt(BASE, "unet/diffusion_pytorch_model.safetensors");
    let dir = temp("corrupt");
    let w = weights(settings(&hub, &dir));
    let err = w
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap_err();
    let HubError::HashMismatch {
        what,
        expected,
        actual,
    } = &err
    else {
        panic!("expected a hash mismatch, got {err:?}");
    };
    assert_eq!(
        what,
        &format!("{BASE}/unet/diffusion_pytorch_model.safetensors")
    );
    assert_eq!(
        expected,
        &sha256_hex(&tiny("unet/diffusion_pytorch_model.safetensors"))
    );
    assert_ne!(expected, actual);
    let blobs = dir.join("hf/hub/models--SG161222--Realistic_Vision_V4.0_noVAE/blobs");
    assert!(
        !blobs.join(expected).exists(),
        "the corrupt blob is deleted"
    );
    assert!(err.to_string().contains("fetch again"), "{err}");
}

#[test]
fn a_corrupted_cached_file_is_found_by_verification() {
    let hub = mock();
    let dir = temp("verify");
    let files = weights(settings(&hub, &dir))
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap();
    let unet = files.base.join("unet/diffusion_pytorch_model.safetensors");
    faceid_hub::verify(&unet, None, "unet").unwrap();
    let blob = std::fs::canonicalize(&unet).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let err = faceid_hub::verify(&unet, None, "unet").unwrap_err();
    assert!(matches!(err, HubError::HashMismatch { .. }), "{err:?}");
    assert!(
        !unet.exists() && !blob.exists(),
        "the corrupt copy is removed"
    );
    // The next resolution downloads it again.
    let again = weights(settings(&hub, &dir))
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap();
    assert_eq!(
        again.downloaded,
        vec![format!("{BASE}/unet/diffusion_pytorch_model.safetensors")]
    );
}

#[test]
fn an_interrupted_download_resumes_where_it_stopped() {
    let hub = mock();
    let path = hub.content_path(BASE, "unet/diffusion_pytorch_model.safetensors");
    hub.truncate_once(&path);
    let dir = temp("resume");
    let files = weights(settings(&hub, &dir))
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap();
    let bytes = tiny("unet/diffusion_pytorch_model.safetensors");
    assert_eq!(
        std::fs::read(files.base.join("unet/diffusion_pytorch_model.safetensors")).unwrap(),
        bytes
    );
    let ranges: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .filter_map(|r| r.range)
        .collect();
    let resumed_at = bytes.len() / 2;
    assert!(
        ranges.contains(&format!("bytes={resumed_at}-")),
        "{ranges:?}"
    );
}

#[test]
fn an_interrupted_download_left_by_a_failed_run_is_resumed_by_the_next() {
    let hub = mock();
    let path = hub.content_path(BASE, "unet/diffusion_pytorch_model.safetensors");
    hub.truncate_once(&path);
    let dir = temp("resume-next");
    let mut s = settings(&hub, &dir);
    s.retries = 0;
    let err = weights(s.clone())
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::Download { .. }), "{err:?}");
    let bytes = tiny("unet/diffusion_pytorch_model.safetensors");
    let part = dir
        .join("hf/hub/models--SG161222--Realistic_Vision_V4.0_noVAE/blobs")
        .join(format!("{}.part", sha256_hex(&bytes)));
    assert_eq!(
        std::fs::metadata(&part).unwrap().len() as usize,
        bytes.len() / 2
    );
    hub.clear_log();
    weights(s)
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap();
    let ranges: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .filter_map(|r| r.range)
        .collect();
    assert!(
        ranges.contains(&format!("bytes={}-", bytes.len() / 2)),
        "{ranges:?}"
    );
}

#[test]
fn gated_repositories_explain_how_to_get_access() {
    let hub = mock();
    hub.gate("h94/IP-Adapter-FaceID", "hf_good");
    let dir = temp("gated");
    let err = weights(settings(&hub, &dir))
        .resolve(&request("1_5-v1", true), &mut Quiet)
        .unwrap_err();
    let HubError::Gated { status, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 401);
    let text = err.to_string();
    assert!(
        text.contains("h94/IP-Adapter-FaceID")
            && text.contains("HF_TOKEN")
            && text.contains("no token was sent"),
        "{text}"
    );

    let mut s = settings(&hub, &dir);
    s.token = Some("hf_bad".into());
    let err = weights(s)
        .resolve(&request("1_5-v1", true), &mut Quiet)
        .unwrap_err();
    assert!(
        matches!(err, HubError::Gated { status: 403, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("has no access"), "{err}");

    let mut s = settings(&hub, &dir);
    s.token = Some("hf_good".into());
    let files = weights(s)
        .resolve(&request("1_5-v1", true), &mut Quiet)
        .unwrap();
    assert!(files.ip_adapter.unwrap().is_file());
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.authorization.as_deref() == Some("Bearer hf_good"))
    );
}

#[test]
fn a_missing_file_is_named() {
    let hub = MockHub::start();
    hub.add_repo(
        "h94/IP-Adapter-FaceID",
        "5555555555555555555555555555555555555555",
        vec![],
    );
    let dir = temp("missing");
    let mut req = request("1_5-v1", true);
    req.local.base = Some(root().join("tests/data/sd/tiny-a"));
    let err = weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("h94/IP-Adapter-FaceID has no ip-adapter-faceid_sd15.bin"),
        "{err}"
    );
}

#[test]
fn an_unreachable_hub_is_a_clear_error() {
    let dir = temp("unreachable");
    let hub = MockHub::start();
    let mut s = settings(&hub, &dir);
    drop(hub);
    s.endpoint = "http://127.0.0.1:9".into();
    let err = weights(s)
        .resolve(&request("1_5-v1", false), &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::Download { .. }), "{err:?}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn local_paths_replace_manifest_entries_and_are_not_fetched() {
    let hub = mock();
    let dir = temp("local");
    let mut req = request("1_5-v1", true);
    req.local.base = Some(root().join("tests/data/sd/tiny-a"));
    req.local.ip_adapter = Some(root().join("tests/data/faceid/ip-adapter-faceid_tiny.bin"));
    req.local.recognizer = Some(root().join("tests/data/face/arcface_r50_bn.onnx"));
    let files = weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap();
    assert_eq!(files.base, root().join("tests/data/sd/tiny-a"));
    assert_eq!(files.vae, None, "a local base model keeps its own VAE");
    assert_eq!(
        files.detector, None,
        "the caller's own detector choice stands"
    );
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn a_base_repo_override_is_fetched_with_the_same_layout() {
    let hub = mock();
    let files: Vec<(String, Vec<u8>)> = TINY_BASE_FILES
        .iter()
        .map(|f| (f.to_string(), tiny(f)))
        .collect();
    hub.add_repo(
        "someone/my-sd15",
        "6666666666666666666666666666666666666666",
        files,
    );
    let dir = temp("override");
    let mut req = request("1_5-v1", false);
    req.base_repo = Some("someone/my-sd15".into());
    let got = weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap();
    assert!(
        got.base
            .starts_with(dir.join("hf/hub/models--someone--my-sd15"))
    );
}

#[test]
fn unpublished_weights_say_how_to_supply_them() {
    let hub = mock();
    let dir = temp("aura");
    let err = weights(settings(&hub, &dir))
        .resolve(&request("1_5-auraface-v1", true), &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::NotPublished { .. }), "{err:?}");
    assert!(err.to_string().contains("--ip-adapter"), "{err}");
}

#[test]
fn an_interrupted_pack_download_resumes_and_an_existing_pack_is_used_as_is() {
    let hub = mock();
    hub.truncate_once("/releases/buffalo_l.zip");
    let dir = temp("pack");
    let mut req = request("1_5-v1", true);
    req.local.base = Some(root().join("tests/data/sd/tiny-a"));
    let files = weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap();
    assert!(files.detector.unwrap().is_file());
    let zip_requests: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.path == "/releases/buffalo_l.zip")
        .collect();
    assert_eq!(zip_requests.len(), 2, "{zip_requests:?}");
    assert!(
        zip_requests[1]
            .range
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "{zip_requests:?}"
    );
    // insightface's own folder is used without the network.
    hub.clear_log();
    weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap();
    assert!(
        hub.requests()
            .iter()
            .all(|r| r.path != "/releases/buffalo_l.zip")
    );
}

#[test]
fn a_pack_archive_without_the_models_is_an_error() {
    let hub = mock();
    hub.add_asset("/releases/buffalo_l.zip", b"not a zip".to_vec());
    let dir = temp("badpack");
    let mut req = request("1_5-v1", true);
    req.local.base = Some(root().join("tests/data/sd/tiny-a"));
    let err = weights(settings(&hub, &dir))
        .resolve(&req, &mut Quiet)
        .unwrap_err();
    assert!(matches!(err, HubError::Pack { .. }), "{err:?}");
    assert!(err.to_string().contains("not a zip"), "{err}");
}
