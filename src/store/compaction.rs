//! Gives back the disk space of removed and rewritten pictures: sled never shrinks its files,
//! so `optimize` writes a copy of the catalog holding only what is live and swaps it in.
//!
//! The swap is three renames, each of which a crash may interrupt; the state on disk always says
//! how to go on: `catalog.compacting` is a copy being written (dropped), `catalog.compacted` a
//! finished one, `catalog.replaced` the catalog it replaced. With no `catalog`, the finished copy
//! (else the replaced catalog) is put back in its place before opening.

use std::path::Path;

use super::catalog::Catalog;
use super::room;
use super::spaces::remove_dir as remove;
use crate::error::{Error, Result};

const CATALOG: &str = "catalog";
const COMPACTING: &str = "catalog.compacting";
const COMPACTED: &str = "catalog.compacted";
const REPLACED: &str = "catalog.replaced";

/// A catalog is copied when its files hold at least this much beyond twice its live data: below,
/// the copy would cost more time than the space it gives back is worth.
const WORTH_COPYING: u64 = 4 << 20;

/// Whether `root` holds a catalog (one a crash stopped in the middle of its swap counts).
pub fn holds_catalog(root: &Path) -> bool {
    [CATALOG, COMPACTED, REPLACED].iter().any(|name| root.join(name).exists())
}

/// Before the catalog is opened: a swap a crash interrupted between its renames is finished.
pub fn settle(root: &Path) -> Result<()> {
    let catalog = root.join(CATALOG);
    for done in [COMPACTED, REPLACED] {
        if !catalog.exists() && root.join(done).exists() {
            rename(&root.join(done), &catalog)?;
        }
    }
    Ok(())
}

/// Once the catalog is open (its lock held, so that no other process is compacting it): what an
/// interrupted compaction left beside it.
pub fn remove_leftovers(root: &Path) -> Result<()> {
    [COMPACTING, COMPACTED, REPLACED].iter().try_for_each(|name| remove(&root.join(name)))
}

/// The catalog at `root`, compacted when that gives back enough space: the new catalog to use
/// in place of `catalog` (then [`remove_leftovers`] once that is closed), and what was done, in
/// words.
pub fn compact(root: &Path, catalog: &Catalog) -> Result<(Option<Catalog>, String)> {
    let on_disk = super::folder_size(&root.join(CATALOG));
    let (entries, live) = catalog.live_size()?;
    if on_disk < live.saturating_mul(2).saturating_add(WORTH_COPYING) {
        return Ok((None, format!("catalog: {} on disk for {} of records, already compact", mb(on_disk), mb(live))));
    }
    room::check(root, live)?;
    let progress = crate::progress::bar("compacting the catalog {bar:40} {pos}/{len} entries, {eta} left", false);
    progress.set_length(entries);
    let copying = root.join(COMPACTING);
    remove(&copying)?;
    catalog.copy_live_into(&copying, &|copied| progress.inc(copied))?;
    progress.finish_and_clear();
    rename(&copying, &root.join(COMPACTED))?;
    rename(&root.join(CATALOG), &root.join(REPLACED))?;
    rename(&root.join(COMPACTED), &root.join(CATALOG))?;
    let compacted = open_soon(&root.join(CATALOG))?;
    let now = super::folder_size(&root.join(CATALOG));
    Ok((Some(compacted), format!("catalog compacted: {} on disk, was {}", mb(now), mb(on_disk))))
}

/// Opens the swapped-in catalog, waiting out a process that started meanwhile: it found the data
/// folder's other indexes locked by this one and is leaving.
fn open_soon(dir: &Path) -> Result<Catalog> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Catalog::open(dir) {
            Err(Error::DataDirLocked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            opened => return opened,
        }
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Write { path: to.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog with something in it, and the id it last gave out.
    fn catalog_at(root: &Path) -> (Catalog, u64) {
        let catalog = Catalog::open(&root.join(CATALOG)).unwrap();
        catalog.set_last_run(&serde_json::json!({"indexed": 7})).unwrap();
        let id = catalog.new_id().unwrap();
        (catalog, id)
    }

    fn last_run(root: &Path) -> serde_json::Value {
        Catalog::open(&root.join(CATALOG)).unwrap().last_run().unwrap().unwrap()
    }

    /// Each place a crash can stop the swap at leaves a catalog that opens with all it held.
    #[test]
    fn a_compaction_stopped_anywhere_leaves_the_catalog_whole() {
        for renames_done in 0..=3 {
            let root = tempfile::tempdir().unwrap();
            let root = root.path();
            {
                let (catalog, _) = catalog_at(root);
                catalog.copy_live_into(&root.join(COMPACTING), &|_| {}).unwrap();
                let steps = [(COMPACTING, COMPACTED), (CATALOG, REPLACED), (COMPACTED, CATALOG)];
                for (from, to) in &steps[..renames_done] {
                    rename(&root.join(from), &root.join(to)).unwrap();
                }
            }
            settle(root).unwrap();
            assert_eq!(last_run(root)["indexed"], 7, "after {renames_done} renames");
            remove_leftovers(root).unwrap();
            let left: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, [CATALOG], "after {renames_done} renames");
        }
    }

    /// The copy goes on giving out ids after the last one the original gave out.
    #[test]
    fn a_copy_gives_out_new_ids() {
        let root = tempfile::tempdir().unwrap();
        let (catalog, last) = catalog_at(root.path());
        catalog.copy_live_into(&root.path().join(COMPACTING), &|_| {}).unwrap();
        let copy = Catalog::open(&root.path().join(COMPACTING)).unwrap();
        assert!(copy.new_id().unwrap() > last);
    }
}
