//! Rules over the Rust sources: a `//!` line opens every file, and only `cli/` reads
//! environment variables.
//!
//! Test code is exempt from the environment rule: items under `#[cfg(test)]`, files declared
//! as `#[cfg(test)] mod …;`, and every file outside a `src/` folder (integration tests,
//! benches), as well as the test-support crates (`testkit`, `tests`, `tidy`).

use std::path::{Path, PathBuf};

use crate::Violation;

/// One Rust source file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Repository-relative path with `/` separators.
    pub path: String,
    /// The file's text.
    pub text: String,
}

/// Every `.rs` file under `root`, skipping `target/` and hidden folders, sorted by path.
pub fn collect(root: &Path) -> std::io::Result<Vec<Source>> {
    let mut files = Vec::new();
    walk(root, root, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if name.starts_with('.') || name == "target" {
                continue;
            }
            walk(root, &path, out)?;
        } else if name.ends_with(".rs") {
            out.push(Source {
                path: relative(root, &path),
                text: std::fs::read_to_string(&path)?,
            });
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(PathBuf::from)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every file's first non-blank line is a `//!` doc line.
pub fn check_module_docs(sources: &[Source]) -> Vec<Violation> {
    sources
        .iter()
        .filter(|source| {
            let first = source.text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.trim_start().starts_with("//!"))
        })
        .map(|source| {
            Violation::new(
                &source.path,
                "every file opens with a //! line saying what it holds",
            )
        })
        .collect()
}

/// Folders whose code may read environment variables.
const ENVIRONMENT_READERS: &[&str] = &["cli/", "testkit/", "tests/", "tidy/"];

/// Calls that read (or change) environment variables.
const ENVIRONMENT_CALLS: &[&str] = &["env::var(", "env::var_os(", "env::vars(", "env::set_var("];

/// Only `cli/` reads environment variables (non-test code under `src/` of every other crate).
pub fn check_environment(sources: &[Source]) -> Vec<Violation> {
    let test_files = test_only_files(sources);
    let mut out = Vec::new();
    for source in sources {
        let exempt = ENVIRONMENT_READERS
            .iter()
            .any(|prefix| source.path.starts_with(prefix))
            || !source.path.contains("/src/")
            || test_files.contains(&source.path);
        if exempt {
            continue;
        }
        let code = non_test_code(&source.text);
        for (number, line) in code.lines().enumerate() {
            if ENVIRONMENT_CALLS.iter().any(|call| line.contains(call)) {
                out.push(Violation::new(
                    format!("{}:{}", source.path, number + 1),
                    "only cli/ reads environment variables; pass the value in from the CLI",
                ));
            }
        }
    }
    out
}

/// Files that exist only for tests: declared with `#[cfg(test)] mod name;` by their parent.
pub fn test_only_files(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for source in sources {
        let lines: Vec<&str> = source.text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            let Some(name) = declared_module(pair[1]) else {
                continue;
            };
            let dir = module_dir(&source.path);
            out.push(format!("{dir}{name}.rs"));
            out.push(format!("{dir}{name}/mod.rs"));
            let nested = format!("{dir}{name}/");
            out.extend(
                sources
                    .iter()
                    .filter(|s| s.path.starts_with(&nested))
                    .map(|s| s.path.clone()),
            );
        }
    }
    out
}

/// `mod x;` / `pub(crate) mod x;` → `x` (a declaration without a body).
fn declared_module(line: &str) -> Option<&str> {
    let rest = line.strip_suffix(';')?;
    let position = rest.find("mod ")?;
    let (visibility, name) = rest.split_at(position);
    let visibility = visibility.trim();
    let plausible = visibility.is_empty() || visibility.starts_with("pub");
    plausible.then(|| name.trim_start_matches("mod ").trim())
}

/// The folder where the children of the module in `path` live (`a/b.rs` → `a/b/`,
/// `a/mod.rs` and `a/lib.rs` → `a/`).
pub fn module_dir(path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    match file {
        "mod.rs" | "lib.rs" | "main.rs" => prefix,
        other => format!("{prefix}{}/", other.trim_end_matches(".rs")),
    }
}

/// The text with `//` comments removed and every `#[cfg(test)]` item blanked (lines kept, so
/// line numbers still match).
pub fn non_test_code(text: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut opened = false;
    let mut pending_attribute = false;
    for line in text.lines() {
        let code = strip_comment(line);
        let trimmed = code.trim();
        if !skipping && trimmed == "#[cfg(test)]" {
            pending_attribute = true;
            out.push(String::new());
            continue;
        }
        if pending_attribute {
            pending_attribute = false;
            if trimmed.ends_with(';') && !trimmed.contains('{') {
                out.push(String::new());
                continue;
            }
            skipping = true;
            depth = 0;
            opened = false;
        }
        if skipping {
            for c in trimmed.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth <= 0 {
                skipping = false;
            }
            out.push(String::new());
            continue;
        }
        out.push(code.to_string());
    }
    out.join("\n")
}

/// The line without a trailing `//` comment (a `//` inside a string literal is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut previous = '\0';
    for (index, c) in line.char_indices() {
        match c {
            '"' if previous != '\\' => in_string = !in_string,
            '/' if !in_string && previous == '/' => return &line[..index - 1],
            _ => {}
        }
        previous = c;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: path.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_file_without_a_module_doc_is_named() {
        let sources = [
            source("a/src/good.rs", "\n//! Holds good things.\nfn x() {}\n"),
            source("a/src/bad.rs", "/// Not a module doc.\nfn x() {}\n"),
        ];
        let violations = check_module_docs(&sources);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].place, "a/src/bad.rs");
    }

    #[test]
    fn environment_reads_outside_the_cli_are_named_but_tests_are_exempt() {
        let library = "//! Lib.\nfn home() { let _ = std::env::var_os(\"HOME\"); }\n\
                       #[cfg(test)]\nmod tests {\n    fn t() { std::env::var(\"X\"); }\n}\n";
        let sources = [
            source("journal/src/paths.rs", library),
            source(
                "cli/src/main.rs",
                "//! Main.\nfn m() { std::env::var(\"X\"); }\n",
            ),
            source(
                "journal/tests/it.rs",
                "//! It.\nfn t() { std::env::var(\"X\"); }\n",
            ),
            source(
                "journal/src/lib.rs",
                "//! Lib.\n#[cfg(test)]\nmod testutil;\n",
            ),
            source(
                "journal/src/testutil.rs",
                "//! T.\nfn t() { std::env::var(\"X\"); }\n",
            ),
        ];
        let violations = check_environment(&sources);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].place, "journal/src/paths.rs:2");
    }

    #[test]
    fn comments_and_test_items_are_not_code() {
        let text =
            "fn a() {} // crate::b\n#[cfg(test)]\nmod tests {\n  use crate::c;\n}\nfn d() {}\n";
        let code = non_test_code(text);
        assert!(
            !code.contains("crate::b") && !code.contains("crate::c"),
            "{code}"
        );
        assert!(code.contains("fn a()") && code.contains("fn d()"));
        assert_eq!(code.lines().count(), 6);
        assert_eq!(
            strip_comment("let s = \"http://x\"; // c"),
            "let s = \"http://x\"; "
        );
    }

    #[test]
    fn module_dirs_follow_the_module_tree() {
        assert_eq!(module_dir("a/src/lib.rs"), "a/src/");
        assert_eq!(module_dir("a/src/x/mod.rs"), "a/src/x/");
        assert_eq!(module_dir("a/src/x.rs"), "a/src/x/");
    }
}
