//! Query strings and pagination for the admin API. Every list takes `?limit=` (default 100, at
//! most 1000) and `?after=<cursor>`, and answers `{"object":"list","data":[…],"has_more":…,
//! "next_after":…}`; pass `next_after` back as `after` for the next page. Cursors are opaque.

use serde_json::{Value, json};
use tollgate_core::ApiError;

use crate::validate::FieldErrors;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A parsed query string: each parameter once, percent-decoded, only the ones the endpoint takes.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw`, refusing (422) parameters not in `allowed`, repeated ones and bad escapes,
    /// so a typo (`?tem=`) is an error rather than a silently unfiltered answer.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut errors = FieldErrors::default();
        let query = Query::parse_into(raw, allowed, &mut errors);
        errors.into_result()?;
        Ok(query)
    }

    /// Like [`Query::parse`], adding each problem to `errors`, so an endpoint can name them
    /// together with the problems of the values.
    pub fn parse_into(raw: Option<&str>, allowed: &[&str], errors: &mut FieldErrors) -> Query {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (percent_decode(name), percent_decode(value)) else {
                errors.push(
                    "query",
                    format!("'{pair}' is not valid percent-encoding of text without NUL"),
                );
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                errors.push(
                    "query",
                    format!(
                        "'{name}' is not a parameter of this endpoint (it takes: {})",
                        if allowed.is_empty() {
                            "none".to_string()
                        } else {
                            allowed.join(", ")
                        }
                    ),
                );
            } else if pairs.iter().any(|(n, _)| *n == name) {
                errors.push("query", format!("'{name}' is given more than once"));
            } else {
                pairs.push((name, value));
            }
        }
        Query { pairs }
    }

    /// A parameter's value. Given but empty (`?team=`) is still given, and checked like any
    /// other value, so what the document calls invalid is never quietly ignored.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit` and `after`, with every problem pushed to `errors`.
    pub fn page(&self, errors: &mut FieldErrors) -> Page {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(
                        "limit",
                        format!("'{text}' is not a whole number from 1 to {MAX_LIMIT}"),
                    );
                    DEFAULT_LIMIT
                }
            },
        };
        Page {
            limit,
            after: self.get("after").map(str::to_string),
        }
    }
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    pub after: Option<String>,
}

impl Page {
    /// The cursor of a SQL-paginated list: 1-19 digits, a point, an id (what [`numbered`]
    /// makes); anything else is a 422 naming `after`. A number past `i64::MAX` means "after
    /// everything", so every cursor of the documented shape is accepted.
    pub fn numbered_cursor(&self) -> Result<Option<(i64, String)>, ApiError> {
        let Some(after) = &self.after else {
            return Ok(None);
        };
        let parsed = after.split_once('.').and_then(|(n, id)| {
            let shaped = (1..=19).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit());
            let n: u128 = n.parse().ok().filter(|_| shaped)?;
            Some((i64::try_from(n).unwrap_or(i64::MAX), id.to_string()))
        });
        if parsed.is_none() {
            let mut errors = FieldErrors::default();
            errors.push("after", "is not a cursor this list gave out (next_after)");
            errors.into_result()?;
        }
        Ok(parsed)
    }

    /// The SQL `LIMIT`: one more than the page, to learn whether there is more.
    pub fn fetch(&self) -> i64 {
        i64::try_from(self.limit + 1).unwrap_or(i64::MAX)
    }
}

/// An order-preserving cursor from a number and an id (`"0000001767225600000.k7x…"`): zero
/// padding to 19 digits (all of `i64::MAX`) makes string order equal number order for the
/// non-negative numbers used here.
pub fn numbered(n: i64, id: &str) -> String {
    format!("{n:019}.{id}")
}

/// One page of a list, ready to render.
#[derive(Debug)]
pub struct Listed<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    pub next_after: Option<String>,
}

impl<T: serde::Serialize> Listed<T> {
    pub fn to_json(&self) -> Value {
        json!({
            "object": "list",
            "data": self.data,
            "has_more": self.has_more,
            "next_after": self.next_after,
        })
    }
}

impl<T> Listed<T> {
    /// From rows fetched with `LIMIT page.fetch()` in cursor order.
    pub fn from_fetched(mut rows: Vec<T>, page: &Page, cursor: impl Fn(&T) -> String) -> Self {
        let has_more = rows.len() > page.limit;
        rows.truncate(page.limit);
        let next_after = if has_more {
            rows.last().map(&cursor)
        } else {
            None
        };
        Listed {
            data: rows,
            has_more,
            next_after,
        }
    }

    /// A page of a whole list held in memory (teams, keys, budgets, rate limits and admin
    /// tokens are small: a control plane has hundreds of them, not millions). Items are ordered
    /// by `cursor`, which must be unique and order-preserving.
    pub fn slice(mut items: Vec<T>, page: &Page, cursor: impl Fn(&T) -> String) -> Self {
        items.sort_by_cached_key(|item| cursor(item));
        let rows: Vec<T> = items
            .into_iter()
            .filter(|item| {
                page.after
                    .as_ref()
                    .is_none_or(|after| cursor(item) > *after)
            })
            .take(page.limit + 1)
            .collect();
        Listed::from_fetched(rows, page, cursor)
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Listed<U> {
        Listed {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
            next_after: self.next_after,
        }
    }
}

/// Decodes `%XX` escapes. A `+` stays a plus, as in the reports' query strings: it is how an
/// RFC 3339 offset is typed into curl. `None` for a malformed escape (which the crate would
/// pass through as text), text that is not UTF-8 once decoded, or a NUL (`%00`): no id, name,
/// cursor or date holds one, and Postgres cannot even compare with one (it would answer an
/// error, not "no such row").
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    let decoded = percent_encoding::percent_decode(bytes).decode_utf8().ok()?;
    (well_formed && !decoded.contains('\0')).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: usize, after: Option<&str>) -> Page {
        Page {
            limit,
            after: after.map(str::to_string),
        }
    }

    #[test]
    fn slices_walk_the_whole_list_once() {
        let items: Vec<i64> = (0..7).rev().collect();
        let key = |n: &i64| numbered(*n, "x");
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let listed = Listed::slice(items.clone(), &page(3, after.as_deref()), key);
            seen.extend(listed.data.iter().copied());
            if !listed.has_more {
                assert_eq!(listed.next_after, None);
                break;
            }
            after = listed.next_after;
        }
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn queries_are_decoded_and_checked() {
        let q = Query::parse(Some("after=a%20b&limit=5"), &["after", "limit"]).unwrap();
        assert_eq!(q.get("after"), Some("a b"));
        let mut errors = FieldErrors::default();
        assert_eq!(q.page(&mut errors).limit, 5);
        assert!(errors.into_result().is_ok());
        for bad in ["nope=1", "limit=1&limit=2", "limit=%zz", "limit=%00"] {
            assert_eq!(
                Query::parse(Some(bad), &["limit"]).unwrap_err().status,
                422,
                "{bad}"
            );
        }
        let q = Query::parse(Some("limit=1001"), &["limit"]).unwrap();
        let mut errors = FieldErrors::default();
        q.page(&mut errors);
        assert!(errors.into_result().is_err());
        assert_eq!(percent_decode("%E2%82%AC").as_deref(), Some("€"));
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("a%00b"), None);
    }
}
