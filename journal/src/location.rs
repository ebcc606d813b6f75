//! Where a journal lives: a SQLite file or a PostgreSQL database, parsed from `--journal` /
//! `HK8S_JOURNAL`.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;

/// A journal location: `postgres://…` or `postgresql://…` selects PostgreSQL, anything else is
/// a SQLite path.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (may hold a password: [`fmt::Display`] hides it).
    Postgres(String),
}

impl Location {
    /// Parses a `--journal` value.
    #[must_use]
    pub fn parse(value: &OsStr) -> Location {
        match value.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Location::Postgres(url.to_owned())
            }
            _ => Location::Sqlite(PathBuf::from(value)),
        }
    }
}

/// The URL without its password (`postgres://user:***@host/db`).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((before, _)) => format!("{before}password=***"),
            None => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_postgres_and_the_rest_is_a_path() {
        let pg = Location::parse(OsStr::new("postgres://hk8s@db:5432/hk8s?sslmode=require"));
        assert!(matches!(pg, Location::Postgres(_)));
        assert!(matches!(
            Location::parse(OsStr::new("postgresql://db/x")),
            Location::Postgres(_)
        ));
        assert_eq!(
            Location::parse(OsStr::new("/tmp/journal.db")),
            Location::Sqlite(PathBuf::from("/tmp/journal.db"))
        );
        assert_eq!(
            Location::parse(OsStr::new("postgres.db")),
            Location::Sqlite(PathBuf::from("postgres.db"))
        );
    }

    #[test]
    fn passwords_are_never_displayed() {
        let loc = Location::parse(OsStr::new(
            "postgres://hk8s:s3cret-pw@db:5432/hk8s?sslmode=require&password=other-pw",
        ));
        let shown = format!("{loc} {loc:?}");
        assert!(
            !shown.contains("s3cret-pw") && !shown.contains("other-pw"),
            "{shown}"
        );
        assert!(shown.contains("postgres://hk8s:***@db:5432/hk8s?sslmode=require&password=***"));
    }
}
