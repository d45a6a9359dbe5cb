//! One result per shot: a camera's RAW and the JPEG it wrote beside it (`IMG_0001.CR3`,
//! `IMG_0001.JPG`), or a phone's HEIC and its exported JPEG, are files of the same folder with
//! the same name but for the extension — what PhotoPrism and Lightroom show as one stack. The
//! files of a shot have all but the same embedding and date, so they rank side by side: results
//! keep the first of them, and name the others in its `also`. The moments of a video are one shot
//! too (and an iPhone's Live Photo, `IMG_0001.HEIC` beside `IMG_0001.MOV`): the best one shows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::SearchHit;

/// Another file of the same shot as a hit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShotFile {
    pub id: crate::store::ImageId,
    pub path: String,
    /// Another moment of the same video: how many seconds into it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_seconds: Option<f64>,
}

/// What the files of one shot share: the folder and the name before the extension (letter case
/// aside: cameras write `.JPG` beside `.CR3`, exports `.jpg`). A name that is not UTF-8 is
/// compared byte for byte: read lossily, `bad\xff` and `bad\xfe` were one shot.
fn shot_of(path: &Path) -> (Option<PathBuf>, Vec<u8>) {
    let stem = path.file_stem().unwrap_or_default();
    let name = stem.to_str().map_or_else(|| stem.as_encoded_bytes().to_vec(), |name| name.to_lowercase().into_bytes());
    (path.parent().map(Path::to_path_buf), name)
}

/// Folds each hit whose shot an earlier hit already shows into that hit's `also`, keeping the
/// order of the rest, and leaves out the shot of the file `left_out`. Each hit comes with its
/// file's path as stored.
pub fn fold(hits: Vec<(SearchHit, PathBuf)>, left_out: Option<&Path>) -> Vec<SearchHit> {
    let mut shown: Vec<SearchHit> = Vec::with_capacity(hits.len());
    let mut first_of_shot: HashMap<(Option<PathBuf>, Vec<u8>), usize> = HashMap::new();
    let left_out = left_out.map(shot_of);
    for (hit, path) in hits {
        let shot = shot_of(&path);
        if left_out.as_ref() == Some(&shot) {
            continue;
        }
        match first_of_shot.get(&shot) {
            Some(&first) => shown[first].also.push(ShotFile { id: hit.id, path: hit.path, at_seconds: hit.at_seconds }),
            None => {
                first_of_shot.insert(shot, shown.len());
                shown.push(hit);
            }
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_of_a_shot_share_folder_and_name_but_not_the_extension() {
        let shot = |path: &'static str| shot_of(Path::new(path));
        assert_eq!(shot("/photos/2024/IMG_0001.CR3"), shot("/photos/2024/IMG_0001.JPG"));
        assert_eq!(shot("/photos/2024/IMG_0001.HEIC"), shot("/photos/2024/img_0001.jpg"));
        assert_ne!(shot("/photos/2024/IMG_0001.JPG"), shot("/photos/2025/IMG_0001.JPG"));
        assert_ne!(shot("/photos/IMG_0001.JPG"), shot("/photos/IMG_0001-edited.JPG"));
        // Only the last extension goes: a name with dots in it stays itself.
        assert_ne!(shot("/photos/trip.2024.jpg"), shot("/photos/trip.2023.jpg"));
        // Names that are not UTF-8 are told apart by their bytes.
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let bytes = |name: &[u8]| shot_of(Path::new(std::ffi::OsStr::from_bytes(name)));
            assert_ne!(bytes(b"/photos/bad\xff.jpg"), bytes(b"/photos/bad\xfe.jpg"));
            assert_eq!(bytes(b"/photos/bad\xff.jpg"), bytes(b"/photos/bad\xff.png"));
        }
    }
}
