//! insightface model packs (`buffalo_l`), found and fetched as insightface itself does: the pack
//! folder `<root>/models/<pack>/` when it has the files, else `<site>/<pack>.zip` downloaded to
//! `<root>/models/<pack>.zip` and unpacked there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::HubError;
use crate::hub::sha256_file;
use crate::progress::FetchProgress;
use crate::settings::HubSettings;

/// Largest file taken out of a pack archive.
const MAX_MEMBER_BYTES: u64 = 2 << 30;

/// A pack to find or fetch.
pub struct PackRequest<'a> {
    /// The pack (`buffalo_l`).
    pub pack: &'a str,
    /// The archive's name on the download site (`buffalo_l.zip`).
    pub archive: &'a str,
    /// The archive's digest, where known.
    pub archive_sha256: Option<&'a str>,
    /// The files that must be in the pack.
    pub needed: &'a [&'a str],
    /// The model type being resolved (for error hints).
    pub model_type: &'a str,
}

/// The pack folder with the needed files, fetching the archive when they are missing. Returns
/// the folder and whether it was downloaded now.
pub fn pack_dir(
    settings: &HubSettings,
    request: &PackRequest<'_>,
    progress: &mut dyn FetchProgress,
) -> Result<(PathBuf, bool), HubError> {
    let models = settings.insightface_root.join("models");
    let dir = models.join(request.pack);
    let complete = |dir: &Path| request.needed.iter().all(|f| dir.join(f).is_file());
    if complete(&dir) {
        return Ok((dir, false));
    }
    let url = format!("{}/{}", settings.insightface_url, request.archive);
    if settings.offline {
        return Err(HubError::Offline {
            flag_hint: String::new(),
            what: format!("insightface pack {} ({url})", request.pack),
            cache: dir,
            model_type: request.model_type.to_string(),
        });
    }
    std::fs::create_dir_all(&models).map_err(HubError::io(&models))?;
    let archive = models.join(request.archive);
    download_resumable(&url, &archive, settings.retries, progress)?;
    if let Some(expected) = request.archive_sha256 {
        let actual = sha256_file(&archive)?;
        if !actual.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&archive);
            return Err(HubError::HashMismatch {
                what: url,
                expected: expected.to_ascii_lowercase(),
                actual,
            });
        }
    }
    unpack(&archive, &dir, request.pack)?;
    progress.finish();
    if !complete(&dir) {
        let missing: Vec<_> = request
            .needed
            .iter()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        return Err(HubError::Pack {
            pack: request.pack.to_string(),
            reason: format!("{} has no {missing:?}", archive.display()),
        });
    }
    Ok((dir, true))
}

/// Downloads `url` to `dest` through `dest.part`, continuing a partial file with a range
/// request, retrying a broken transfer from where it stopped.
fn download_resumable(
    url: &str,
    dest: &Path,
    retries: usize,
    progress: &mut dyn FetchProgress,
) -> Result<(), HubError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .max_redirects(10)
        .user_agent(concat!("faceid/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let part = dest.with_extension(format!(
        "{}.part",
        dest.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let fail = |reason: String| HubError::Download {
        what: url.to_string(),
        endpoint: url.to_string(),
        reason,
    };
    let mut started = false;
    let mut attempt = 0;
    loop {
        let done = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut request = agent.get(url);
        if done > 0 {
            request = request.header("Range", format!("bytes={done}-"));
        }
        let result = request
            .call()
            .map_err(|e| fail(e.to_string()))
            .and_then(|response| {
                let resumed = response.status().as_u16() == 206;
                let remaining: u64 = response
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (offset, mut file) = if resumed {
                    let file = OpenOptions::new()
                        .append(true)
                        .open(&part)
                        .map_err(HubError::io(&part))?;
                    (done, file)
                } else {
                    (0, File::create(&part).map_err(HubError::io(&part))?)
                };
                if !started {
                    started = true;
                    progress.start(url, offset + remaining, offset);
                }
                let mut body = response.into_body();
                let mut reader = body.as_reader();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n]).map_err(HubError::io(&part))?;
                    progress.advance(n as u64);
                }
                file.sync_all().map_err(HubError::io(&part))
            });
        match result {
            Ok(()) => break,
            Err(HubError::Download { .. }) if attempt < retries => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 * attempt as u64));
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::rename(&part, dest).map_err(HubError::io(dest))
}

/// Unpacks the `.onnx` files of a pack archive into `dir` (flat, as insightface reads them).
fn unpack(archive: &Path, dir: &Path, pack: &str) -> Result<(), HubError> {
    let bad = |reason: String| HubError::Pack {
        pack: pack.to_string(),
        reason,
    };
    let file = File::open(archive).map_err(HubError::io(archive))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| bad(format!("{} is not a zip archive: {e}", archive.display())))?;
    std::fs::create_dir_all(dir).map_err(HubError::io(dir))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("{}: {e}", archive.display())))?;
        let Some(name) = entry
            .enclosed_name()
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
        else {
            continue;
        };
        if entry.is_dir() || !name.to_string_lossy().ends_with(".onnx") {
            continue;
        }
        if entry.size() > MAX_MEMBER_BYTES {
            return Err(bad(format!(
                "{} is {} bytes, more than a face model can be",
                name.to_string_lossy(),
                entry.size()
            )));
        }
        let target = dir.join(&name);
        let tmp = target.with_extension("onnx.tmp");
        let mut out = File::create(&tmp).map_err(HubError::io(&tmp))?;
        std::io::copy(&mut (&mut entry).take(MAX_MEMBER_BYTES), &mut out)
            .map_err(HubError::io(&tmp))?;
        std::fs::rename(&tmp, &target).map_err(HubError::io(&target))?;
    }
    Ok(())
}
