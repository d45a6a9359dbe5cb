//! Google Photos' downloads (Google Takeout): each picture comes with a JSON file of what Google
//! Photos knew of it — the description typed in the app, the people recognised and named, when
//! and where it was taken — often where the picture's own EXIF has none (an edited copy, a
//! picture shared into the library, a scan).
//!
//! The JSON's name follows the picture's: `IMG_1.jpg.json` in older downloads,
//! `IMG_1.jpg.supplemental-metadata.json` since 2024, both cut to 51 characters in all
//! (`PXL_20230518_175342346.MP.jpg.supplemental-met.json`); the second `IMG_1.jpg` of an
//! album is `IMG_1(1).jpg` with `IMG_1.jpg(1).json`; an edited copy `IMG_1-edited.jpg` shares the
//! original's.

use std::path::{Path, PathBuf};

use super::captions::{self, Captions};

/// Longest name Google gives a JSON file, its `.json` included.
const MAX_NAME_CHARS: usize = 51;
/// Largest JSON read: Google's are about a kilobyte.
const MAX_JSON_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, PartialEq)]
pub struct TakeoutFacts {
    /// The description, and the names of the people Google Photos recognised and someone named
    /// as keywords.
    pub captions: Captions,
    /// When it was taken, Unix seconds (UTC: Google keeps no local time).
    pub taken: Option<i64>,
    /// Where, in degrees; Google writes 0, 0 for "unknown".
    pub place: Option<(f64, f64)>,
}

/// The facts of Google's JSON beside the picture at `path`, if there is one.
pub fn read(path: &Path) -> Option<TakeoutFacts> {
    json_names(path).into_iter().find_map(|candidate| {
        use std::io::Read;
        let mut text = Vec::new();
        std::fs::File::open(&candidate).ok()?.take(MAX_JSON_BYTES).read_to_end(&mut text).ok()?;
        parse(&text)
    })
}

/// The names Google may have given the JSON of the picture at `path`.
fn json_names(path: &Path) -> Vec<PathBuf> {
    let (Some(folder), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    // `IMG_1(1).jpg` → `IMG_1.jpg` and `(1)`; `IMG_1-edited.jpg` → `IMG_1.jpg`.
    let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
    let dot_extension = if extension.is_empty() { String::new() } else { format!(".{extension}") };
    let (stem, copy) = match stem.rsplit_once('(') {
        Some((base, number)) if number.ends_with(')') && number[..number.len() - 1].parse::<u32>().is_ok() => {
            (base, format!("({number}"))
        }
        _ => (stem, String::new()),
    };
    let stem = stem.strip_suffix("-edited").unwrap_or(stem);
    let original = format!("{stem}{dot_extension}");
    let cut = |base: String| -> String {
        let room = MAX_NAME_CHARS - ".json".len() - copy.chars().count();
        format!("{}{copy}.json", base.chars().take(room).collect::<String>())
    };
    let mut names = vec![cut(format!("{original}.supplemental-metadata")), cut(original.clone())];
    names.dedup();
    names.into_iter().map(|name| folder.join(name)).collect()
}

fn parse(json: &[u8]) -> Option<TakeoutFacts> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    // Google's, not any JSON that happens to sit beside a picture.
    if !value.is_object() || (value.get("photoTakenTime").is_none() && value.get("creationTime").is_none()) {
        return None;
    }
    let seconds = |v: &serde_json::Value| v["timestamp"].as_str().and_then(|t| t.parse::<i64>().ok());
    let place = |v: &serde_json::Value| {
        let (latitude, longitude) = (v["latitude"].as_f64()?, v["longitude"].as_f64()?);
        let known = (latitude, longitude) != (0.0, 0.0) && crate::geo::is_valid(latitude, longitude);
        known.then_some((latitude, longitude))
    };
    let people = value["people"].as_array().into_iter().flatten().filter_map(|person| person["name"].as_str());
    Some(TakeoutFacts {
        captions: captions::from_texts(None, value["description"].as_str(), people),
        taken: seconds(&value["photoTakenTime"]),
        place: place(&value["geoData"]).or_else(|| place(&value["geoDataExif"])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_follow_googles_rules() {
        let names = |picture: &str| -> Vec<String> {
            json_names(Path::new(picture)).iter().map(|p| p.to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names("/t/IMG_1.jpg"), ["/t/IMG_1.jpg.supplemental-metadata.json", "/t/IMG_1.jpg.json"]);
        assert_eq!(
            names("/t/PXL_20230715_123456789.PORTRAIT.jpg"),
            ["/t/PXL_20230715_123456789.PORTRAIT.jpg.supplement.json", "/t/PXL_20230715_123456789.PORTRAIT.jpg.json"]
        );
        assert_eq!(
            names("/t/PXL_20230518_175342346.MP.jpg")[0],
            "/t/PXL_20230518_175342346.MP.jpg.supplemental-met.json"
        );
        assert_eq!(names("/t/IMG_2(1).jpg"), ["/t/IMG_2.jpg.supplemental-metadata(1).json", "/t/IMG_2.jpg(1).json"]);
        assert_eq!(names("/t/IMG_3-edited.jpg")[1], "/t/IMG_3.jpg.json");
        for name in names("/t/an_uncommonly_long_name_for_a_picture_from_a_phone.jpeg") {
            assert_eq!(Path::new(&name).file_name().unwrap().to_string_lossy().chars().count(), MAX_NAME_CHARS);
        }
    }

    #[test]
    fn googles_json_gives_description_people_time_and_place() {
        let json = br#"{"title": "IMG_1.jpg", "description": " Grandma turns 90 ",
            "photoTakenTime": {"timestamp": "1689422400", "formatted": "15 Jul 2023, 12:00:00 UTC"},
            "geoData": {"latitude": 0.0, "longitude": 0.0, "altitude": 0.0},
            "geoDataExif": {"latitude": 38.7223, "longitude": -9.1393, "altitude": 0.0},
            "people": [{"name": "Anna Silva"}, {"name": ""}]}"#;
        let facts = parse(json).unwrap();
        assert_eq!(facts.captions.description.as_deref(), Some("Grandma turns 90"));
        assert_eq!(facts.captions.keywords, ["Anna Silva"]);
        assert_eq!(facts.taken, Some(1_689_422_400));
        assert_eq!(facts.place, Some((38.7223, -9.1393)), "0, 0 is no place");
        assert_eq!(parse(br#"{"name": "a package.json"}"#), None);
        assert_eq!(parse(b"not json"), None);
    }
}
