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

    /// The path of a served file, if the name is one this server writes.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let safe = name.ends_with(".png")
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        safe.then(|| self.dir.join(name))
    }

    /// Deletes files older than the retention time; returns how many.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
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
