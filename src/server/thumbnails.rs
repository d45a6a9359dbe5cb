//! Renditions of a picture (of a video's moment: the key frame that was embedded): upright (EXIF applied
//! by the decoder) JPEGs that fit a square box, generated once per picture version and cached in
//! the library's cache folder; `optimize` deletes those of pictures gone or changed since.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;

use super::{open_indexed_file, read_indexed_file};
use crate::error::{Error, Result};
use crate::ingest::decode::{decode_bytes, DecodeOptions, MinSize};
use crate::ingest::video;
use crate::store::roots::Mounts;
use crate::store::{ImageId, ImageRecord, Library};

/// The folder of the renditions, in a library's cache folder.
const FOLDER: &str = "thumbnails";

/// What a rendition is for, which sets its size.
#[derive(Debug, Clone, Copy)]
pub enum Rendition {
    /// A result tile: at most 320 px.
    Thumbnail,
    /// The viewer: at most 1,600 px, a JPEG every browser shows whatever the original is (a TIFF,
    /// a camera RAW, a 100 MP panorama) and a fraction of a camera file's bytes over the network.
    Preview,
}

impl Rendition {
    fn box_size(self) -> u32 {
        match self {
            Rendition::Thumbnail => 320,
            Rendition::Preview => 1600,
        }
    }

    fn cache_name(self, record: &ImageRecord) -> String {
        match self {
            Rendition::Thumbnail => format!("{}-{}.jpg", record.id, thumbnail_version(record)),
            Rendition::Preview => format!("{}-{}-preview.jpg", record.id, thumbnail_version(record)),
        }
    }
}

/// What a picture's thumbnail depends on: its file's content and place. It names the cached file
/// and is the thumbnail's HTTP ETag, so a picture that changed, or another picture under the same
/// id (another model's space), is never shown from a cache.
pub fn thumbnail_version(record: &ImageRecord) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(record.hash.as_bytes());
    hasher.update(&record.size.to_le_bytes());
    hasher.update(&record.mtime_ns.to_le_bytes());
    hasher.update(&crate::store::catalog::stored_bytes(&record.path));
    hasher.finalize().to_hex()[..16].to_string()
}

/// The cached rendition's bytes, creating it first if needed. `cache_dir`: the library's.
pub fn rendition(
    cache_dir: &Path,
    record: &ImageRecord,
    mounts: &Mounts,
    max_pixels: u64,
    kind: Rendition,
) -> Result<Vec<u8>> {
    let cache = cache_dir.join(FOLDER);
    let path = cache.join(kind.cache_name(record));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let source: PathBuf = mounts.local_or_err(&record.file_path())?;
    let size = kind.box_size();
    let min_size = Some(MinSize::LongSide(size));
    let rgb = match record.video_seconds() {
        Some(seconds) => {
            open_indexed_file(record, mounts)?; // the video the moment was taken from, unchanged
            video::frame_at(&source, (record.width, record.height), seconds, min_size)?
        }
        None => {
            let options = DecodeOptions { max_pixels, min_size, ..Default::default() };
            decode_bytes(&read_indexed_file(record, mounts)?, &source, &options)?.rgb
        }
    };
    // Fit into the box, keeping the aspect ratio; never enlarge.
    let (w, h) = rgb.dimensions();
    let scale = (size as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let small = image::imageops::thumbnail(&rgb, tw, th);
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 82)
        .encode_image(&small)
        .map_err(|e| Error::Decode { path: source.clone(), reason: e.to_string() })?;
    // Write-then-rename so a concurrent reader never sees half a file; caching is best effort.
    if std::fs::create_dir_all(&cache).is_ok() {
        // Unique per request: two requests for the same uncached rendition must not share it.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = cache.join(format!("{}.jpg.{}.{n}.tmp", record.id, std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(bytes)
}

/// Deletes the cached renditions no picture of `library` has any more: those of pictures
/// removed, changed or moved since (a rendition's name holds its picture's id and version).
/// Returns how many files were deleted, and their bytes.
pub fn prune_renditions(library: &dyn Library) -> Result<(u64, u64)> {
    let folder = library.cache_dir().join(FOLDER);
    let Ok(entries) = std::fs::read_dir(&folder) else {
        return Ok((0, 0)); // no rendition was ever made
    };
    let ids: Vec<ImageId> = library.paths().map(|entry| entry.map(|(_, id)| id)).collect::<Result<_>>()?;
    let mut current = HashSet::new();
    for chunk in ids.chunks(1024) {
        for record in library.images_meta(chunk)? {
            current.extend([Rendition::Thumbnail, Rendition::Preview].map(|kind| kind.cache_name(&record)));
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A running server's half-written renditions end in `.tmp`: left to it.
        if !name.ends_with(".jpg") || current.contains(&name) {
            continue;
        }
        let size = entry.metadata().map_or(0, |metadata| metadata.len());
        if std::fs::remove_file(entry.path()).is_ok() {
            (files, bytes) = (files + 1, bytes + size);
        }
    }
    Ok((files, bytes))
}
