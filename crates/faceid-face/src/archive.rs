//! Reading the images of a zip archive (fal's `face_images_data_url`), safely.

use std::io::{Cursor, Read};

use crate::error::FaceError;
use crate::image_input::{FaceImage, ImageLimits};

/// File extensions read as images; other entries are skipped.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "bmp"];

/// Bounds on what an archive may contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    /// Most entries (files and folders) in the archive.
    pub max_entries: usize,
    /// Most uncompressed bytes of one entry.
    pub max_entry_bytes: u64,
    /// Most uncompressed bytes read from all entries together.
    pub max_total_bytes: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        Self {
            max_entries: 1000,
            max_entry_bytes: 64 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// Decodes every image of a zip archive, in name order.
///
/// Entries whose names climb out of the archive (`../`, absolute paths) make the whole archive an
/// error; entries that are not images by extension (and macOS resource forks) are skipped.
/// Sizes are enforced on the bytes actually inflated, not on the sizes the archive declares.
pub fn read_zip(
    name: &str,
    bytes: &[u8],
    limits: &ZipLimits,
    image_limits: &ImageLimits,
) -> Result<Vec<FaceImage>, FaceError> {
    let fail = |message: String| FaceError::Archive {
        archive: name.to_string(),
        message,
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fail(format!("not a zip archive: {e}")))?;
    if archive.len() > limits.max_entries {
        return Err(fail(format!(
            "{} entries, at most {} allowed",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| fail(format!("entry {i}: {e}")))?;
        let raw_name = entry
            .name()
            .map_err(|e| fail(format!("entry {i} has an unreadable name: {e}")))?
            .to_string();
        let escapes = raw_name.starts_with(['/', '\\'])
            || raw_name.contains(':')
            || raw_name.split(['/', '\\']).any(|part| part == "..");
        let path = match entry.enclosed_name() {
            Some(path) if !escapes => path,
            _ => {
                return Err(fail(format!(
                    "entry {raw_name:?} points outside the archive"
                )));
            }
        };
        if entry.is_dir() {
            continue;
        }
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let hidden = path.components().any(|c| {
            let part = c.as_os_str().to_string_lossy();
            part.starts_with('.') || part == "__MACOSX"
        });
        if !is_image || hidden {
            tracing::debug!(archive = name, entry = %raw_name, "skipping non-image entry");
            continue;
        }
        let budget = limits
            .max_entry_bytes
            .min(limits.max_total_bytes.saturating_sub(total));
        let mut data = Vec::new();
        (&mut entry)
            .take(budget + 1)
            .read_to_end(&mut data)
            .map_err(|e| fail(format!("entry {raw_name:?}: {e}")))?;
        if data.len() as u64 > budget {
            return Err(fail(format!(
                "entry {raw_name:?} inflates past the limit ({} bytes per entry, {} in all)",
                limits.max_entry_bytes, limits.max_total_bytes
            )));
        }
        total += data.len() as u64;
        entries.push((raw_name, data));
    }
    // Every limit is checked before any image is decoded.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(entry, data)| FaceImage::from_bytes(format!("{name}:{entry}"), &data, image_limits))
        .collect()
}
