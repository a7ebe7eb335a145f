//! Generated images: PNG files served under `/files/` for a retention time, or data URIs.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;
use image::RgbImage;
use serde_json::{Value, json};

/// Where results are kept and how they are addressed.
pub struct Files {
    /// The folder the PNG files are written to.
    pub dir: PathBuf,
    /// The server's public address (`https://host:port`), for the URLs it returns.
    pub public_url: String,
    /// How long a file is kept.
    pub retention: Duration,
    /// The shared queue, which keeps the files instead of the folder (for every API node).
    pub shared: Option<std::sync::Arc<crate::redis_queue::RedisQueue>>,
}

/// The `image` (grid) and `images` (one per sample) of an output.
pub struct Stored {
    /// fal's `image`: every sample in one grid.
    pub grid: Value,
    /// One entry per sample.
    pub images: Vec<Value>,
}

impl Files {
    /// Encodes the samples and their grid; written to disk, or inline as data URIs.
    pub fn store(&self, id: &str, samples: &[RgbImage], inline: bool) -> std::io::Result<Stored> {
        let grid = faceid_pipeline::grid(samples);
        let grid = self.one(&format!("{id}.png"), &grid, inline)?;
        let images = samples
            .iter()
            .enumerate()
            .map(|(i, img)| self.one(&format!("{id}-{i}.png"), img, inline))
            .collect::<Result<_, _>>()?;
        Ok(Stored { grid, images })
    }

    fn one(&self, name: &str, img: &RgbImage, inline: bool) -> std::io::Result<Value> {
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(std::io::Error::other)?;
        let url = if inline {
            format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&png)
            )
        } else if let Some(queue) = &self.shared {
            queue.put_file(name, &png).map_err(std::io::Error::other)?;
            format!("{}/files/{name}", self.public_url)
        } else {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &png)?;
            std::fs::rename(&tmp, self.dir.join(name))?;
            format!("{}/files/{name}", self.public_url)
        };
        Ok(json!({
            "url": url,
            "content_type": "image/png",
            "file_name": name,
            "file_size": png.len(),
            "width": img.width(),
            "height": img.height(),
        }))
    }

    /// Whether a file can be written in the results folder now: `Err` says why not.
    pub fn probe(&self) -> Result<(), String> {
        let probe = self.dir.join(format!(".probe-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&probe, b"ok"))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "the results folder {} cannot be written: {e}",
                    self.dir.display()
                )
            })
    }

    /// The path of a served file, if the name is one this server writes.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let safe = name.ends_with(".png")
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        safe.then(|| self.dir.join(name))
    }

    /// Deletes the files this server wrote (see [`is_result_name`]) that are older than the
    /// retention time; other files in the folder are left alone. Returns how many.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let ours = entry.file_name().to_str().is_some_and(is_result_name)
                && entry.file_type().is_ok_and(|t| t.is_file());
            if !ours {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.retention);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// Whether a file name is one [`Files::store`] writes: `<request id>.png`,
/// `<request id>-<n>.png`, or their temporary `.<name>.tmp`, the id being a UUID.
pub fn is_result_name(name: &str) -> bool {
    let name = match name.strip_prefix('.') {
        Some(hidden) => match hidden.strip_suffix(".tmp") {
            Some(inner) => inner,
            None => return false,
        },
        None => name,
    };
    let Some(stem) = name.strip_suffix(".png") else {
        return false;
    };
    let (id, sample) = match stem.get(36..) {
        Some("") => (stem, None),
        Some(rest) => match rest.strip_prefix('-') {
            Some(n) => (&stem[..36], Some(n)),
            None => return false,
        },
        None => return false,
    };
    let uuid = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let sample_ok = sample
        .is_none_or(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()));
    uuid && sample_ok
}
