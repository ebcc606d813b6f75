//! The state folder and the default journal path, from the environment: `$HK8S_HOME`, else
//! `$XDG_STATE_HOME/hk8s`, else `~/.local/state/hk8s` (the rules live in
//! `hk8s_journal::state_dir_from`; only the CLI reads the environment).

use std::path::PathBuf;

use hk8s_journal::JournalError;

/// The state folder: holds the journal and `clusters/<name>/`.
///
/// # Errors
/// [`JournalError::NoStateDir`] when none of `HK8S_HOME`, `XDG_STATE_HOME`, `HOME` is set.
pub fn state_dir() -> Result<PathBuf, JournalError> {
    hk8s_journal::state_dir_from(
        std::env::var_os("HK8S_HOME"),
        std::env::var_os("XDG_STATE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// The journal used when neither `--journal` nor `HK8S_JOURNAL` names one.
///
/// # Errors
/// As [`state_dir`].
pub fn default_journal_path() -> Result<PathBuf, JournalError> {
    state_dir().map(|dir| dir.join(hk8s_journal::JOURNAL_FILE))
}
