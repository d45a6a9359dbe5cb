//! `imgsearch migrate`: a library copied into another one — an embedded data folder into
//! PostgreSQL, or back — records and embeddings as they are, so nothing is embedded again.

use indicatif::ProgressBar;
use serde::Serialize;

use super::catalog::{stored_bytes, Change, ImageRecord};
use super::path_too_long;
use super::{Known, Library};
use crate::error::{Error, Result};

/// Pictures per transaction on the target.
const BATCH: usize = 1_000;

#[derive(Debug, Default, Serialize)]
pub struct CopySummary {
    /// Pictures written to the target.
    pub copied: u64,
    /// Pictures the target already held, same file (a re-run after an interruption).
    pub unchanged: u64,
    /// Skipped files (unreadable, not pictures) copied, so the target does not read them again.
    pub skipped_files: u64,
    /// Pictures and skipped files the target cannot keep (a path too long for it), with why.
    pub left_out: Vec<String>,
}

/// Copies every picture (with its tags), skipped file, indexed folder, the label set and the
/// latest run summary of `from`
/// into `to`, which must be empty or hold the same model's embeddings. Pictures get the
/// target's own ids. Re-running after an interruption copies only what is missing.
pub fn copy(from: &dyn Library, to: &mut dyn Library, progress: &ProgressBar) -> Result<CopySummary> {
    let Some(model) = from.model_info()? else {
        return Err(Error::Exchange(format!("the library {} is empty: there is nothing to copy", from.location())));
    };
    to.check_model(&model)?;
    // The label set comes along, so the copied tags stay what a re-tag would give.
    if let Some(tagging) = from.tagging()? {
        to.set_tagging(Some(&tagging))?;
    }
    progress.set_length(from.image_count() as u64);
    to.begin_bulk_load()?;
    let mut summary = CopySummary::default();
    let mut images = from.images();
    let target = to.lookup();
    loop {
        let chunk = images.by_ref().take(BATCH).collect::<Result<Vec<ImageRecord>>>()?;
        if chunk.is_empty() {
            break;
        }
        progress.inc(chunk.len() as u64);
        let keys: Vec<Vec<u8>> = chunk.iter().map(|record| stored_bytes(&record.path)).collect();
        let mut batch = Vec::with_capacity(chunk.len());
        // The target's records without their embeddings: the file's identity decides.
        for ((mut record, known), key) in chunk.into_iter().zip(to.known_at(&keys)?).zip(&keys) {
            if let Some(reason) = path_too_long(target.as_ref(), key) {
                summary.left_out.push(format!("{}: {reason}", record.path.display()));
                continue;
            }
            if let Known::Picture(k) = known {
                if (k.hash.as_str(), k.size, k.mtime_ns) == (record.hash.as_str(), record.size, record.mtime_ns) {
                    summary.unchanged += 1;
                    continue;
                }
            }
            record.id = to.new_id()?;
            batch.push(Change::Upsert(record));
        }
        summary.copied += batch.len() as u64;
        to.apply(&batch)?;
    }
    let mut batch = Vec::new();
    for skip in from.skipped() {
        let skip = skip?;
        let path = stored_bytes(&skip.path);
        if let Some(reason) = path_too_long(target.as_ref(), &path) {
            summary.left_out.push(format!("{}: {reason}", skip.path.display()));
            continue;
        }
        if to.image_at(&path)?.is_none() && to.skipped_at(&path)?.as_ref() != Some(&skip) {
            batch.push(Change::Skip(skip));
        }
    }
    summary.skipped_files = batch.len() as u64;
    to.apply(&batch)?;
    to.end_bulk_load(progress)?;
    if let Some(last_run) = from.last_run()? {
        to.record_run(&from.indexed_roots()?, &last_run)?;
    }
    to.save()?;
    Ok(summary)
}
