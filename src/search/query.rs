//! The query language of the search box and `?q=`: free text for CLIP plus filters.
//!
//! ```text
//! sunset at the beach camera:fuji after:2023-06 type:jpeg "folder:/home/me/Photos/Trips"
//! beach -people -"red car" 2:golden retriever
//! ```
//!
//! Filters: `path:WORD` (a path segment), `folder:/abs/path` (anywhere below it), `name:WORD`
//! (file name), `camera:WORD` (make or model), `caption:WORD` (the title or description people
//! wrote), `keyword:WORD` (a keyword or the name of someone in it), `rating:N` (N stars or more),
//! `after:DATE` / `before:DATE` (YYYY, YYYY-MM or
//! YYYY-MM-DD; after is inclusive, before exclusive), `type:jpeg|png|...`, `time:night` (and
//! morning, afternoon, evening) and `hour:22-04` (the hour taken), `near:LAT,LON[,RADIUS]` and
//! `bbox:WEST,SOUTH,EAST,NORTH` (where it was taken, in degrees). Quotes keep spaces.
//!
//! Dates in words ("beach July 2023", "snow in 2019", "last summer": `dates.rs`) become
//! `after:`/`before:` filters unless quoted, and a capitalised city after a preposition ("beach
//! in Lisbon") a `near:` filter. Composed queries: `-word` or `-"a phrase"` moves
//! away from that text; `N:` (a number from 0 to 100, then a letter or a space: `3:45pm` stays
//! text) gives the text after it, up to the next weight, weight N; text before any weight has
//! weight 1.

use super::dates;
use crate::geo::places::{self, NotFound};
use crate::geo::Area;
use crate::ingest::exif::days_from_civil;
use crate::store::words;
pub use crate::store::Filter;

/// Largest weight a part of a query may have.
pub const MAX_WEIGHT: f32 = 100.0;
/// Most texts and pictures one query may look for and move away from together: each is a pass
/// through an encoder.
pub const MAX_PARTS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedQuery {
    /// Every word to look for, in order: what a plain query embeds (may be empty: then results
    /// are listed by date).
    pub text: String,
    /// The same words in weighted parts (`2:golden retriever`).
    pub parts: Vec<(String, f32)>,
    /// Texts to move away from (`-people`, `-"red car"`).
    pub not: Vec<String>,
    pub filters: Vec<Filter>,
    /// A date in words that became `after:`/`before:` filters, as it was read ("July 2023").
    pub when: Option<String>,
    /// The cities named in `near:`, as found ("Paris, France"), with the index of their filter.
    pub places: Vec<(usize, String)>,
}

/// How a query was read, for people (the UI shows it under the search box).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Understood {
    /// What is looked for, with the weights.
    pub looking_for: Vec<WeightedText>,
    /// What the search moves away from.
    pub away_from: Vec<String>,
    /// The filters, written back in the query syntax (dates as YYYY-MM-DD).
    pub filters: Vec<String>,
    /// A date in words read out of the text ("July 2023"); its range is among the filters.
    pub when: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightedText {
    pub text: String,
    pub weight: f32,
}

impl ParsedQuery {
    /// Whether it holds nothing to look for, move away from or filter by (`""`, a lone `"`).
    pub fn asks_nothing(&self) -> bool {
        self.parts.is_empty() && self.not.is_empty() && self.filters.is_empty()
    }

    pub fn understood(&self) -> Understood {
        let date = |secs: i64| super::iso_date(secs)[..10].to_string();
        Understood {
            looking_for: self
                .parts
                .iter()
                .map(|(text, weight)| WeightedText { text: text.clone(), weight: *weight })
                .collect(),
            away_from: self.not.clone(),
            filters: self
                .filters
                .iter()
                .enumerate()
                .map(|(i, filter)| match filter {
                    Filter::Path(v) => format!("path:{v}"),
                    Filter::Folder(v) => format!("folder:{v}"),
                    Filter::Name(v) => format!("name:{v}"),
                    Filter::Camera(v) => format!("camera:{v}"),
                    Filter::Caption(v) if v.contains(' ') => format!("caption:\"{v}\""),
                    Filter::Caption(v) => format!("caption:{v}"),
                    Filter::Keyword(v) if v.contains(' ') => format!("keyword:\"{v}\""),
                    Filter::Keyword(v) => format!("keyword:{v}"),
                    Filter::Rating(stars) => format!("rating:{stars}"),
                    Filter::Type(v) => format!("type:{v}"),
                    Filter::Tag(v) if v.contains(' ') => format!("tag:\"{v}\""),
                    Filter::Tag(v) => format!("tag:{v}"),
                    Filter::After(t) => format!("after:{}", date(*t)),
                    Filter::Before(t) => format!("before:{}", date(*t)),
                    Filter::Hour { from, until } => format!("hour:{from:02}-{:02}", (until + 23) % 24),
                    Filter::Place(Area::Around { latitude, longitude, radius_m }) => {
                        let near = format!("near:{latitude},{longitude},{}", said_distance(*radius_m));
                        match self.places.iter().find(|(filter, _)| *filter == i) {
                            Some((_, city)) => format!("{near} ({city})"),
                            None => near,
                        }
                    }
                    Filter::Place(Area::Box { west, south, east, north }) => {
                        format!("bbox:{west},{south},{east},{north}")
                    }
                })
                .collect(),
            when: self.when.clone(),
        }
    }

    /// One text of weight 1 and nothing to move away from: embedded as it is.
    pub fn is_plain(&self) -> bool {
        self.not.is_empty() && self.parts.len() <= 1 && self.parts.iter().all(|(_, weight)| *weight == 1.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Most words of a text query looked for in what people wrote about the pictures: each costs a
/// filtered search.
const MAX_DESCRIBED_WORDS: usize = 8;

/// The words of a query's text worth finding in captions and keywords (`search::described`):
/// as the filters read words, without English function words and the words people put before
/// what they look for ("a photo of"), each once.
pub fn described_words(text: &str) -> Vec<String> {
    const SKIPPED: &[&str] = &[
        "a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "by", "from", "into", "near",
        "over", "under", "is", "are", "was", "it", "its", "this", "that", "some", "my", "our", "his", "her", "their",
        "photo", "photos", "picture", "pictures", "image", "images", "shot",
    ];
    let mut found: Vec<String> = Vec::new();
    for word in words(text) {
        if !SKIPPED.contains(&word.as_str()) && !found.contains(&word) && found.len() < MAX_DESCRIBED_WORDS {
            found.push(word);
        }
    }
    found
}

/// Reads a query; dates in words ("last summer") count from today.
pub fn parse(query: &str) -> Result<ParsedQuery, QueryError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    parse_on(query, now.div_euclid(86_400))
}

/// What a query's text is made of, before dates are read out of it.
enum Piece {
    /// `token` is its token's place in the query, `gap` the whitespace before that token.
    Word {
        text: String,
        quoted: bool,
        token: usize,
        gap: String,
    },
    Weight(f32),
}

/// [`parse`] with today given (days since 1970-01-01).
pub fn parse_on(query: &str, today: i64) -> Result<ParsedQuery, QueryError> {
    let mut parsed = ParsedQuery::default();
    let mut pieces = Vec::new();
    for (index, Token { text: token, quoted, gap }) in tokens(query).into_iter().enumerate() {
        let word = |text: String| Piece::Word { text, quoted, token: index, gap: gap.clone() };
        if let Some(negative) = token.strip_prefix('-').filter(|rest| !rest.is_empty() && !rest.starts_with('-')) {
            if negative.split_once(':').is_some_and(|(key, _)| FILTER_KEYS.contains(&key.to_ascii_lowercase().as_str()))
            {
                return Err(QueryError(format!(
                    "`{token}`: filters cannot be negated; `-` moves away from a text, e.g. -people"
                )));
            }
            parsed.not.push(negative.trim().to_string());
            continue;
        }
        if let Some((weight, rest)) = weight_marker(&token)? {
            pieces.push(Piece::Weight(weight));
            if !rest.is_empty() {
                pieces.push(word(rest.to_string()));
            }
            continue;
        }
        let Some((key, value)) = token.split_once(':') else {
            pieces.push(word(token));
            continue;
        };
        let value = value.trim().to_string();
        let filter = match key.to_ascii_lowercase().as_str() {
            "path" => Filter::Path(value.to_lowercase()),
            // `folder:/` is the root folder itself: every local path lies below it.
            "folder" => Filter::Folder(match value.trim_end_matches('/') {
                "" if value.starts_with('/') => "/".to_string(),
                folder => folder.to_string(),
            }),
            "name" => Filter::Name(value.to_lowercase()),
            "camera" => Filter::Camera(value.to_lowercase()),
            "caption" => Filter::Caption(value.to_lowercase()),
            "keyword" => Filter::Keyword(value.to_lowercase()),
            "rating" => match value.parse::<i8>() {
                Ok(stars @ 1..=5) => Filter::Rating(stars),
                _ => {
                    return Err(QueryError(format!(
                        "`rating:{value}` is not a number of stars: use rating:1 to rating:5 (that many stars or more)"
                    )))
                }
            },
            "type" => Filter::Type(value.to_lowercase().replace("jpg", "jpeg")),
            // `tag:"golden retriever"` or `tag:golden_retriever`.
            "tag" => Filter::Tag(super::tags::tag_of(&value)),
            "after" => Filter::After(parse_date(&value)?),
            "before" => Filter::Before(parse_date(&value)?),
            "time" => time_of_day(&value)?,
            "hour" => hours(&value)?,
            "near" => {
                let (filter, city) = near(&value)?;
                if let Some(city) = city {
                    parsed.places.push((parsed.filters.len(), city));
                }
                filter
            }
            "bbox" => bounding_box(&value)?,
            _ => {
                // Not a filter ("note: x"): part of the text.
                pieces.push(word(token));
                continue;
            }
        };
        if value.is_empty() {
            return Err(QueryError(format!("filter `{key}:` needs a value, e.g. {key}:something")));
        }
        parsed.filters.push(filter);
    }
    // A date in words becomes a range of the date taken; quoted words never do.
    let word_pieces: Vec<usize> =
        pieces.iter().enumerate().filter(|(_, p)| matches!(p, Piece::Word { .. })).map(|(i, _)| i).collect();
    let lowered: Vec<String> = word_pieces
        .iter()
        .map(|i| match &pieces[*i] {
            Piece::Word { text, quoted: false, .. } => text.trim_end_matches([',', '.', ';', '!', '?']).to_lowercase(),
            _ => String::new(),
        })
        .collect();
    let lowered: Vec<&str> = lowered.iter().map(String::as_str).collect();
    let mut dated = Vec::new();
    if let Some((range, used)) = dates::find(&lowered, today) {
        parsed.filters.push(Filter::After(range.from * 86_400));
        parsed.filters.push(Filter::Before(range.until * 86_400));
        parsed.when = Some(range.said);
        dated = used.into_iter().map(|u| word_pieces[u]).collect();
    }
    // A city in words becomes a place, unless the query already names one.
    let mut read_out = dated;
    if !parsed.filters.iter().any(|f| matches!(f, Filter::Place(_))) {
        if let Some((used, area, city)) = city_in_words(&pieces, &read_out) {
            parsed.places.push((parsed.filters.len(), city));
            parsed.filters.push(Filter::Place(area));
            read_out.extend(used);
        }
    }
    let mut words = Words::default();
    let mut part = Part::default();
    for (i, piece) in pieces.into_iter().enumerate() {
        match piece {
            Piece::Weight(weight) => {
                close_part(&mut parsed, &mut part)?;
                part.weight = weight;
            }
            Piece::Word { text, token, gap, .. } if !read_out.contains(&i) => {
                part.words.push(&text, token, &gap);
                words.push(&text, token, &gap);
            }
            Piece::Word { text, .. } => part.read_out.push(text),
        }
    }
    close_part(&mut parsed, &mut part)?;
    parsed.text = words.joined;
    if parsed.parts.len() + parsed.not.len() > MAX_PARTS {
        return Err(QueryError(format!(
            "{} texts to look for and move away from: a query takes at most {MAX_PARTS}",
            parsed.parts.len() + parsed.not.len()
        )));
    }
    Ok(parsed)
}

/// A query that may hold filters only (one beside a picture or a vector, named `what` in the
/// message): a text in it is refused, never dropped.
pub fn parse_filters_only(query: &str, what: &str) -> Result<ParsedQuery, QueryError> {
    let parsed = parse(query)?;
    let texts: Vec<String> = parsed
        .parts
        .iter()
        .map(|(text, _)| text.clone())
        .chain(parsed.not.iter().map(|text| format!("-{text}")))
        .collect();
    if !texts.is_empty() {
        return Err(QueryError(format!(
            "{what} takes only filters (like type:jpeg), not the text {:?}",
            texts.join(" ")
        )));
    }
    Ok(parsed)
}

/// The words that introduce a place, in the languages of the multilingual models' users.
const PLACE_PREPOSITIONS: &[&str] = &["in", "at", "near", "around", "en", "em", "à", "bei", "nahe"];
/// Words that name a city of the gazetteer (Sunset, Florida; Orange, California) but, after
/// "in" or "at" in a title-case query, mean a time or a colour: "Beach at Sunset", "Trees in
/// Spring", "Dress in Gold". `near:` still finds those cities.
const NOT_PLACES_IN_WORDS: &[&str] = &[
    "sunset", "sunrise", "dawn", "dusk", "noon", "spring", "summer", "autumn", "fall", "winter", "orange", "gold",
    "paradise",
];

/// A city named after a preposition and written as names are, its first and last words
/// capitalised ("beach in Lisbon", "Strand bei München", "praia em Rio de Janeiro"): the pieces
/// it used (the preposition too), its area and the city found. Countries stay text ("in France":
/// the gazetteer knows no borders), and so does anything quoted or lower-case ("a girl in orange").
fn city_in_words(pieces: &[Piece], skip: &[usize]) -> Option<(Vec<usize>, Area, String)> {
    let word = |i: usize| match pieces.get(i)? {
        Piece::Word { text, quoted: false, .. } if !skip.contains(&i) => Some(text.as_str()),
        _ => None,
    };
    let capitalised = |text: &str| text.chars().next().is_some_and(char::is_uppercase);
    for at in 0..pieces.len() {
        if !word(at).is_some_and(|w| PLACE_PREPOSITIONS.contains(&w.to_lowercase().as_str())) {
            continue;
        }
        // The longest name first: "in Rio de Janeiro" before "in Rio".
        for len in (1..=3).rev() {
            let Some(name_words) = (at + 1..at + 1 + len).map(word).collect::<Option<Vec<&str>>>() else { continue };
            let last = name_words[len - 1].trim_end_matches([',', '.', ';', '!', '?']);
            if !capitalised(name_words[0])
                || !capitalised(last)
                || (len > 1 && name_words[..len - 1].iter().any(|w| w.ends_with(',')))
            {
                continue;
            }
            let name = [&name_words[..len - 1], &[last]].concat().join(" ");
            if places::is_country(&name) || NOT_PLACES_IN_WORDS.contains(&name.to_lowercase().as_str()) {
                continue;
            }
            if let Ok(city) = places::find(&name, None) {
                let area =
                    Area::Around { latitude: city.latitude, longitude: city.longitude, radius_m: city.radius_m() };
                return Some(((at..=at + len).collect(), area, city.label()));
            }
        }
    }
    None
}

const FILTER_KEYS: &[&str] = &[
    "path", "folder", "name", "camera", "caption", "keyword", "rating", "type", "tag", "after", "before", "time",
    "hour", "near", "bbox",
];

/// `time:morning` (5–12 h), `afternoon` (12–17), `evening` (17–21), `night` (21–5).
fn time_of_day(value: &str) -> Result<Filter, QueryError> {
    let (from, until) = match value.to_ascii_lowercase().as_str() {
        "morning" => (5, 12),
        "afternoon" => (12, 17),
        "evening" => (17, 21),
        "night" => (21, 5),
        _ => {
            return Err(QueryError(format!(
                "`time:{value}` is not a time of day: use time:morning (5-12 h), afternoon (12-17), evening (17-21) \
                 or night (21-5), or hours such as hour:22-04"
            )))
        }
    };
    Ok(Filter::Hour { from, until })
}

/// `hour:7` (7:00–7:59) or `hour:22-04` (22:00 to 4:59, both hours included).
fn hours(value: &str) -> Result<Filter, QueryError> {
    let hour = |text: &str| text.trim().parse::<u8>().ok().filter(|h| *h < 24);
    let parsed = match value.split_once('-') {
        Some((first, last)) => hour(first).zip(hour(last)),
        None => hour(value).map(|h| (h, h)),
    };
    let (first, last) = parsed.ok_or_else(|| {
        QueryError(format!("`hour:{value}` is not an hour or a range of hours: use e.g. hour:7 or hour:22-04 (0-23)"))
    })?;
    Ok(Filter::Hour { from: first, until: (last + 1) % 24 })
}

/// How far `near:` reaches when the query does not say.
pub const DEFAULT_RADIUS_M: f64 = 1_000.0;
/// Half the Earth's circumference: a radius that holds the whole Earth.
const LARGEST_RADIUS_M: f64 = 20_016_000.0;

/// `near:48.8584,2.2945` (within 1 km), `near:48.8584,2.2945,500m` (`m` or `km`), or a city by
/// name: `near:paris`, `"near:paris, us"`, `near:lisbon,5km` (within a radius that grows with the
/// city, if not given). Returns the filter and, for a city, the city as it was found.
fn near(value: &str) -> Result<(Filter, Option<String>), QueryError> {
    let bad = |why: &str| {
        QueryError(format!(
            "`near:{value}` {why}: use near:LATITUDE,LONGITUDE in degrees (north and east positive) or near:CITY \
             (its name in any language, then its country if need be), optionally with a radius, e.g. \
             near:48.8584,2.2945 (within 1 km), near:-33.857,151.215,500m, near:lisbon or \"near:paris, us, 5km\""
        ))
    };
    let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if let [latitude, longitude, ..] = parts[..] {
        if let (Ok(_), Ok(_)) = (latitude.parse::<f64>(), longitude.parse::<f64>()) {
            let radius = match parts[2..] {
                [] => None,
                [radius] => Some(radius),
                _ => return Err(bad("is not a place")),
            };
            let latitude = degrees(latitude, 90.0).ok_or_else(|| bad("has no latitude between -90 and 90"))?;
            let longitude = degrees(longitude, 180.0).ok_or_else(|| bad("has no longitude between -180 and 180"))?;
            let radius_m = radius.map(|r| distance_m(r).map_err(bad)).transpose()?.unwrap_or(DEFAULT_RADIUS_M);
            return Ok((Filter::Place(Area::Around { latitude, longitude, radius_m }), None));
        }
    }
    // A city: its name, its country if given, a radius if given (a number first).
    let radius = match parts.last() {
        Some(last) if parts.len() > 1 && last.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            let radius = distance_m(last).map_err(bad)?;
            parts.pop();
            Some(radius)
        }
        _ => None,
    };
    let (name, country) = match parts[..] {
        [name] if !name.is_empty() => (name, None),
        [name, country] if !name.is_empty() => (name, Some(country)),
        _ => return Err(bad("is not a place")),
    };
    let city = places::find(name, country).map_err(|not_found| match not_found {
        NotFound::Place => bad(&format!(
            "names no city imgsearch knows (the {} cities of 15,000 people or more in GeoNames, by their names \
             in every language{})",
            places::count(),
            country.map(|c| format!(", in {c}")).unwrap_or_default()
        )),
        NotFound::Country => bad(&format!(
            "names no country: `{}` is neither a country's name nor its ISO code",
            country.unwrap_or_default()
        )),
    })?;
    let area = Area::Around {
        latitude: city.latitude,
        longitude: city.longitude,
        radius_m: radius.unwrap_or_else(|| city.radius_m()),
    };
    Ok((Filter::Place(area), Some(city.label())))
}

/// A radius as people write it: `500m`, `1km`, `2.5km` → metres.
fn distance_m(text: &str) -> Result<f64, &'static str> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len()));
    let scale = match unit.to_ascii_lowercase().as_str() {
        "m" => 1.0,
        "km" => 1_000.0,
        _ => return Err("has a radius without its unit (m or km)"),
    };
    let metres = number.trim().parse::<f64>().ok().map(|n| n * scale);
    metres
        .filter(|r| *r > 0.0 && *r <= LARGEST_RADIUS_M)
        .ok_or("has a radius that is not a distance above 0 and up to 20000km (half the Earth around)")
}

/// `bbox:WEST,SOUTH,EAST,NORTH` in degrees, the order of GeoJSON and STAC; west above east
/// crosses the antimeridian.
fn bounding_box(value: &str) -> Result<Filter, QueryError> {
    let bad = |why: &str| {
        QueryError(format!(
            "`bbox:{value}` {why}: use bbox:WEST,SOUTH,EAST,NORTH in degrees (longitudes -180 to 180, \
             latitudes -90 to 90, south at most north), e.g. bbox:-9.5,38.6,-9.0,38.9"
        ))
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let [west, south, east, north] = parts[..] else { return Err(bad("is not four numbers")) };
    let longitude = |text| degrees(text, 180.0).ok_or_else(|| bad("has a longitude outside -180 to 180"));
    let latitude = |text| degrees(text, 90.0).ok_or_else(|| bad("has a latitude outside -90 to 90"));
    let (west, south, east, north) = (longitude(west)?, latitude(south)?, longitude(east)?, latitude(north)?);
    if south > north {
        return Err(bad("has its south above its north"));
    }
    Ok(Filter::Place(Area::Box { west, south, east, north }))
}

/// A number of degrees from -limit to limit.
fn degrees(text: &str, limit: f64) -> Option<f64> {
    text.parse::<f64>().ok().filter(|d| d.abs() <= limit)
}

/// A radius written back as people write it: `500m`, `1km`, `2.5km`.
fn said_distance(metres: f64) -> String {
    if metres >= 1_000.0 {
        format!("{}km", metres.round() / 1_000.0)
    } else {
        format!("{}m", (metres * 10.0).round() / 10.0)
    }
}

/// `N:rest` with N a weight, where `rest` is empty or starts with something other than a digit
/// (`3:45pm` is a time, not a weight).
fn weight_marker(token: &str) -> Result<Option<(f32, &str)>, QueryError> {
    let Some((number, rest)) = token.split_once(':') else { return Ok(None) };
    if number.is_empty()
        || !number.chars().all(|c| c.is_ascii_digit() || c == '.')
        || rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return Ok(None);
    }
    match number.parse::<f32>() {
        Ok(weight) if weight > 0.0 && weight <= MAX_WEIGHT => Ok(Some((weight, rest.trim()))),
        _ => Err(QueryError(format!(
            "`{number}:` is not a weight: a weight is a number above 0 and at most {MAX_WEIGHT}, e.g. 2:golden retriever"
        ))),
    }
}

/// Words to embed, joined as the query wrote them: SigLIP 2's Gemma tokenizer reads two spaces,
/// a tab or a line break differently from one space, and the reference embeds the text as given.
/// Words that were not side by side (a filter or a date stood between them) are joined by one space.
#[derive(Default)]
struct Words {
    joined: String,
    last_token: Option<usize>,
}

impl Words {
    /// Adds the word of the query's `token`-th token, which followed the one before it after `gap`.
    fn push(&mut self, word: &str, token: usize, gap: &str) {
        if let Some(last) = self.last_token {
            self.joined.push_str(if token == last + 1 { gap } else { " " });
        }
        self.joined.push_str(word);
        self.last_token = Some(token);
    }

    fn is_empty(&self) -> bool {
        self.last_token.is_none()
    }
}

/// The words after a weight, up to the next one.
struct Part {
    words: Words,
    weight: f32,
    /// Words of it read as a date or a place (filters, which take no weight).
    read_out: Vec<String>,
}

impl Default for Part {
    fn default() -> Self {
        Self { words: Words::default(), weight: 1.0, read_out: Vec::new() }
    }
}

/// Ends the part being read: it joins the query's parts (a weight with no text after it is an error).
fn close_part(parsed: &mut ParsedQuery, part: &mut Part) -> Result<(), QueryError> {
    let Part { words, weight, read_out } = std::mem::take(part);
    match (words.is_empty(), weight == 1.0, read_out.is_empty()) {
        (false, _, _) => parsed.parts.push((words.joined, weight)),
        (true, true, _) => {}
        (true, false, true) => {
            return Err(QueryError(format!(
                "the weight {weight}: has no text after it, e.g. {weight}:golden retriever"
            )))
        }
        (true, false, false) => {
            let read = read_out.join(" ");
            return Err(QueryError(format!(
                "the weight {weight}: is followed by {read:?}, which was read as a date or place (a filter, which \
                 takes no weight): weigh a text, e.g. {weight}:beach {read}, or quote the words to keep them text: \
                 {weight}:\"{read}\""
            )));
        }
    }
    Ok(())
}

/// A whitespace-separated piece of a query.
struct Token {
    /// Without its double quotes, which group words.
    text: String,
    /// Whether any of it was quoted.
    quoted: bool,
    /// The whitespace before it.
    gap: String,
}

fn tokens(query: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let (mut current, mut current_quoted, mut gap) = (String::new(), false, String::new());
    let mut quoted = false;
    for c in query.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current_quoted = true;
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(Token { text: std::mem::take(&mut current), quoted: current_quoted, gap });
                    gap = String::new();
                }
                current_quoted = false;
                gap.push(c);
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(Token { text: current, quoted: current_quoted, gap });
    }
    out
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` → Unix seconds at the start of that period.
pub fn parse_date(text: &str) -> Result<i64, QueryError> {
    let bad = || QueryError(format!("`{text}` is not a date: use YYYY, YYYY-MM or YYYY-MM-DD"));
    let parts: Vec<&str> = text.split('-').collect();
    let num = |i: usize, default: i64| -> Result<i64, QueryError> {
        match parts.get(i) {
            // Digits only: Rust's integer parsing would take `+2020`.
            Some(p) if !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad())
            }
            Some(_) => Err(bad()),
            None => Ok(default),
        }
    };
    if parts.is_empty() || parts.len() > 3 {
        return Err(bad());
    }
    let (y, m, d) = (num(0, 1970)?, num(1, 1)?, num(2, 1)?);
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // 2020-02-30 is no day, not 2020-03-01.
    let next_month = if m == 12 { days_from_civil(y + 1, 1, 1) } else { days_from_civil(y, m + 1, 1) };
    if days_from_civil(y, m, 1) + d > next_month {
        return Err(QueryError(format!(
            "`{text}` is not a date: that month has {} days",
            next_month - days_from_civil(y, m, 1)
        )));
    }
    Ok(days_from_civil(y, m, d) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_days_of_their_month() {
        assert_eq!(parse_date("2020-02-29").unwrap(), days_from_civil(2020, 2, 29) * 86_400);
        assert_eq!(parse_date("2020-12-31").unwrap(), days_from_civil(2020, 12, 31) * 86_400);
        for no_day in ["2020-02-30", "2021-02-29", "2020-04-31"] {
            assert!(parse_date(no_day).unwrap_err().0.contains("days"), "{no_day}");
        }
        for not_a_date in ["+2020", "2020-+6", "2020-06- 1", "2020--6", "٢٠٢٠", "02020"] {
            assert!(parse_date(not_a_date).unwrap_err().0.contains("YYYY"), "{not_a_date}");
        }
    }

    #[test]
    fn filters_are_separated_from_free_text() {
        let q =
            parse(r#"sunset beach camera:Fuji after:2023-06 type:jpg "folder:/home/me/My Photos/" at 3:45pm"#).unwrap();
        assert_eq!(q.text, "sunset beach at 3:45pm");
        assert_eq!(
            q.filters,
            vec![
                Filter::Camera("fuji".into()),
                Filter::After(days_from_civil(2023, 6, 1) * 86_400),
                Filter::Type("jpeg".into()),
                Filter::Folder("/home/me/My Photos".into()),
            ]
        );
        // The root folder holds every local path.
        for root in ["folder:/", "folder://"] {
            assert_eq!(parse(root).unwrap().filters, vec![Filter::Folder("/".into())], "{root}");
        }
    }

    #[test]
    fn places_are_read_with_their_radius_and_said_back() {
        let q = parse("sunset near:48.8584,2.2945 bbox:-9.5,38.6,-9.0,38.9 near:-33.857,151.215,2.5km").unwrap();
        assert_eq!(q.text, "sunset");
        assert_eq!(
            q.filters,
            vec![
                Filter::Place(Area::Around { latitude: 48.8584, longitude: 2.2945, radius_m: DEFAULT_RADIUS_M }),
                Filter::Place(Area::Box { west: -9.5, south: 38.6, east: -9.0, north: 38.9 }),
                Filter::Place(Area::Around { latitude: -33.857, longitude: 151.215, radius_m: 2_500.0 }),
            ]
        );
        assert_eq!(
            q.understood().filters,
            ["near:48.8584,2.2945,1km", "bbox:-9.5,38.6,-9,38.9", "near:-33.857,151.215,2.5km"]
        );
        assert_eq!(parse("near:0,0,250m").unwrap().understood().filters, ["near:0,0,250m"]);
        // A city by name: its place, a radius by its size unless given, and what was found.
        let city = parse(r#"beach "near:lisboa, portugal" type:jpeg near:tokyo,2km"#).unwrap();
        assert_eq!(city.text, "beach");
        assert_eq!(
            city.understood().filters,
            [
                "near:38.72509,-9.1498,7.5km (Lisbon, Portugal)",
                "type:jpeg",
                "near:35.6895,139.69171,2km (Tokyo, Japan)"
            ]
        );
        for bad in
            ["near:", "near:1,2,3,4", "near:nan,0", "near:0,inf", "near:0,0,0km", "near:0,0,-5m", "near:0,0,30000km"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_city_after_a_preposition_is_read_as_a_place() {
        let read = |query: &str| {
            let q = parse(query).unwrap();
            let filters = q.understood().filters;
            (q.text, filters)
        };
        let (text, filters) = read("beach in Lisbon");
        assert_eq!((text.as_str(), filters.len()), ("beach", 1));
        assert!(filters[0].ends_with("(Lisbon, Portugal)"), "{filters:?}");
        let (text, filters) = read("Strand bei München, summer 2019");
        assert_eq!(text, "Strand");
        assert!(filters.iter().any(|f| f.ends_with("(Munich, Germany)")), "{filters:?}");
        assert!(filters.iter().any(|f| f == "after:2019-06-01"), "the date is read too: {filters:?}");
        let (text, filters) = read("praia em Rio de Janeiro ao por do sol");
        assert_eq!(text, "praia ao por do sol");
        assert!(filters[0].ends_with("(Rio de Janeiro, Brazil)"), "{filters:?}");
        assert!(read("sunset at Nice").1[0].ends_with("(Nice, France)"));
        // Lower case, quoted, a country, or a place already given: text.
        for query in [
            "a girl in orange",
            r#"a cafe "in Paris""#,
            "vineyards in France",
            "beach in Lisbon near:0,0",
            "Beach at Sunset",
        ] {
            let q = parse(query).unwrap();
            assert!(q.places.is_empty() && (q.text.contains(" in ") || q.text.contains(" at ")), "{query}: {q:?}");
        }
    }

    #[test]
    fn negatives_and_weights_make_a_composed_query() {
        let q = parse(r#"beach -people 2:golden retriever -"red car" 0.5:at night type:png"#).unwrap();
        assert_eq!(q.text, "beach golden retriever at night");
        assert_eq!(q.parts, vec![("beach".into(), 1.0), ("golden retriever".into(), 2.0), ("at night".into(), 0.5)]);
        assert_eq!(q.not, vec!["people".to_string(), "red car".to_string()]);
        assert_eq!(q.filters, vec![Filter::Type("png".into())]);
        assert!(!q.is_plain());
        let understood = serde_json::to_value(q.understood()).unwrap();
        assert_eq!(
            understood,
            serde_json::json!({
                "looking_for": [{"text": "beach", "weight": 1.0}, {"text": "golden retriever", "weight": 2.0},
                                {"text": "at night", "weight": 0.5}],
                "away_from": ["people", "red car"],
                "filters": ["type:png"],
                "when": null,
            })
        );
        assert_eq!(
            parse("after:2023-06 before:2024").unwrap().understood().filters,
            ["after:2023-06-01", "before:2024-01-01"]
        );
        // A weight may stand alone before its text.
        assert_eq!(parse("3: snow dog").unwrap().parts, vec![("snow dog".into(), 3.0)]);
        // Every text is a pass through the encoder: a query holds at most MAX_PARTS.
        let many: String = (0..MAX_PARTS).map(|i| format!("-w{i} ")).collect();
        assert_eq!(parse(&many).unwrap().not.len(), MAX_PARTS);
        let error = parse(&format!("{many} cat")).unwrap_err().0;
        assert!(error.contains("65 texts") && error.contains("at most 64"), "{error}");
    }

    #[test]
    fn a_weight_before_a_date_or_place_says_what_took_its_text() {
        let today = days_from_civil(2026, 12, 2);
        assert!(parse_on("2:", today).unwrap_err().0.contains("has no text after it"));
        let error = parse_on("beach 2:July 2023", today).unwrap_err().0;
        assert!(error.contains("\"July 2023\", which was read as a date or place"), "{error}");
        assert!(error.contains("2:\"July 2023\""), "{error}");
        // Quoted as the message says, it is text.
        assert_eq!(parse_on("beach 2:\"July 2023\"", today).unwrap().parts[1], ("July 2023".into(), 2.0));
    }

    #[test]
    fn beside_a_picture_or_vector_a_query_holds_filters_only() {
        assert_eq!(parse_filters_only("type:png", "q").unwrap().filters, vec![Filter::Type("png".into())]);
        for text in ["cat type:png", "-people", "2:beach"] {
            let error = parse_filters_only(text, "`q` of a search by vector").unwrap_err().0;
            assert!(error.starts_with("`q` of a search by vector takes only filters"), "{text}: {error}");
        }
    }

    #[test]
    fn a_date_in_words_becomes_a_range_and_leaves_the_text() {
        let today = days_from_civil(2026, 12, 2);
        let q = parse_on("beach, July 2023 type:png", today).unwrap();
        assert_eq!(q.text, "beach,");
        let (from, until) = (days_from_civil(2023, 7, 1) * 86_400, days_from_civil(2023, 8, 1) * 86_400);
        assert_eq!(q.filters, vec![Filter::Type("png".into()), Filter::After(from), Filter::Before(until)]);
        assert_eq!(q.understood().when.as_deref(), Some("July 2023"));
        assert!(q.is_plain());
        // Across a weight and around a negative; the text keeps its weights.
        let q = parse_on("2:snow -people in 2019", today).unwrap();
        assert_eq!((q.parts, q.not), (vec![("snow".to_string(), 2.0)], vec!["people".to_string()]));
        assert_eq!(q.when.as_deref(), Some("2019"));
        // Quoted, it is text.
        let q = parse_on(r#"orwell "1984""#, today).unwrap();
        assert_eq!((q.text.as_str(), q.when), ("orwell 1984", None));
        assert!(q.filters.is_empty());
    }

    #[test]
    fn the_text_keeps_the_whitespace_written_between_its_words() {
        // SigLIP 2's tokenizer reads these apart, as the reference does given the same text.
        let q = parse("  a  photo\tof\na \"red   car\"  ").unwrap();
        assert_eq!(q.text, "a  photo\tof\na red   car");
        assert_eq!(q.parts, vec![("a  photo\tof\na red   car".to_string(), 1.0)]);
        // Where a filter or a date stood between words, one space joins them.
        let today = days_from_civil(2026, 12, 2);
        let q = parse_on("beach  type:png   at\tdusk  2:dog\t\tpark  in 2019  snow", today).unwrap();
        assert_eq!(q.text, "beach at\tdusk  dog\t\tpark snow");
        assert_eq!(q.parts, vec![("beach at\tdusk".to_string(), 1.0), ("dog\t\tpark snow".to_string(), 2.0)]);
    }

    #[test]
    fn what_looks_almost_like_syntax_stays_text() {
        for plain in ["meet at 3:45pm", "x-ray of a hand", "a - b", "--verbose cat", "note: bring cake"] {
            let q = parse(plain).unwrap();
            assert!(q.is_plain() && q.not.is_empty(), "{plain}: {q:?}");
            assert_eq!(q.text, plain.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        assert!(parse("1:sunset").unwrap().is_plain(), "weight 1 is the plain query");
    }

    #[test]
    fn bad_composed_queries_are_explained() {
        assert!(parse("0:beach").unwrap_err().0.contains("above 0"));
        assert!(parse("500:beach").unwrap_err().0.contains("at most"));
        assert!(parse("beach 2:").unwrap_err().0.contains("no text after it"));
        assert!(parse("beach -type:png").unwrap_err().0.contains("cannot be negated"));
    }

    #[test]
    fn times_of_day_and_hours_are_filters() {
        let q = parse("fireworks time:night").unwrap();
        assert_eq!((q.text.as_str(), &q.filters[..]), ("fireworks", &[Filter::Hour { from: 21, until: 5 }][..]));
        assert_eq!(q.understood().filters, ["hour:21-04"]);
        assert_eq!(parse("hour:22-04").unwrap().filters, [Filter::Hour { from: 22, until: 5 }]);
        assert_eq!(parse("hour:7").unwrap().filters, [Filter::Hour { from: 7, until: 8 }]);
        assert_eq!(parse("hour:0-23").unwrap().filters, [Filter::Hour { from: 0, until: 0 }]);
        assert_eq!(parse("Time:Morning").unwrap().filters, [Filter::Hour { from: 5, until: 12 }]);
        assert!(parse("time:noonish").unwrap_err().0.contains("time of day"));
        assert!(parse("hour:25").unwrap_err().0.contains("0-23"));
        assert!(parse("hour:7-x").unwrap_err().0.contains("0-23"));
    }

    #[test]
    fn bad_filters_are_explained() {
        assert!(parse("after:yesterday").unwrap_err().0.contains("YYYY"));
        assert!(parse("camera:").unwrap_err().0.contains("needs a value"));
    }
}
