//! How the ledger writer's rows become statement parameters. Each row is written once, through
//! [`Values`]: on SQLite into a multi-row statement's bind list ([`Binds`]); on PostgreSQL into
//! one array literal per column (`{1,NULL,"a\"b"}`, [`Arrays`]), bound as text and cast by a
//! fixed statement (`SELECT … FROM unnest(CAST($1 AS BIGINT[]), …)`), cut into statements of at
//! most [`MESSAGE_BYTES`] of parameters.
//!
//! Why arrays on PostgreSQL: the statement text no longer depends on the batch size, so it is
//! prepared once per connection and reused. Multi-row `VALUES` had a text per size, so it ran
//! unnamed, parsed and planned again for every batch (~14,500 parameters at a time). sqlx's `Any`
//! driver binds no arrays, hence the text literals.
//!
//! Why small messages: sqlx 0.9 does not set TCP_NODELAY (`PgConnectOptions` has no option for it
//! and the socket is out of reach), and over TLS (`sslmode=prefer`, the default, against a server
//! that offers it) a message longer than one TLS record (16 KiB) leaves in several writes. Nagle's
//! algorithm holds the last of them until the server's delayed ACK: on loopback every message of
//! 17 KB to 70 KB took 44 ms instead of 0.1 ms, and larger ones often did; the writer's batches
//! waited on it three or four times each. A message that fits in one record goes out in one
//! write and never waits, so a batch now costs a few more round trips of ~0.1 ms instead.

use sqlx::Any;
use sqlx::any::AnyArguments;

pub(super) type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// Where a row's values go, in column order.
pub(super) trait Values {
    fn int(&mut self, value: impl Into<i64>) -> &mut Self;
    fn text(&mut self, value: &str) -> &mut Self;
    fn null(&mut self) -> &mut Self;

    fn opt_int(&mut self, value: Option<impl Into<i64>>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.null(),
        }
    }

    fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }
}

/// A statement's bind list, for SQLite's multi-row statements.
pub(super) struct Binds<'q>(Option<Query<'q>>);

impl<'q> Binds<'q> {
    pub(super) fn new(query: Query<'q>) -> Binds<'q> {
        Binds(Some(query))
    }

    pub(super) fn into_query(self) -> Option<Query<'q>> {
        self.0
    }

    fn bind(&mut self, bind: impl FnOnce(Query<'q>) -> Query<'q>) -> &mut Self {
        self.0 = self.0.take().map(bind);
        self
    }
}

impl Values for Binds<'_> {
    fn int(&mut self, value: impl Into<i64>) -> &mut Self {
        let value = value.into();
        self.bind(|q| q.bind(value))
    }

    /// `Any` copies a `&str` into a new `String` anyway.
    fn text(&mut self, value: &str) -> &mut Self {
        let value = value.to_owned();
        self.bind(|q| q.bind(value))
    }

    fn null(&mut self) -> &mut Self {
        self.bind(|q| q.bind(None::<i64>))
    }
}

/// Parameter bytes per statement: one TLS record (16,384 bytes of plaintext) less room for the
/// Bind, Execute, Close and Sync framing around them.
pub(super) const MESSAGE_BYTES: usize = 15 * 1024;

/// `SELECT a, b FROM unnest(CAST($first AS T[]), …) … ORDER BY …`: rows from one array parameter
/// per `(name, type)` column, in array order (rollups upsert their keys in order, so that two
/// writers lock the same rows in the same order and wait for each other rather than deadlock).
pub(super) fn unnest(first: usize, columns: &[(&str, &str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("CAST(${} AS {ty}[])", first + i))
        .collect();
    format!(
        "SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS r({names}, ordinal) ORDER BY ordinal",
        names = names.join(", "),
        arrays = arrays.join(", ")
    )
}

/// One statement's worth of rows, as one array literal per column.
pub(super) struct Arrays {
    columns: Vec<String>,
    rows: usize,
    /// The column the next value goes to.
    at: usize,
    /// Lengths before the row being added, to take it back out.
    before: Vec<usize>,
}

impl Arrays {
    pub(super) fn new(columns: usize) -> Arrays {
        Arrays {
            columns: vec![String::from("{"); columns],
            rows: 0,
            at: 0,
            before: Vec::with_capacity(columns),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes the parameters take so far (each closed with `}`).
    pub(super) fn bytes(&self) -> usize {
        self.columns.iter().map(|c| c.len() + 1).sum()
    }

    /// Appends the row `write` produces, unless that would take these arrays past `limit` bytes
    /// while they already hold a row: then it appends nothing and returns false (send what they
    /// hold, and add the row to the next statement). A row alone is always taken.
    pub(super) fn push(&mut self, limit: usize, write: impl Fn(&mut Arrays)) -> bool {
        self.before.clear();
        self.before.extend(self.columns.iter().map(String::len));
        self.at = 0;
        write(self);
        debug_assert_eq!(self.at, self.columns.len(), "a value for every column");
        if self.rows > 0 && self.bytes() > limit {
            for (column, len) in self.columns.iter_mut().zip(&self.before) {
                column.truncate(*len);
            }
            return false;
        }
        self.rows += 1;
        true
    }

    /// The array literals, one per column, leaving these arrays empty.
    pub(super) fn take(&mut self) -> Vec<String> {
        self.rows = 0;
        self.columns
            .iter_mut()
            .map(|column| {
                column.push('}');
                std::mem::replace(column, String::from("{"))
            })
            .collect()
    }

    /// Binds every column in order and leaves these arrays empty.
    pub(super) fn bind<'q>(&mut self, query: Query<'q>) -> Query<'q> {
        self.take()
            .into_iter()
            .fold(query, |query, column| query.bind(column))
    }

    fn next(&mut self) -> &mut String {
        let column = &mut self.columns[self.at];
        self.at += 1;
        if self.rows > 0 {
            column.push(',');
        }
        column
    }
}

impl Values for Arrays {
    fn int(&mut self, value: impl Into<i64>) -> &mut Self {
        let value = value.into();
        let column = self.next();
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(column, format_args!("{value}"));
        self
    }

    /// Quoted, so any text (empty, `NULL`, with commas, braces or spaces) reads back as itself.
    fn text(&mut self, value: &str) -> &mut Self {
        let column = self.next();
        column.reserve(value.len() + 2);
        column.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                column.push('\\');
            }
            column.push(c);
        }
        column.push('"');
        self
    }

    fn null(&mut self) -> &mut Self {
        self.next().push_str("NULL");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(arrays: &Arrays) -> Vec<String> {
        arrays.columns.iter().map(|c| format!("{c}}}")).collect()
    }

    #[test]
    fn columns_are_array_literals_with_every_text_quoted() {
        let mut a = Arrays::new(3);
        assert!(a.is_empty());
        assert!(a.push(usize::MAX, |a| {
            a.int(1)
                .opt_text(Some("say \"hi\" \\ {x}, NULL"))
                .opt_int(None::<i32>);
        }));
        assert!(a.push(usize::MAX, |a| {
            a.int(-7_i16).opt_text(None).opt_int(Some(i64::MAX));
        }));
        assert!(a.push(usize::MAX, |a| {
            a.int(0).text("").int(3);
        }));
        assert_eq!(
            literals(&a),
            [
                "{1,-7,0}",
                r#"{"say \"hi\" \\ {x}, NULL",NULL,""}"#,
                "{NULL,9223372036854775807,3}"
            ]
        );
        assert_eq!(
            a.bytes(),
            literals(&a).iter().map(String::len).sum::<usize>()
        );
    }

    #[test]
    fn a_row_past_the_limit_is_left_for_the_next_statement() {
        let mut a = Arrays::new(2);
        let row = |a: &mut Arrays| {
            a.int(12_345).text("abcdef");
        };
        // Alone, a row is taken whatever its size.
        assert!(a.push(1, row));
        let one = a.bytes();
        assert!(!a.push(one, row));
        assert_eq!(a.bytes(), one, "the refused row left nothing behind");
        assert!(a.push(usize::MAX, row));
        assert_eq!(literals(&a), ["{12345,12345}", r#"{"abcdef","abcdef"}"#]);
    }
}
