//! Where the journal lives by default, computed from values the caller read (the CLI reads
//! the environment; this crate reads none).
//!
//! The state directory is `$HK8S_HOME`, else `$XDG_STATE_HOME/hk8s`, else `~/.local/state/hk8s`.
//! Empty variables count as unset, and a relative `$XDG_STATE_HOME` is ignored, as the XDG base
//! directory specification requires.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::JournalError;

/// File name of the journal inside the state directory.
pub const JOURNAL_FILE: &str = "journal.db";

/// The state directory computed from the given environment values (pure; for tests and the CLI).
///
/// # Errors
/// [`JournalError::NoStateDir`] when none of the three gives a directory.
pub fn state_dir_from(
    hk8s_home: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, JournalError> {
    if let Some(dir) = hk8s_home.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = xdg_state_home
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(dir.join("hk8s"));
    }
    if let Some(home) = home.filter(|v| !v.is_empty()) {
        return Ok(Path::new(&home).join(".local").join("state").join("hk8s"));
    }
    Err(JournalError::NoStateDir)
}

/// The journal path computed from the given environment values (pure; see [`state_dir_from`]).
///
/// # Errors
/// [`JournalError::NoStateDir`] when none of the three gives a directory.
pub fn default_path_from(
    hk8s_home: Option<OsString>,
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, JournalError> {
    state_dir_from(hk8s_home, xdg_state_home, home).map(|dir| dir.join(JOURNAL_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn hk8s_home_wins() {
        let p = default_path_from(os("/h8"), os("/xdg"), os("/home/u")).unwrap();
        assert_eq!(p, PathBuf::from("/h8/journal.db"));
    }

    #[test]
    fn xdg_state_home_is_next() {
        let p = default_path_from(None, os("/xdg"), os("/home/u")).unwrap();
        assert_eq!(p, PathBuf::from("/xdg/hk8s/journal.db"));
        let p = default_path_from(os(""), os("/xdg"), os("/home/u")).unwrap();
        assert_eq!(p, PathBuf::from("/xdg/hk8s/journal.db"));
    }

    #[test]
    fn home_is_the_fallback() {
        let expected = PathBuf::from("/home/u/.local/state/hk8s/journal.db");
        assert_eq!(
            default_path_from(None, None, os("/home/u")).unwrap(),
            expected
        );
        assert_eq!(
            default_path_from(None, os(""), os("/home/u")).unwrap(),
            expected
        );
        // A relative XDG_STATE_HOME is invalid per the XDG spec and ignored.
        assert_eq!(
            default_path_from(None, os("rel/dir"), os("/home/u")).unwrap(),
            expected
        );
    }

    #[test]
    fn state_dir_is_the_parent_of_the_default_path() {
        let dir = state_dir_from(None, os("/xdg"), None).unwrap();
        let path = default_path_from(None, os("/xdg"), None).unwrap();
        assert_eq!(path.parent(), Some(dir.as_path()));
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let err = default_path_from(None, None, None).unwrap_err();
        assert!(matches!(err, JournalError::NoStateDir));
        assert_eq!(
            err.to_string(),
            "cannot find a state directory for the journal: set HK8S_HOME or HOME"
        );
        assert!(default_path_from(os(""), os(""), os("")).is_err());
    }
}
