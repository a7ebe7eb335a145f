//! Reading the images of a zip archive (fal's `face_images_data_url`) safely, one image at a
//! time: names that climb out of the archive, entry counts, inflated sizes, image sizes and the
//! total pixel count are all checked before any image is decoded, and then each image is
//! decoded only when the one before it has been handed over.

use std::io::{Cursor, Read};

use faceid_detect::{FaceImage, ImageLimits};

use crate::error::FaceError;

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
    /// Most pixels of all images together, as their headers declare them: bounds the decoding
    /// work of one archive, and the memory of [`read_zip`], which holds every image.
    pub max_total_pixels: u64,
}

impl Default for ZipLimits {
    /// 1000 entries, 64 MiB per entry, 256 MiB in all, and 256 Mi pixels in all (five images
    /// at the largest [`ImageLimits`] default, or twenty 12-megapixel photos).
    fn default() -> Self {
        Self {
            max_entries: 1000,
            max_entry_bytes: 64 << 20,
            max_total_bytes: 256 << 20,
            max_total_pixels: 256 << 20,
        }
    }
}

/// The images of a zip archive, decoded one at a time in name order.
///
/// [`ZipImages::new`] checks every limit before anything is decoded; each call to `next` then
/// inflates and decodes one image, so a caller that drops each image before asking for the next
/// holds one decoded image at a time.
pub struct ZipImages<'a> {
    name: String,
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    /// Image entries still to decode: (entry name, index in the archive), in name order.
    entries: std::vec::IntoIter<(String, usize)>,
    max_entry_bytes: u64,
    image_limits: ImageLimits,
}

impl std::fmt::Debug for ZipImages<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipImages")
            .field("name", &self.name)
            .field("remaining", &self.entries.len())
            .finish()
    }
}

impl<'a> ZipImages<'a> {
    /// Opens an archive and checks it whole: entries whose names climb out of the archive
    /// (`../`, absolute paths) make it an error; entries that are not images by extension (and
    /// macOS resource forks, hidden files) are skipped. Every image entry is inflated once,
    /// bounded, to count its real size (not the size the archive declares) and to read its
    /// header against `image_limits` and the archive's pixel budget; it is then dropped.
    pub fn new(
        name: &str,
        bytes: &'a [u8],
        limits: &ZipLimits,
        image_limits: &ImageLimits,
    ) -> Result<Self, FaceError> {
        let fail = |message: String| archive_error(name, message);
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| fail(format!("not a zip archive: {e}")))?;
        if archive.len() > limits.max_entries {
            return Err(fail(format!(
                "{} entries, at most {} allowed",
                archive.len(),
                limits.max_entries
            )));
        }
        let mut entries = Vec::new();
        let (mut total_bytes, mut total_pixels) = (0u64, 0u64);
        let mut image_error = None;
        for i in 0..archive.len() {
            let mut entry = archive
                .by_index(i)
                .map_err(|e| fail(format!("entry {i}: {e}")))?;
            let Some(raw_name) = image_entry(name, i, &entry)? else {
                continue;
            };
            let budget = limits
                .max_entry_bytes
                .min(limits.max_total_bytes.saturating_sub(total_bytes));
            let data = inflate(name, &raw_name, &mut entry, budget).map_err(|e| match e {
                Inflated::Over => fail(format!(
                    "entry {raw_name:?} inflates past the limit ({} bytes per entry, {} in all)",
                    limits.max_entry_bytes, limits.max_total_bytes
                )),
                Inflated::Failed(e) => e,
            })?;
            total_bytes += data.len() as u64;
            // An unreadable or oversized image is reported once the archive's own limits have
            // all been checked.
            let (width, height) =
                match FaceImage::probe(&member(name, &raw_name), &data, image_limits) {
                    Ok(size) => size,
                    Err(e) => {
                        image_error.get_or_insert(e);
                        continue;
                    }
                };
            total_pixels += u64::from(width) * u64::from(height);
            if total_pixels > limits.max_total_pixels {
                return Err(fail(format!(
                    "its images have more than {} pixels in all (reached at {raw_name:?}, \
                     {width}x{height}); send fewer or smaller images",
                    limits.max_total_pixels
                )));
            }
            entries.push((raw_name, i));
        }
        if let Some(e) = image_error {
            return Err(e.into());
        }
        entries.sort();
        Ok(Self {
            name: name.to_string(),
            archive,
            entries: entries.into_iter(),
            max_entry_bytes: limits.max_entry_bytes,
            image_limits: image_limits.clone(),
        })
    }

    /// Images not yet decoded.
    pub fn remaining(&self) -> usize {
        self.entries.len()
    }

    fn decode(&mut self, raw_name: &str, index: usize) -> Result<FaceImage, FaceError> {
        let mut entry = self
            .archive
            .by_index(index)
            .map_err(|e| archive_error(&self.name, format!("entry {index}: {e}")))?;
        let data = inflate(&self.name, raw_name, &mut entry, self.max_entry_bytes).map_err(
            |e| match e {
                Inflated::Over => archive_error(
                    &self.name,
                    format!("entry {raw_name:?} changed size between reads"),
                ),
                Inflated::Failed(e) => e,
            },
        )?;
        drop(entry);
        Ok(FaceImage::from_bytes(
            member(&self.name, raw_name),
            &data,
            &self.image_limits,
        )?)
    }
}

impl Iterator for ZipImages<'_> {
    type Item = Result<FaceImage, FaceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (raw_name, index) = self.entries.next()?;
        Some(self.decode(&raw_name, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

/// Hands every image of a zip archive to `visit`, in name order, one at a time: an image is
/// decoded only after `visit` returned for the one before it, so memory holds one decoded image
/// (plus whatever `visit` keeps). Returns how many images were visited; stops at the first
/// error, from the archive or from `visit`. The limits are those of [`ZipImages::new`].
pub fn for_each_zip_image(
    name: &str,
    bytes: &[u8],
    limits: &ZipLimits,
    image_limits: &ImageLimits,
    mut visit: impl FnMut(FaceImage) -> Result<(), FaceError>,
) -> Result<usize, FaceError> {
    let mut count = 0;
    for image in ZipImages::new(name, bytes, limits, image_limits)? {
        visit(image?)?;
        count += 1;
    }
    Ok(count)
}

/// Decodes every image of a zip archive, in name order, and returns them all.
///
/// This holds every decoded image at once (bounded by [`ZipLimits::max_total_pixels`]); to
/// embed faces, prefer [`for_each_zip_image`] with [`crate::IdentityBuilder`], which holds one.
pub fn read_zip(
    name: &str,
    bytes: &[u8],
    limits: &ZipLimits,
    image_limits: &ImageLimits,
) -> Result<Vec<FaceImage>, FaceError> {
    ZipImages::new(name, bytes, limits, image_limits)?.collect()
}

fn archive_error(archive: &str, message: String) -> FaceError {
    FaceError::Archive {
        archive: archive.to_string(),
        message,
    }
}

/// The name of an archive member in messages: `archive:entry`.
fn member(archive: &str, entry: &str) -> String {
    format!("{archive}:{entry}")
}

/// The entry's name when it is an image to read, `None` when it is skipped; an error when its
/// name is unreadable or points outside the archive.
fn image_entry<R: Read>(
    archive: &str,
    index: usize,
    entry: &zip::read::ZipFile<'_, R>,
) -> Result<Option<String>, FaceError> {
    let raw_name = entry
        .name()
        .map_err(|e| {
            archive_error(
                archive,
                format!("entry {index} has an unreadable name: {e}"),
            )
        })?
        .to_string();
    let escapes = raw_name.starts_with(['/', '\\'])
        || raw_name.contains(':')
        || raw_name.split(['/', '\\']).any(|part| part == "..");
    let path = match entry.enclosed_name() {
        Some(path) if !escapes => path,
        _ => {
            return Err(archive_error(
                archive,
                format!("entry {raw_name:?} points outside the archive"),
            ));
        }
    };
    if entry.is_dir() {
        return Ok(None);
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
        tracing::debug!(archive, entry = %raw_name, "skipping non-image entry");
        return Ok(None);
    }
    Ok(Some(raw_name))
}

enum Inflated {
    /// More than the budget.
    Over,
    /// The inflation itself failed.
    Failed(FaceError),
}

/// Inflates an entry, reading at most `budget + 1` bytes whatever the archive declares.
fn inflate(
    archive: &str,
    raw_name: &str,
    entry: &mut impl Read,
    budget: u64,
) -> Result<Vec<u8>, Inflated> {
    let mut data = Vec::new();
    entry.take(budget + 1).read_to_end(&mut data).map_err(|e| {
        Inflated::Failed(archive_error(archive, format!("entry {raw_name:?}: {e}")))
    })?;
    if data.len() as u64 > budget {
        return Err(Inflated::Over);
    }
    Ok(data)
}
