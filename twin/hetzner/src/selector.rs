//! Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; a comma is AND.
//!
//! The Docs do not say whether `k!=v` matches a resource without `k`; Kubernetes says it does and
//! so does [`Selector::matches`]. [`Selector::matches_with`] makes it configurable.

use crate::labels::{self, Labels};

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v` or `k==v`.
    Eq(String, String),
    /// `k!=v`.
    NotEq(String, String),
    /// `k`.
    Exists(String),
    /// `!k`.
    Absent(String),
    /// `k in (a,b)`.
    In(String, Vec<String>),
    /// `k notin (a,b)`.
    NotIn(String, Vec<String>),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// The requirements, in input order.
    pub requirements: Vec<Requirement>,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector '{input}': {reason}")]
pub struct SelectorError {
    /// The whole selector text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > 1 {
                    return Err("nested parentheses".into());
                }
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    if labels::is_valid_key(k) || is_valid_key_allow_reserved(k) {
        Ok(k.to_string())
    } else {
        Err(format!("invalid key '{k}'"))
    }
}

/// Selectors may mention reserved keys; only writing them is forbidden.
fn is_valid_key_allow_reserved(k: &str) -> bool {
    match k.rsplit_once('/') {
        Some((p, n)) => p.starts_with("hetzner.cloud") && labels::is_valid_name(n),
        None => false,
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if labels::is_valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!("invalid value '{v}'"))
    }
}

/// Parses `key in (..)` / `key notin (..)` if `part` has that shape.
fn set_requirement(part: &str) -> Option<Result<Requirement, String>> {
    let open = part.find('(')?;
    let head = part[..open].trim_end();
    let (k, op) = head.rsplit_once(char::is_whitespace)?;
    let op = op.trim();
    if op != "in" && op != "notin" {
        return None;
    }
    let rest = part[open + 1..].trim_end();
    let inner = match rest.strip_suffix(')') {
        Some(i) => i,
        None => return Some(Err("expected ')' at the end".into())),
    };
    let parse = || -> Result<Requirement, String> {
        let k = key(k)?;
        let vals = inner.split(',').map(value).collect::<Result<Vec<_>, _>>()?;
        if vals.iter().all(String::is_empty) {
            return Err("empty value set".into());
        }
        Ok(if op == "in" {
            Requirement::In(k, vals)
        } else {
            Requirement::NotIn(k, vals)
        })
    };
    Some(parse())
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("empty requirement".into());
    }
    if let Some(r) = set_requirement(part) {
        return r;
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Eq(key(k)?, value(v)?));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key(k)?));
    }
    Ok(Requirement::Exists(key(part)?))
}

impl Selector {
    /// Parses a selector; the empty string selects everything.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |reason: String| SelectorError {
            input: input.to_string(),
            reason,
        };
        if input.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = split_top_level(input)
            .map_err(err)?
            .into_iter()
            .map(requirement)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(Self { requirements })
    }

    /// Kubernetes semantics: `k!=v` and `k notin (..)` match resources without `k`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_with(labels, true)
    }

    /// Matches with an explicit choice for negative requirements on a missing key.
    pub fn matches_with(&self, labels: &Labels, negative_matches_missing: bool) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => match labels.get(k) {
                Some(x) => x != v,
                None => negative_matches_missing,
            },
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => match labels.get(k) {
                Some(x) => !vs.contains(x),
                None => negative_matches_missing,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form() {
        let s = Selector::parse("a=1, b==2,c!=3,d,!e,f in (x, y),g notin (z)").unwrap();
        assert_eq!(
            s.requirements,
            vec![
                Requirement::Eq("a".into(), "1".into()),
                Requirement::Eq("b".into(), "2".into()),
                Requirement::NotEq("c".into(), "3".into()),
                Requirement::Exists("d".into()),
                Requirement::Absent("e".into()),
                Requirement::In("f".into(), vec!["x".into(), "y".into()]),
                Requirement::NotIn("g".into(), vec!["z".into()]),
            ]
        );
    }

    #[test]
    fn docs_examples_match() {
        let prod_web = l(&[("env", "production"), ("type", "web")]);
        let prod_db = l(&[("env", "production"), ("type", "database")]);
        let s = Selector::parse("env=production,type!=database").unwrap();
        assert!(s.matches(&prod_web));
        assert!(!s.matches(&prod_db));
        let s = Selector::parse("env in (testing,staging)").unwrap();
        assert!(!s.matches(&prod_web));
        assert!(s.matches(&l(&[("env", "staging")])));
        let s = Selector::parse("!type").unwrap();
        assert!(!s.matches(&prod_web));
        assert!(s.matches(&l(&[("env", "x")])));
    }

    #[test]
    fn negative_on_missing_key_is_configurable() {
        let s = Selector::parse("role!=worker").unwrap();
        let none = l(&[]);
        assert!(s.matches(&none));
        assert!(!s.matches_with(&none, false));
        let s = Selector::parse("role notin (worker)").unwrap();
        assert!(s.matches(&none));
        assert!(!s.matches_with(&none, false));
    }

    #[test]
    fn prefixed_keys_and_empty_values() {
        let s = Selector::parse("example.com/tier=,hk8s-run").unwrap();
        assert!(s.matches(&l(&[("example.com/tier", ""), ("hk8s-run", "r1")])));
        assert!(!s.matches(&l(&[("example.com/tier", "x"), ("hk8s-run", "r1")])));
    }

    #[test]
    fn empty_selects_all() {
        assert!(Selector::parse("").unwrap().matches(&l(&[("a", "b")])));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "a=b=c",
            "a in (b",
            "a in b)",
            ",",
            "a,,b",
            "a b",
            "=x",
            "a in ()",
            "a in ((b))",
            "k=v v",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn eq_selector_matches_exactly_its_pair(k in "[a-z][a-z0-9]{0,8}", v in "[a-z0-9]{1,8}", other in "[a-z0-9]{1,8}") {
            let s = Selector::parse(&format!("{k}={v}")).unwrap();
            prop_assert!(s.matches(&l(&[(&k, &v)])));
            prop_assert_eq!(s.matches(&l(&[(&k, &other)])), v == other);
            let n = Selector::parse(&format!("{k}!={v}")).unwrap();
            prop_assert_eq!(n.matches(&l(&[(&k, &other)])), v != other);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Selector::parse(&s);
        }
    }
}
