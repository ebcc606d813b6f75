//! No cycle between the modules of a crate.
//!
//! A module is a file. Module `a` depends on `b` when the non-test code of `a` names a path
//! into `b` written from the crate root or a parent (`crate::b::…`, `super::b::…`,
//! `self::b::…`, `use` groups included); the path resolves to the longest prefix that is a
//! module file. The crate root (`lib.rs`, `main.rs`) is a facade of declarations and
//! re-exports and takes part in no edge, and a parent's use of its own children by their
//! relative names (`children::item`) is not counted: what must be acyclic is the web of
//! references between modules, the shape kube-runtime and ripgrep keep.

use std::collections::{BTreeMap, BTreeSet};

use crate::Violation;
use crate::sources::{Source, non_test_code, test_only_files};

/// The module graph of one crate: module path (`hetzner::servers`) → the modules it names.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Builds the module graph of the crate whose sources live in `src_dir` (`twin/kube/src/`).
pub fn graph(sources: &[Source], src_dir: &str) -> Graph {
    let test_files = test_only_files(sources);
    let files: Vec<(&Source, Vec<String>)> = sources
        .iter()
        .filter(|source| source.path.starts_with(src_dir))
        .filter(|source| !test_files.contains(&source.path))
        .filter_map(|source| {
            let relative = &source.path[src_dir.len()..];
            (!relative.starts_with("bin/")).then(|| (source, module_path(relative)))
        })
        .collect();
    let known: BTreeSet<Vec<String>> = files.iter().map(|(_, path)| path.clone()).collect();
    let mut graph = Graph::new();
    for (source, module) in &files {
        if module.is_empty() {
            continue;
        }
        let name = module.join("::");
        let targets = graph.entry(name).or_default();
        for path in referenced_paths(&non_test_code(&source.text)) {
            if let Some(target) = resolve(module, &path, &known)
                && !target.is_empty()
                && &target != module
            {
                targets.insert(target.join("::"));
            }
        }
    }
    graph
}

/// `x/mod.rs` → `[x]`, `x/y.rs` → `[x, y]`, `lib.rs` → `[]`.
fn module_path(relative: &str) -> Vec<String> {
    let trimmed = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The module a path written in `module` points into, if it points into one of `known`.
fn resolve(
    module: &[String],
    path: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut segments = path.iter().peekable();
    let mut base: Vec<String> = match segments.next().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    while segments.peek().is_some_and(|s| s.as_str() == "super") {
        segments.next();
        base.pop();
    }
    let mut full = base;
    full.extend(segments.filter(|s| s.as_str() != "self").cloned());
    (0..=full.len())
        .rev()
        .map(|length| full[..length].to_vec())
        .find(|prefix| known.contains(prefix))
}

/// Every path starting with `crate`, `self` or `super` in `code`, `use` groups expanded.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let at_boundary = index == 0 || !is_ident(chars[index - 1]) && chars[index - 1] != ':';
        if at_boundary && is_ident(chars[index]) {
            let (word, end) = ident(&chars, index);
            if matches!(word.as_str(), "crate" | "self" | "super") && starts_with(&chars, end, "::")
            {
                let (paths, after) = path_tail(&chars, end, vec![word]);
                out.extend(paths);
                index = after.max(index + 1);
                continue;
            }
            index = end;
            continue;
        }
        index += 1;
    }
    out
}

/// Reads `::seg::seg::{a, b::c}` after `prefix`; returns the full paths and the end index.
fn path_tail(chars: &[char], mut index: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut current = prefix;
    loop {
        if !starts_with(chars, index, "::") {
            return (vec![current], index);
        }
        index = skip_space(chars, index + 2);
        match chars.get(index) {
            Some('{') => {
                let mut out = Vec::new();
                index += 1;
                loop {
                    index = skip_space(chars, index);
                    match chars.get(index) {
                        Some('}') => return (out, index + 1),
                        Some(',') => index += 1,
                        Some(c) if is_ident(*c) => {
                            let (word, end) = ident(chars, index);
                            let mut start = current.clone();
                            start.push(word);
                            let (paths, after) = path_tail(chars, end, start);
                            out.extend(paths);
                            index = skip_alias(chars, after);
                        }
                        Some('*') => {
                            out.push(current.clone());
                            index += 1;
                        }
                        _ => return (out, index),
                    }
                }
            }
            Some('*') => return (vec![current], index + 1),
            Some(c) if is_ident(*c) => {
                let (word, end) = ident(chars, index);
                current.push(word);
                index = end;
            }
            _ => return (vec![current], index),
        }
    }
}

/// Skips ` as name` after a path in a `use` group.
fn skip_alias(chars: &[char], index: usize) -> usize {
    let after = skip_space(chars, index);
    if starts_with(chars, after, "as ") {
        let start = skip_space(chars, after + 3);
        ident(chars, start).1
    } else {
        index
    }
}

fn ident(chars: &[char], start: usize) -> (String, usize) {
    let mut end = start;
    while end < chars.len() && is_ident(chars[end]) {
        end += 1;
    }
    (chars[start..end].iter().collect(), end)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn skip_space(chars: &[char], mut index: usize) -> usize {
    while index < chars.len() && chars[index].is_whitespace() {
        index += 1;
    }
    index
}

fn starts_with(chars: &[char], index: usize, text: &str) -> bool {
    text.chars()
        .enumerate()
        .all(|(offset, c)| chars.get(index + offset) == Some(&c))
}

/// The cycles of `graph`: each strongly connected component of more than one module, sorted.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = graph.keys().collect();
    let position: BTreeMap<&String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|node| {
            graph[*node]
                .iter()
                .filter_map(|target| position.get(target).copied())
                .collect()
        })
        .collect();
    let mut tarjan = Tarjan::new(edges.len());
    for node in 0..edges.len() {
        if tarjan.index[node].is_none() {
            tarjan.visit(node, &edges);
        }
    }
    let mut out: Vec<Vec<String>> = tarjan
        .components
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let mut names: Vec<String> = component.iter().map(|&i| nodes[i].clone()).collect();
            names.sort();
            names
        })
        .collect();
    out.sort();
    out
}

/// Tarjan's strongly connected components.
struct Tarjan {
    next: usize,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    components: Vec<Vec<usize>>,
}

impl Tarjan {
    fn new(size: usize) -> Self {
        Self {
            next: 0,
            index: vec![None; size],
            low: vec![0; size],
            on_stack: vec![false; size],
            stack: Vec::new(),
            components: Vec::new(),
        }
    }

    fn visit(&mut self, node: usize, edges: &[Vec<usize>]) {
        self.index[node] = Some(self.next);
        self.low[node] = self.next;
        self.next += 1;
        self.stack.push(node);
        self.on_stack[node] = true;
        for &target in &edges[node] {
            match self.index[target] {
                None => {
                    self.visit(target, edges);
                    self.low[node] = self.low[node].min(self.low[target]);
                }
                Some(target_index) if self.on_stack[target] => {
                    self.low[node] = self.low[node].min(target_index);
                }
                Some(_) => {}
            }
        }
        if Some(self.low[node]) == self.index[node] {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// One violation per cycle in the crate whose sources live in `src_dir`.
pub fn check(sources: &[Source], src_dir: &str) -> Vec<Violation> {
    cycles(&graph(sources, src_dir))
        .into_iter()
        .map(|cycle| {
            Violation::new(
                src_dir.trim_end_matches('/'),
                format!(
                    "modules import each other in a cycle: {} (move what they share into a leaf module)",
                    cycle.join(", ")
                ),
            )
        })
        .collect()
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

    fn strings(paths: Vec<Vec<String>>) -> Vec<String> {
        paths.into_iter().map(|p| p.join("::")).collect()
    }

    #[test]
    fn use_groups_aliases_and_globs_expand() {
        let code = "use crate::{a::X, b::{self, Y as Z}, c::*};\nlet v = super::d::f(self::e::G);";
        assert_eq!(
            strings(referenced_paths(code)),
            [
                "crate::a::X",
                "crate::b::self",
                "crate::b::Y",
                "crate::c",
                "super::d::f",
                "self::e::G"
            ]
        );
    }

    #[test]
    fn a_two_file_cycle_is_found_and_a_chain_is_not() {
        let sources = [
            source(
                "k/src/lib.rs",
                "//! L.\nmod a;\nmod b;\nmod c;\npub use a::A;\n",
            ),
            source("k/src/a.rs", "//! A.\nuse crate::b::B;\n"),
            source("k/src/b.rs", "//! B.\nuse super::{a::A, c};\n"),
            source("k/src/c.rs", "//! C.\nuse crate::A;\n"),
        ];
        let found = check(&sources, "k/src/");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].rule.contains("a, b"), "{}", found[0].rule);

        let chain = [
            source("k/src/a.rs", "//! A.\nuse crate::b::B;\n"),
            source(
                "k/src/b.rs",
                "//! B.\nuse crate::c::C;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
            ),
            source("k/src/c.rs", "//! C.\n"),
        ];
        assert_eq!(check(&chain, "k/src/"), vec![]);
    }

    #[test]
    fn nested_modules_resolve_to_their_files() {
        let sources = [
            source("k/src/h/mod.rs", "//! H.\nuse crate::state::S;\n"),
            source(
                "k/src/h/servers.rs",
                "//! Servers.\nuse super::super::state::{S, T};\nfn f() { super::helper(); }\n",
            ),
            source(
                "k/src/state.rs",
                "//! State.\nfn g() { crate::h::servers::f(); }\n",
            ),
        ];
        let graph = graph(&sources, "k/src/");
        assert_eq!(
            graph["h::servers"],
            BTreeSet::from(["h".to_string(), "state".to_string()])
        );
        assert_eq!(
            cycles(&graph),
            vec![vec![
                "h".to_string(),
                "h::servers".to_string(),
                "state".to_string()
            ]]
        );
    }
}
