//! The rescue system's shell: [`parse`] turns a command line into a [`parse::List`], and
//! [`Shell`] runs it with bash's semantics for what it supports (exit statuses, `set -e`,
//! `set -o pipefail`, subshells for pipeline elements, `$?`, field splitting of unquoted
//! expansions).

pub mod exec;
pub mod parse;

pub use exec::{Machine, Power, Shell};
pub use parse::{SyntaxError, parse};
