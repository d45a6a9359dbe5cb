//! Dates in plain words, read out of a query's text as a range of the date taken: "beach July
//! 2023", "snow in 2019", "christmas 2021", "last summer", "yesterday". English only; the
//! forms are listed in README. The first date expression of a query is read; the rest of the
//! text goes to the model.

use crate::ingest::exif::{civil_from_days, days_from_civil};

/// A range of days (since 1970-01-01): `from` inclusive, `until` exclusive, and how it was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRange {
    pub from: i64,
    pub until: i64,
    pub said: String,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
/// Words that may come before a date expression and belong to it ("snow in 2019").
const PREPOSITIONS: [&str; 4] = ["in", "during", "from", "on"];

fn month(word: &str) -> Option<i64> {
    // Full names, and three-letter abbreviations but "may" only in full (and "mar"/"jun"... as is).
    MONTHS
        .iter()
        .position(|m| *m == word || (word.len() == 3 && m.starts_with(word) && word != "may"))
        .map(|i| i as i64 + 1)
}

fn year(word: &str) -> Option<i64> {
    (word.len() == 4 && word.bytes().all(|b| b.is_ascii_digit()))
        .then(|| word.parse::<i64>().ok())
        .flatten()
        .filter(|y| (1900..=2100).contains(y))
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// The first day of month `m` of year `y` (months past 12 roll into the next year).
fn month_start(y: i64, m: i64) -> i64 {
    days_from_civil(y + (m - 1).div_euclid(12), (m - 1).rem_euclid(12) + 1, 1)
}

/// Meteorological seasons: spring March–May, summer June–August, autumn September–November,
/// winter December to February, named by the year of its December.
fn season(word: &str) -> Option<(&'static str, i64)> {
    match word {
        "spring" => Some(("spring", 3)),
        "summer" => Some(("summer", 6)),
        "autumn" | "fall" => Some(("autumn", 9)),
        "winter" => Some(("winter", 12)),
        _ => None,
    }
}

fn season_range(name: &str, first_month: i64, y: i64) -> DateRange {
    let from = month_start(y, first_month);
    let said = if first_month == 12 { format!("winter {y}/{}", y + 1) } else { format!("{name} {y}") };
    DateRange { from, until: month_start(y, first_month + 3), said }
}

/// Holidays by their words (one to three), as (first day, days long) in year `y`.
fn holiday(words: &[&str], y: i64) -> Option<(usize, DateRange)> {
    let day = |m, d| days_from_civil(y, m, d);
    let (length, from, days, said) = match words {
        ["christmas", "eve", ..] => (2, day(12, 24), 1, "Christmas Eve"),
        ["new", "year's" | "years", "eve", ..] => (3, day(12, 31), 2, "New Year's Eve"),
        ["christmas" | "xmas", ..] => (1, day(12, 24), 3, "Christmas"),
        ["halloween", ..] => (1, day(10, 31), 1, "Halloween"),
        ["valentine's" | "valentines", "day", ..] => (2, day(2, 14), 1, "Valentine's Day"),
        _ => return None,
    };
    Some((length, DateRange { from, until: from + days, said: format!("{said} {y}") }))
}

/// A date expression starting at `words[0]` (lowercase, without trailing punctuation): how many
/// words it takes and its range. `last` says whether these words end the text; `prepositioned`
/// whether "in"/"during"/... came before them.
fn expression(words: &[&str], today: i64, last: bool, prepositioned: bool) -> Option<(usize, DateRange)> {
    let (ty, tm, _) = civil_from_days(today);
    let next_year = words.get(1).and_then(|w| year(w));
    if let (Some(m), Some(y)) = (month(words[0]), next_year) {
        let said = format!("{} {y}", capitalised(MONTHS[m as usize - 1]));
        return Some((2, DateRange { from: month_start(y, m), until: month_start(y, m + 1), said }));
    }
    if let (Some((name, first)), Some(y)) = (season(words[0]), next_year) {
        return Some((2, season_range(name, first, y)));
    }
    // A holiday needs its year: "christmas" alone is also a theme.
    for take in 1..=3 {
        if let Some(y) = words.get(take).and_then(|w| year(w)) {
            if let Some((length, range)) = holiday(&words[..take], y).filter(|(length, _)| *length == take) {
                return Some((length + 1, range));
            }
        }
    }
    let day = |from: i64, days: i64, said: &str| DateRange { from, until: from + days, said: said.to_string() };
    match words {
        ["today", ..] => return Some((1, day(today, 1, "today"))),
        ["yesterday", ..] => return Some((1, day(today - 1, 1, "yesterday"))),
        [which @ ("last" | "this"), unit, ..] => {
            let back = i64::from(*which == "last");
            let range = match *unit {
                "week" => {
                    let monday = today - (today + 3).rem_euclid(7);
                    day(monday - 7 * back, 7, &format!("{which} week"))
                }
                "month" => DateRange {
                    from: month_start(ty, tm - back),
                    until: month_start(ty, tm - back + 1),
                    said: format!("{which} month"),
                },
                "year" => DateRange {
                    from: days_from_civil(ty - back, 1, 1),
                    until: days_from_civil(ty - back + 1, 1, 1),
                    said: format!("{which} year ({})", ty - back),
                },
                other => {
                    let (name, first) = season(other)?;
                    // "this": the one of this year (winter: the one that began last December
                    // until March); "last": the latest one over before today.
                    let mut y = if first == 12 && tm < 3 { ty - 1 } else { ty };
                    if back == 1 {
                        while month_start(y, first + 3) > today {
                            y -= 1;
                        }
                    }
                    let mut range = season_range(name, first, y);
                    range.said = format!("{which} {name} ({})", range.said);
                    range
                }
            };
            return Some((2, range));
        }
        _ => {}
    }
    // A year alone: after "in"/"during"/..., or as the last word ("beach 2019"); elsewhere
    // ("2019 toyota corolla") it stays text.
    let y = year(words[0]).filter(|_| prepositioned || (last && words.len() == 1))?;
    Some((1, DateRange { from: days_from_civil(y, 1, 1), until: days_from_civil(y + 1, 1, 1), said: y.to_string() }))
}

/// The first date expression among `words` (lowercase, without trailing punctuation; an empty
/// word never belongs to one): its range, and the indexes of the words it took (a preposition
/// before it included).
pub fn find(words: &[&str], today: i64) -> Option<(DateRange, Vec<usize>)> {
    for start in 0..words.len() {
        if words[start].is_empty() {
            continue;
        }
        let prepositioned = start > 0 && PREPOSITIONS.contains(&words[start - 1]);
        let end = words[start..].iter().position(|w| w.is_empty()).map_or(words.len(), |p| start + p);
        let rest = &words[start..end];
        if let Some((length, range)) = expression(rest, today, end == words.len(), prepositioned) {
            let first = if prepositioned { start - 1 } else { start };
            return Some((range, (first..start + length).collect()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02, a Wednesday.
    const TODAY: i64 = 20_789;

    fn read(text: &str) -> Option<(String, String, String, Vec<usize>)> {
        let words: Vec<&str> = text.split_whitespace().collect();
        find(&words, TODAY).map(|(r, used)| {
            let date = |d: i64| {
                let (y, m, d) = civil_from_days(d);
                format!("{y:04}-{m:02}-{d:02}")
            };
            (date(r.from), date(r.until), r.said, used)
        })
    }

    #[test]
    fn today_is_what_the_tests_think() {
        assert_eq!(civil_from_days(TODAY), (2026, 12, 2));
        assert_eq!((TODAY + 3).rem_euclid(7), 2, "a Wednesday");
    }

    #[test]
    fn dates_in_words_become_ranges() {
        let cases = [
            ("beach july 2023", "2023-07-01", "2023-08-01", "July 2023", vec![1, 2]),
            ("beach jul 2023", "2023-07-01", "2023-08-01", "July 2023", vec![1, 2]),
            ("snow in 2019", "2019-01-01", "2020-01-01", "2019", vec![1, 2]),
            ("beach 2019", "2019-01-01", "2020-01-01", "2019", vec![1]),
            ("christmas 2021", "2021-12-24", "2021-12-27", "Christmas 2021", vec![0, 1]),
            ("tree on christmas eve 2021", "2021-12-24", "2021-12-25", "Christmas Eve 2021", vec![1, 2, 3, 4]),
            ("fireworks new year's eve 2019", "2019-12-31", "2020-01-02", "New Year's Eve 2019", vec![1, 2, 3, 4]),
            ("summer 2022 lake", "2022-06-01", "2022-09-01", "summer 2022", vec![0, 1]),
            ("snow winter 2022", "2022-12-01", "2023-03-01", "winter 2022/2023", vec![1, 2]),
            ("last summer", "2026-06-01", "2026-09-01", "last summer (summer 2026)", vec![0, 1]),
            ("last winter", "2025-12-01", "2026-03-01", "last winter (winter 2025/2026)", vec![0, 1]),
            ("this winter", "2026-12-01", "2027-03-01", "this winter (winter 2026/2027)", vec![0, 1]),
            ("dog yesterday", "2026-12-01", "2026-12-02", "yesterday", vec![1]),
            ("today", "2026-12-02", "2026-12-03", "today", vec![0]),
            ("last week", "2026-11-23", "2026-11-30", "last week", vec![0, 1]),
            ("this week", "2026-11-30", "2026-12-07", "this week", vec![0, 1]),
            ("last month", "2026-11-01", "2026-12-01", "last month", vec![0, 1]),
            ("this month", "2026-12-01", "2027-01-01", "this month", vec![0, 1]),
            ("cake last year", "2025-01-01", "2026-01-01", "last year (2025)", vec![1, 2]),
            ("march 2020 lockdown", "2020-03-01", "2020-04-01", "March 2020", vec![0, 1]),
            ("may 2018", "2018-05-01", "2018-06-01", "May 2018", vec![0, 1]),
        ];
        for (text, from, until, said, used) in cases {
            assert_eq!(read(text), Some((from.to_string(), until.to_string(), said.to_string(), used)), "{text}");
        }
    }

    #[test]
    fn what_only_looks_like_a_date_stays_text() {
        for text in [
            "route 66",
            "may flowers",
            "march of the penguins",
            "2019 toyota corolla",
            "summer dress",
            "the last supper",
            "christmas tree",
            "halloween costume",
            "in 3000 years",
            "1850 daguerreotype style",
            "a 12345 sign",
            "",
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }
}
