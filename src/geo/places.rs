//! The gazetteer `near:PLACE` reads: the cities of 15,000 people or more (GeoNames' cities15000,
//! CC BY 4.0, https://www.geonames.org), by their names in every language GeoNames has, and the
//! countries. Built by `scripts/make_places.py` into `places.tsv.gz` (its format is described
//! there) and kept in the binary; unpacked on the first lookup (5.5 MB) and scanned per lookup
//! (a few milliseconds) rather than held in a map of half a million names.

use std::sync::OnceLock;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

const PLACES_GZ: &[u8] = include_bytes!("places.tsv.gz");

/// A city of the gazetteer.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub name: String,
    /// Its country's name.
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub population: u64,
}

impl Place {
    /// "Lisbon, Portugal".
    pub fn label(&self) -> String {
        format!("{}, {}", self.name, self.country)
    }

    /// How far `near:` reaches around a city when the query does not say: from 3 km for a
    /// town to 30 km for the largest cities (2 km × the cube root of its population in tens of
    /// thousands: Paris 12 km, London 19 km).
    pub fn radius_m(&self) -> f64 {
        let radius = (2_000.0 * (self.population as f64 / 10_000.0).cbrt()).clamp(3_000.0, 30_000.0);
        (radius / 100.0).round() * 100.0
    }
}

/// Why a place was not found.
#[derive(Debug, Clone, PartialEq)]
pub enum NotFound {
    /// No city has that name (in that country).
    Place,
    /// No country has that name or ISO code.
    Country,
}

fn gazetteer() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(PLACES_GZ), &mut text)
            .expect("the built-in gazetteer is valid gzip");
        text
    })
}

/// How far from a city a place is still named after it.
pub const NAMED_WITHIN_M: f64 = 50_000.0;

/// What a picture's place is called ("Lisbon, Portugal"): the most populous city whose reach
/// ([`Place::radius_m`]) holds it, so that a picture named after a city is one `near:CITY`
/// finds; else the nearest city within [`NAMED_WITHIN_M`]. One scan of the gazetteer.
pub fn name_of(latitude: f64, longitude: f64) -> Option<Place> {
    // A degree of latitude is 111 km: cities further north or south are not looked at further.
    let band = NAMED_WITHIN_M / 111_000.0 + 0.01;
    let mut nearest: Option<(f64, Place)> = None;
    // Most populous first: the first city that reaches the place is the answer.
    for line in gazetteer().lines() {
        let Some(city) = line.strip_prefix("place\t").and_then(place_near(latitude, band)) else { continue };
        let distance = super::distance_m((latitude, longitude), (city.latitude, city.longitude));
        if distance <= city.radius_m() {
            return Some(city);
        }
        if distance <= NAMED_WITHIN_M && nearest.as_ref().is_none_or(|(d, _)| distance < *d) {
            nearest = Some((distance, city));
        }
    }
    nearest.map(|(_, city)| city)
}

/// A `place` line's city, if it lies within `band` degrees of `latitude` (the others are not
/// parsed further).
fn place_near(latitude: f64, band: f64) -> impl Fn(&str) -> Option<Place> {
    move |fields| {
        let lat: f64 = fields.split('\t').nth(2)?.parse().ok()?;
        if (lat - latitude).abs() > band {
            return None;
        }
        place(fields)
    }
}

/// How many cities the gazetteer holds.
pub fn count() -> usize {
    gazetteer().lines().filter(|line| line.starts_with("place\t")).count()
}

/// A name as the gazetteer compares names: compatibility decomposition, no combining marks,
/// lower case, spaces collapsed ("São Paulo", "sao  paulo" and "SAO PAULO" are one name).
pub fn fold(name: &str) -> String {
    if name.is_ascii() {
        // Most names: nothing to decompose (and every lookup folds every city's name).
        return name.split_ascii_whitespace().map(str::to_ascii_lowercase).collect::<Vec<_>>().join(" ");
    }
    let bare: String = name.nfkd().filter(|c| canonical_combining_class(*c) == 0).collect::<String>().to_lowercase();
    bare.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The city called `name` (in any language), in `country` (an ISO code or an English name) if
/// given. A city whose own name it is comes before one it is another name of, then the most
/// populous ("Paris" is the French one; in the United States, the one in Texas).
pub fn find(name: &str, country: Option<&str>) -> Result<Place, NotFound> {
    let name = fold(name);
    let country = match country {
        Some(country) => Some(country_code(country).ok_or(NotFound::Country)?),
        None => None,
    };
    let mut by_other_name = None;
    // Places come most populous first, so the first match of each kind is the largest.
    for line in gazetteer().lines() {
        let Some(fields) = line.strip_prefix("place\t") else { continue };
        let [own, code, _, _, _, others] = fields.splitn(6, '\t').collect::<Vec<_>>()[..] else { continue };
        if country.as_ref().is_some_and(|c| c != code) {
            continue;
        }
        if fold(own) == name {
            return place(fields).ok_or(NotFound::Place);
        }
        if by_other_name.is_none() && others.split('|').any(|other| other == name) {
            by_other_name = Some(fields);
        }
    }
    by_other_name.and_then(place).ok_or(NotFound::Place)
}

/// Whether a name is a country's (its English name or ISO code).
pub fn is_country(name: &str) -> bool {
    country_code(name).is_some()
}

/// The ISO code of a country given by its code or English name (and "UK", "USA").
fn country_code(country: &str) -> Option<String> {
    let wanted = fold(country);
    let wanted = match wanted.as_str() {
        "uk" | "england" | "scotland" | "wales" | "great britain" => "gb".to_string(),
        "usa" | "united states of america" | "america" => "us".to_string(),
        _ => wanted,
    };
    gazetteer()
        .lines()
        .filter_map(|line| line.strip_prefix("country\t")?.split_once('\t'))
        .find_map(|(code, name)| (code.eq_ignore_ascii_case(&wanted) || fold(name) == wanted).then(|| code.to_string()))
}

fn country_name(code: &str) -> String {
    let prefix = format!("country\t{code}\t");
    gazetteer().lines().find_map(|line| line.strip_prefix(&prefix)).unwrap_or(code).to_string()
}

/// A `place` line's fields (after `place\t`) as a Place.
fn place(fields: &str) -> Option<Place> {
    let [name, code, latitude, longitude, population, _] = fields.splitn(6, '\t').collect::<Vec<_>>()[..] else {
        return None;
    };
    Some(Place {
        name: name.to_string(),
        country: country_name(code),
        latitude: latitude.parse().ok()?,
        longitude: longitude.parse().ok()?,
        population: population.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cities_are_found_by_their_names_in_any_language_the_largest_first() {
        let paris = find("Paris", None).unwrap();
        assert_eq!((paris.name.as_str(), paris.country.as_str()), ("Paris", "France"));
        assert!(super::super::distance_m((paris.latitude, paris.longitude), (48.8566, 2.3522)) < 2_000.0);
        assert_eq!(find("paris", Some("us")).unwrap().country, "United States");
        assert_eq!(find("Paris", Some("United States")).unwrap().country, "United States");
        for (name, own) in
            [("München", "Munich"), ("munchen", "Munich"), ("Cologne", "Köln"), ("koln", "Köln"), ("東京", "Tokyo")]
        {
            assert_eq!(find(name, None).unwrap().name, own, "{name}");
        }
        assert_eq!(find("São  Paulo", None).unwrap().country, "Brazil");
        assert_eq!(find("london", None).unwrap().country, "United Kingdom");
        assert_eq!(find("london", Some("canada")).unwrap().country, "Canada");
        assert_eq!(find("Narnia", None), Err(NotFound::Place));
        assert_eq!(find("Paris", Some("Atlantis")), Err(NotFound::Country));
        assert_eq!(find("Lisbon", Some("Japan")), Err(NotFound::Place));
    }

    #[test]
    fn names_fold_alike_in_ascii_and_beyond() {
        assert_eq!(fold("  New   YORK "), "new york");
        assert_eq!(fold("São Paulo"), "sao paulo");
        assert_eq!(fold("ＴＯＫＹＯ"), "tokyo"); // full-width letters decompose to ASCII
    }

    #[test]
    fn a_place_is_named_by_the_largest_city_reaching_it_else_the_nearest() {
        // Belém tower: within Lisbon's reach (7.5 km), though Algés is nearer.
        assert_eq!(name_of(38.6916, -9.2160).map(|p| p.name), Some("Lisbon".into()));
        assert_eq!(name_of(48.8584, 2.2945).map(|p| p.name), Some("Paris".into()));
        // Out in the Alentejo plain, 30 km from the nearest town of 15,000 people.
        assert_eq!(name_of(38.25, -7.75).map(|p| p.name), Some("Beja".into()));
        assert_eq!(name_of(30.0, -40.0), None, "the middle of the Atlantic");
    }

    #[test]
    fn a_city_reaches_further_the_larger_it_is() {
        let radius_km = |name| find(name, None).unwrap().radius_m() / 1_000.0;
        assert!((11.0..14.0).contains(&radius_km("Paris")), "{}", radius_km("Paris"));
        assert!(radius_km("Tokyo") > radius_km("Paris") && radius_km("Tokyo") <= 30.0);
        let town = Place { name: "x".into(), country: "y".into(), latitude: 0.0, longitude: 0.0, population: 15_000 };
        assert_eq!(town.radius_m(), 3_000.0);
    }
}
