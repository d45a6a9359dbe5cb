//! The query language of the search box and `?q=`: free text for CLIP plus filters.
//!
//! ```text
//! sunset at the beach camera:fuji after:2023-06 type:jpeg "folder:/home/me/Photos/Trips"
//! ```
//!
//! Filters: `path:WORD` (a path segment), `folder:/abs/path` (anywhere below it), `name:WORD`
//! (file name), `camera:WORD` (make or model), `after:DATE` / `before:DATE` (YYYY, YYYY-MM or
//! YYYY-MM-DD; after is inclusive, before exclusive), `type:jpeg|png|...`. Quotes keep spaces.

use crate::ingest::exif::days_from_civil;
pub use crate::store::Filter;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedQuery {
    /// What CLIP embeds (may be empty: then results are listed by date).
    pub text: String,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

pub fn parse(query: &str) -> Result<ParsedQuery, QueryError> {
    let mut parsed = ParsedQuery::default();
    let mut words = Vec::new();
    for token in tokens(query) {
        let Some((key, value)) = token.split_once(':') else {
            words.push(token);
            continue;
        };
        let value = value.trim().to_string();
        let filter = match key.to_ascii_lowercase().as_str() {
            "path" => Filter::Path(value.to_lowercase()),
            "folder" => Filter::Folder(value.trim_end_matches('/').to_string()),
            "name" => Filter::Name(value.to_lowercase()),
            "camera" => Filter::Camera(value.to_lowercase()),
            "type" => Filter::Type(value.to_lowercase().replace("jpg", "jpeg")),
            "after" => Filter::After(parse_date(&value)?),
            "before" => Filter::Before(parse_date(&value)?),
            _ => {
                // Not a filter ("3:45pm", "note: x"): part of the text.
                words.push(token);
                continue;
            }
        };
        if value.is_empty() {
            return Err(QueryError(format!("filter `{key}:` needs a value, e.g. {key}:something")));
        }
        parsed.filters.push(filter);
    }
    parsed.text = words.join(" ");
    Ok(parsed)
}

/// Whitespace-separated tokens; double quotes group words (and are removed).
fn tokens(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in query.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` → Unix seconds at the start of that period.
pub fn parse_date(text: &str) -> Result<i64, QueryError> {
    let bad = || QueryError(format!("`{text}` is not a date: use YYYY, YYYY-MM or YYYY-MM-DD"));
    let parts: Vec<&str> = text.split('-').collect();
    let num = |i: usize, default: i64| -> Result<i64, QueryError> {
        match parts.get(i) {
            Some(p) => p.parse::<i64>().map_err(|_| bad()),
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
    Ok(days_from_civil(y, m, d) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn bad_filters_are_explained() {
        assert!(parse("after:yesterday").unwrap_err().0.contains("YYYY"));
        assert!(parse("camera:").unwrap_err().0.contains("needs a value"));
    }
}
