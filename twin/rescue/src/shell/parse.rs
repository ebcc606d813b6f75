//! The shell grammar the rescue system understands, parsed into [`List`]: a POSIX `sh` subset
//! (what `sh -c` gets from SSH clients that write images).
//!
//! Supported: simple commands with `NAME=value` prefixes; `|`, `&&`, `||`, `;`, `&`, newlines,
//! `!`; `( list )`, `{ list; }`, `if/then/elif/else/fi`, `while`/`until ... do ... done`,
//! `for NAME in words; do ... done`; redirections `[n]>`, `[n]>>`, `[n]<`, `[n]>&m`, `[n]<&m`,
//! `&>`; single and double quotes, backslashes, `$NAME`, `${NAME}`, `$?`, `$$`, `$#`, `$0`,
//! `$(list)` and backquotes; `#` comments. Not supported (a syntax error): here-documents,
//! `case`, functions, arithmetic `$((..))`, `${NAME:-..}`-style operators.

/// A parse failure, reported as bash does (`syntax error near unexpected token ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// One piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text; `quoted` text is never split or treated as a reserved word.
    Lit {
        /// The text.
        text: String,
        /// Whether it came from quotes or a backslash.
        quoted: bool,
    },
    /// `$NAME`, `${NAME}` or a special parameter (`?`, `$`, `#`, `0`–`9`).
    Param {
        /// The name.
        name: String,
        /// Inside double quotes.
        quoted: bool,
    },
    /// `$(...)` or backquotes: the command text, parsed when expanded.
    Subst {
        /// The command text.
        script: String,
        /// Inside double quotes.
        quoted: bool,
    },
}

/// A word: the parts written next to each other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Word(pub Vec<Part>);

impl Word {
    /// The word's text if it is a plain unquoted literal (reserved words, names).
    pub fn plain(&self) -> Option<&str> {
        match self.0.as_slice() {
            [
                Part::Lit {
                    text,
                    quoted: false,
                },
            ] => Some(text),
            _ => None,
        }
    }

    fn literal(text: &str) -> Word {
        Word(vec![Part::Lit {
            text: text.to_string(),
            quoted: false,
        }])
    }
}

/// What a redirection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `>` (and `>|`).
    Out,
    /// `>>`.
    Append,
    /// `<`.
    In,
    /// `>&` with a number or `-`.
    DupOut,
    /// `<&` with a number or `-`.
    DupIn,
    /// `&>` (stdout and stderr to a file).
    OutErr,
}

/// A redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redir {
    /// The file descriptor redirected.
    pub fd: u32,
    /// How.
    pub op: RedirOp,
    /// The file or descriptor.
    pub target: Word,
}

/// A simple command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simple {
    /// `NAME=value` prefixes.
    pub assigns: Vec<(String, Word)>,
    /// The command and its arguments.
    pub words: Vec<Word>,
    /// Redirections.
    pub redirs: Vec<Redir>,
}

/// A command of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A simple command.
    Simple(Simple),
    /// `( list )`.
    Subshell(List, Vec<Redir>),
    /// `{ list; }`.
    Group(List, Vec<Redir>),
    /// `if c; then b; elif ...; else e; fi`.
    If {
        /// Condition and body pairs.
        branches: Vec<(List, List)>,
        /// The `else` body.
        otherwise: Option<List>,
        /// Redirections.
        redirs: Vec<Redir>,
    },
    /// `while c; do b; done` (`until` when `until`).
    While {
        /// Condition.
        cond: List,
        /// Body.
        body: List,
        /// `until` instead of `while`.
        until: bool,
        /// Redirections.
        redirs: Vec<Redir>,
    },
    /// `for NAME in words; do body; done`.
    For {
        /// The variable.
        var: String,
        /// The words (`None`: `"$@"`, which is empty here).
        words: Option<Vec<Word>>,
        /// Body.
        body: List,
        /// Redirections.
        redirs: Vec<Redir>,
    },
}

/// `[!] cmd | cmd | ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// `!` in front.
    pub negate: bool,
    /// The commands.
    pub cmds: Vec<Command>,
}

/// `&&` or `||`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// `&&`.
    And,
    /// `||`.
    Or,
}

/// Pipelines joined by `&&`/`||`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    /// The first pipeline.
    pub first: Pipeline,
    /// The others with their connectors.
    pub rest: Vec<(Connector, Pipeline)>,
}

/// A list: and-or lists run one after the other (`background` for `&`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List(pub Vec<(AndOr, bool)>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    IoNumber(u32),
    Op(&'static str),
    Newline,
}

const OPS: &[&str] = &[
    "&&", "||", ";;", ">>", ">&", "<&", "&>", ">|", "<<", "|", "&", ";", "(", ")", "<", ">",
];

fn lex(src: &str) -> Result<Vec<Tok>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        if c == '\\' && chars.get(i + 1) == Some(&'\n') {
            i += 2;
            continue;
        }
        if c == '\n' {
            toks.push(Tok::Newline);
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if let Some(op) = OPS.iter().find(|op| {
            let op: Vec<char> = op.chars().collect();
            chars[i..].starts_with(&op)
        }) {
            if *op == "<<" {
                return Err(SyntaxError(
                    "here-documents are not supported by the twin's rescue shell".into(),
                ));
            }
            toks.push(Tok::Op(op));
            i += op.chars().count();
            continue;
        }
        let (word, next) = lex_word(&chars, i)?;
        // An all-digit unquoted word right before `<` or `>` is a file descriptor number.
        if let Some(text) = word.plain()
            && !text.is_empty()
            && text.chars().all(|c| c.is_ascii_digit())
            && matches!(chars.get(next), Some('<') | Some('>'))
            && let Ok(n) = text.parse()
        {
            toks.push(Tok::IoNumber(n));
        } else {
            toks.push(Tok::Word(word));
        }
        i = next;
    }
    Ok(toks)
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '|' | '&' | ';' | '(' | ')' | '<' | '>'
    )
}

fn push_lit(parts: &mut Vec<Part>, c: char, quoted: bool) {
    if let Some(Part::Lit { text, quoted: q }) = parts.last_mut()
        && *q == quoted
    {
        text.push(c);
        return;
    }
    parts.push(Part::Lit {
        text: c.to_string(),
        quoted,
    });
}

/// Reads `$...` at `chars[i] == '$'`; returns the part (or `None` for a lone `$`) and the next
/// index.
fn lex_dollar(
    chars: &[char],
    i: usize,
    quoted: bool,
) -> Result<(Option<Part>, usize), SyntaxError> {
    let Some(&n) = chars.get(i + 1) else {
        return Ok((None, i + 1));
    };
    if n == '(' {
        if chars.get(i + 2) == Some(&'(') {
            return Err(SyntaxError(
                "arithmetic expansion is not supported by the twin's rescue shell".into(),
            ));
        }
        let end = matching_paren(chars, i + 2)?;
        let script: String = chars[i + 2..end].iter().collect();
        return Ok((Some(Part::Subst { script, quoted }), end + 1));
    }
    if n == '{' {
        let close = chars[i + 2..]
            .iter()
            .position(|&c| c == '}')
            .map(|p| p + i + 2)
            .ok_or_else(|| SyntaxError("unexpected EOF while looking for matching `}'".into()))?;
        let name: String = chars[i + 2..close].iter().collect();
        if !(is_name(&name) || is_special(&name)) {
            return Err(SyntaxError(format!("${{{name}}}: bad substitution")));
        }
        return Ok((Some(Part::Param { name, quoted }), close + 1));
    }
    if "?$#!0123456789@*-".contains(n) {
        return Ok((
            Some(Part::Param {
                name: n.to_string(),
                quoted,
            }),
            i + 2,
        ));
    }
    if n.is_ascii_alphabetic() || n == '_' {
        let mut j = i + 1;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        let name: String = chars[i + 1..j].iter().collect();
        return Ok((Some(Part::Param { name, quoted }), j));
    }
    Ok((None, i + 1))
}

fn is_special(s: &str) -> bool {
    s.len() == 1 && "?$#!0123456789@*-".contains(s)
}

/// Whether `s` is a shell variable name.
pub fn is_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The index of the `)` closing a `$(` whose body starts at `start`, skipping quotes.
fn matching_paren(chars: &[char], start: usize) -> Result<usize, SyntaxError> {
    let mut depth = 1;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(SyntaxError(
        "unexpected EOF while looking for matching `)'".into(),
    ))
}

fn lex_word(chars: &[char], mut i: usize) -> Result<(Word, usize), SyntaxError> {
    let mut parts = Vec::new();
    while i < chars.len() && !is_meta(chars[i]) {
        match chars[i] {
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&c) => push_lit(&mut parts, c, true),
                    None => push_lit(&mut parts, '\\', false),
                }
                i += 2;
            }
            '\'' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or_else(|| {
                        SyntaxError("unexpected EOF while looking for matching `''".into())
                    })?;
                let text: String = chars[i + 1..i + 1 + close].iter().collect();
                parts.push(Part::Lit { text, quoted: true });
                i += close + 2;
            }
            '"' => {
                i += 1;
                // An empty "" still makes a (quoted, empty) field.
                parts.push(Part::Lit {
                    text: String::new(),
                    quoted: true,
                });
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(SyntaxError(
                            "unexpected EOF while looking for matching `\"'".into(),
                        ));
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            match chars.get(i + 1) {
                                Some(&n @ ('$' | '`' | '"' | '\\')) => {
                                    push_lit(&mut parts, n, true)
                                }
                                Some('\n') => {}
                                Some(&n) => {
                                    push_lit(&mut parts, '\\', true);
                                    push_lit(&mut parts, n, true);
                                }
                                None => push_lit(&mut parts, '\\', true),
                            }
                            i += 2;
                        }
                        '$' => {
                            let (part, next) = lex_dollar(chars, i, true)?;
                            match part {
                                Some(p) => parts.push(p),
                                None => push_lit(&mut parts, '$', true),
                            }
                            i = next;
                        }
                        '`' => {
                            let (part, next) = lex_backquote(chars, i, true)?;
                            parts.push(part);
                            i = next;
                        }
                        c => {
                            push_lit(&mut parts, c, true);
                            i += 1;
                        }
                    }
                }
            }
            '$' => {
                let (part, next) = lex_dollar(chars, i, false)?;
                match part {
                    Some(p) => parts.push(p),
                    None => push_lit(&mut parts, '$', false),
                }
                i = next;
            }
            '`' => {
                let (part, next) = lex_backquote(chars, i, false)?;
                parts.push(part);
                i = next;
            }
            c => {
                push_lit(&mut parts, c, false);
                i += 1;
            }
        }
    }
    Ok((Word(parts), i))
}

fn lex_backquote(chars: &[char], i: usize, quoted: bool) -> Result<(Part, usize), SyntaxError> {
    let close = chars[i + 1..]
        .iter()
        .position(|&c| c == '`')
        .ok_or_else(|| SyntaxError("unexpected EOF while looking for matching ``'".into()))?;
    let script: String = chars[i + 1..i + 1 + close].iter().collect();
    Ok((Part::Subst { script, quoted }, i + close + 2))
}

/// Parses a command line (or script).
pub fn parse(src: &str) -> Result<List, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser { toks, pos: 0 };
    let list = p.list(&[])?;
    p.skip_newlines();
    if let Some(t) = p.peek() {
        return Err(p.unexpected(t.clone()));
    }
    Ok(list)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

const RESERVED: &[&str] = &[
    "if", "then", "elif", "else", "fi", "while", "until", "do", "done", "for", "in", "{", "}", "!",
    "case", "esac", "function",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_reserved(&self) -> Option<&str> {
        match self.peek() {
            Some(Tok::Word(w)) => w.plain().filter(|t| RESERVED.contains(t)),
            _ => None,
        }
    }

    fn unexpected(&self, t: Tok) -> SyntaxError {
        let shown = match t {
            Tok::Word(w) => w.plain().unwrap_or("word").to_string(),
            Tok::IoNumber(n) => n.to_string(),
            Tok::Op(o) => o.to_string(),
            Tok::Newline => "newline".to_string(),
        };
        SyntaxError(format!("syntax error near unexpected token `{shown}'"))
    }

    fn eof(&self) -> SyntaxError {
        SyntaxError("syntax error: unexpected end of file".into())
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }

    fn expect_reserved(&mut self, word: &str) -> Result<(), SyntaxError> {
        self.skip_newlines();
        if self.peek_reserved() == Some(word) {
            self.pos += 1;
            return Ok(());
        }
        match self.peek().cloned() {
            Some(t) => Err(self.unexpected(t)),
            None => Err(self.eof()),
        }
    }

    /// A list, ending before one of `stops` (reserved words or `)`), or at the end.
    fn list(&mut self, stops: &[&str]) -> Result<List, SyntaxError> {
        let mut items = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                None => break,
                Some(Tok::Op(")")) if stops.contains(&")") => break,
                Some(Tok::Op(op)) if *op != "(" => {
                    let t = Tok::Op(op);
                    return Err(self.unexpected(t));
                }
                _ => {}
            }
            if let Some(r) = self.peek_reserved()
                && stops.contains(&r)
            {
                break;
            }
            let and_or = self.and_or()?;
            let background = match self.peek() {
                Some(Tok::Op(";")) => {
                    self.pos += 1;
                    false
                }
                Some(Tok::Op("&")) => {
                    self.pos += 1;
                    true
                }
                Some(Tok::Newline) | None => false,
                Some(Tok::Op(")")) if stops.contains(&")") => false,
                Some(Tok::Word(w)) if w.plain().is_some_and(|t| stops.contains(&t)) => false,
                Some(t) => {
                    let t = t.clone();
                    return Err(self.unexpected(t));
                }
            };
            items.push((and_or, background));
        }
        Ok(List(items))
    }

    fn and_or(&mut self) -> Result<AndOr, SyntaxError> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let c = match self.peek() {
                Some(Tok::Op("&&")) => Connector::And,
                Some(Tok::Op("||")) => Connector::Or,
                _ => break,
            };
            self.pos += 1;
            self.skip_newlines();
            rest.push((c, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, SyntaxError> {
        let mut negate = false;
        if self.peek_reserved() == Some("!") {
            self.pos += 1;
            negate = true;
        }
        let mut cmds = vec![self.command()?];
        while self.peek() == Some(&Tok::Op("|")) {
            self.pos += 1;
            self.skip_newlines();
            cmds.push(self.command()?);
        }
        Ok(Pipeline { negate, cmds })
    }

    fn redirs(&mut self) -> Result<Vec<Redir>, SyntaxError> {
        let mut out = Vec::new();
        while let Some(r) = self.redir()? {
            out.push(r);
        }
        Ok(out)
    }

    fn redir(&mut self) -> Result<Option<Redir>, SyntaxError> {
        let start = self.pos;
        let fd = match self.peek() {
            Some(Tok::IoNumber(n)) => {
                let n = *n;
                self.pos += 1;
                Some(n)
            }
            _ => None,
        };
        let op = match self.peek() {
            Some(Tok::Op(">")) | Some(Tok::Op(">|")) => RedirOp::Out,
            Some(Tok::Op(">>")) => RedirOp::Append,
            Some(Tok::Op("<")) => RedirOp::In,
            Some(Tok::Op(">&")) => RedirOp::DupOut,
            Some(Tok::Op("<&")) => RedirOp::DupIn,
            Some(Tok::Op("&>")) if fd.is_none() => RedirOp::OutErr,
            _ => {
                self.pos = start;
                return Ok(None);
            }
        };
        self.pos += 1;
        let target = match self.peek().cloned() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                w
            }
            Some(t) => return Err(self.unexpected(t)),
            None => {
                return Err(SyntaxError(
                    "syntax error near unexpected token `newline'".into(),
                ));
            }
        };
        let default_fd = match op {
            RedirOp::In | RedirOp::DupIn => 0,
            _ => 1,
        };
        Ok(Some(Redir {
            fd: fd.unwrap_or(default_fd),
            op,
            target,
        }))
    }

    fn command(&mut self) -> Result<Command, SyntaxError> {
        match self.peek_reserved() {
            Some("if") => {
                self.pos += 1;
                let mut branches = Vec::new();
                let cond = self.list(&["then"])?;
                self.expect_reserved("then")?;
                let body = self.list(&["elif", "else", "fi"])?;
                branches.push((cond, body));
                let mut otherwise = None;
                loop {
                    self.skip_newlines();
                    match self.peek_reserved() {
                        Some("elif") => {
                            self.pos += 1;
                            let c = self.list(&["then"])?;
                            self.expect_reserved("then")?;
                            let b = self.list(&["elif", "else", "fi"])?;
                            branches.push((c, b));
                        }
                        Some("else") => {
                            self.pos += 1;
                            otherwise = Some(self.list(&["fi"])?);
                        }
                        _ => break,
                    }
                }
                self.expect_reserved("fi")?;
                let redirs = self.redirs()?;
                Ok(Command::If {
                    branches,
                    otherwise,
                    redirs,
                })
            }
            Some(kw @ ("while" | "until")) => {
                let until = kw == "until";
                self.pos += 1;
                let cond = self.list(&["do"])?;
                self.expect_reserved("do")?;
                let body = self.list(&["done"])?;
                self.expect_reserved("done")?;
                let redirs = self.redirs()?;
                Ok(Command::While {
                    cond,
                    body,
                    until,
                    redirs,
                })
            }
            Some("for") => {
                self.pos += 1;
                let var = match self.peek().cloned() {
                    Some(Tok::Word(w)) if w.plain().is_some_and(is_name) => {
                        self.pos += 1;
                        w.plain().unwrap_or_default().to_string()
                    }
                    Some(t) => return Err(self.unexpected(t)),
                    None => return Err(self.eof()),
                };
                let mut words = None;
                if self.peek() == Some(&Tok::Op(";")) {
                    self.pos += 1;
                }
                self.skip_newlines();
                if self.peek_reserved() == Some("in") {
                    self.pos += 1;
                    let mut ws = Vec::new();
                    while let Some(Tok::Word(w)) = self.peek().cloned() {
                        self.pos += 1;
                        ws.push(w);
                    }
                    words = Some(ws);
                    if self.peek() == Some(&Tok::Op(";")) {
                        self.pos += 1;
                    }
                }
                self.expect_reserved("do")?;
                let body = self.list(&["done"])?;
                self.expect_reserved("done")?;
                let redirs = self.redirs()?;
                Ok(Command::For {
                    var,
                    words,
                    body,
                    redirs,
                })
            }
            Some("{") => {
                self.pos += 1;
                let body = self.list(&["}"])?;
                self.expect_reserved("}")?;
                let redirs = self.redirs()?;
                Ok(Command::Group(body, redirs))
            }
            Some(r @ ("case" | "function")) => Err(SyntaxError(format!(
                "`{r}' is not supported by the twin's rescue shell"
            ))),
            Some(r) => Err(SyntaxError(format!(
                "syntax error near unexpected token `{r}'"
            ))),
            None => {
                if self.peek() == Some(&Tok::Op("(")) {
                    self.pos += 1;
                    let body = self.list(&[")"])?;
                    match self.peek() {
                        Some(Tok::Op(")")) => self.pos += 1,
                        Some(t) => {
                            let t = t.clone();
                            return Err(self.unexpected(t));
                        }
                        None => return Err(self.eof()),
                    }
                    let redirs = self.redirs()?;
                    return Ok(Command::Subshell(body, redirs));
                }
                self.simple()
            }
        }
    }

    fn simple(&mut self) -> Result<Command, SyntaxError> {
        let mut s = Simple::default();
        loop {
            if let Some(r) = self.redir()? {
                s.redirs.push(r);
                continue;
            }
            match self.peek().cloned() {
                Some(Tok::Word(w)) => {
                    self.pos += 1;
                    if s.words.is_empty()
                        && let Some((name, value)) = split_assignment(&w)
                    {
                        s.assigns.push((name, value));
                    } else {
                        s.words.push(w);
                    }
                }
                _ => break,
            }
        }
        if s.words.is_empty() && s.assigns.is_empty() && s.redirs.is_empty() {
            return match self.peek().cloned() {
                Some(t) => Err(self.unexpected(t)),
                None => Err(self.eof()),
            };
        }
        Ok(Command::Simple(s))
    }
}

/// `NAME=value` as (name, value word), if `w` is an assignment.
fn split_assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Part::Lit {
        text,
        quoted: false,
    }) = w.0.first()
    else {
        return None;
    };
    let (name, rest) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut parts = Vec::new();
    if !rest.is_empty() {
        parts.push(Part::Lit {
            text: rest.to_string(),
            quoted: false,
        });
    }
    parts.extend(w.0[1..].iter().cloned());
    if parts.is_empty() {
        return Some((name.to_string(), Word::literal("")));
    }
    Some((name.to_string(), Word(parts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(c: &Command) -> Vec<String> {
        match c {
            Command::Simple(s) => s
                .words
                .iter()
                .map(|w| {
                    w.0.iter()
                        .map(|p| match p {
                            Part::Lit { text, .. } => text.clone(),
                            Part::Param { name, .. } => format!("${name}"),
                            Part::Subst { script, .. } => format!("$({script})"),
                        })
                        .collect::<String>()
                })
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn parses_the_image_write_pipeline() {
        let l = parse(
            "set -o pipefail; wget -qO- 'http://127.0.0.1:1/image/x/v1.11.6/hcloud-amd64.raw.xz' | xz -d | dd of=/dev/sda bs=4M conv=fsync 2>&1 && sync",
        )
        .unwrap();
        assert_eq!(l.0.len(), 2);
        let (ao, bg) = &l.0[1];
        assert!(!bg);
        assert_eq!(ao.first.cmds.len(), 3);
        assert_eq!(words(&ao.first.cmds[1]), ["xz", "-d"]);
        let Command::Simple(dd) = &ao.first.cmds[2] else {
            panic!()
        };
        assert_eq!(dd.redirs.len(), 1);
        assert_eq!(dd.redirs[0].fd, 2);
        assert_eq!(dd.redirs[0].op, RedirOp::DupOut);
        assert_eq!(ao.rest.len(), 1);
        assert_eq!(ao.rest[0].0, Connector::And);
    }

    #[test]
    fn quoting_assignments_and_substitutions() {
        let l = parse("A=1 B=\"x y\" echo \"$A\"'$B' \\$C $(uname -m) `true`").unwrap();
        let Command::Simple(s) = &l.0[0].0.first.cmds[0] else {
            panic!()
        };
        assert_eq!(s.assigns.len(), 2);
        assert_eq!(
            words(&l.0[0].0.first.cmds[0]),
            ["echo", "$A$B", "$C", "$(uname -m)", "$(true)"]
        );
    }

    #[test]
    fn compound_commands() {
        let l = parse("if [ \"$(uname -m)\" = aarch64 ]; then echo arm; elif true; then :; else echo x86; fi\nfor f in a b; do echo $f; done; (cd /; pwd) > /dev/null; { echo a; echo b; } | cat").unwrap();
        assert_eq!(l.0.len(), 4);
        assert!(matches!(l.0[0].0.first.cmds[0], Command::If { .. }));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "echo 'x",
            "| cat",
            "echo a &&",
            "if true; then",
            "cat <<EOF",
            "echo $((1+1))",
            "a ;; b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
