//! The request languages of Tempo's search API, parsed into conditions the
//! store turns into bound SQL: TraceQL spanset filters (`q`), logfmt tags
//! (`tags`) and Go durations (`minDuration`, `maxDuration`).
//!
//! What is supported, everything else is an error naming the parameter:
//! one spanset `{ ... }` (or `{}`, every span) whose filter combines
//! conditions with `&&`, `||` and parentheses; a condition is
//! `field op value` with `op` one of `=`, `!=`, `>`, `>=`, `<`, `<=`, `=~`,
//! `!~`. Fields: the intrinsics `name`, `status`, `statusMessage`, `kind`,
//! `duration`, the trace-level `traceDuration`, `rootName` and
//! `rootServiceName` (only as top-level `&&` terms), and attributes
//! `span.<key>`, `resource.<key>` and `.<key>` (span or resource), with
//! `resource.service.name` on its own indexed column. Regular expressions
//! are anchored at both ends, as Tempo's are. Pure code: no I/O.

use std::fmt;

/// Longest `q` accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most conditions in one query (each becomes a few bound parameters).
pub const MAX_CONDITIONS: usize = 32;

/// Why a query was refused (the caller names the parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError(msg.into()))
}

/// What a condition tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// The span name.
    Name,
    /// The span status: `error`, `ok`, `unset`.
    Status,
    /// The status message.
    StatusMessage,
    /// The span kind.
    Kind,
    /// The span duration.
    Duration,
    /// `resource.service.name` (its own column).
    Service,
    /// A span attribute.
    Span(String),
    /// A resource attribute.
    Resource(String),
    /// A span or resource attribute (`.key`).
    Any(String),
    /// The trace's duration (trace level).
    TraceDuration,
    /// The root span's name (trace level).
    RootName,
    /// The root span's service (trace level).
    RootServiceName,
    /// `span:id`, as hex.
    SpanId,
    /// `span:parentID`, as hex (roots have none).
    ParentSpanId,
    /// `trace:id`, as hex.
    TraceId,
    /// `instrumentation:name`: the instrumentation scope's name.
    ScopeName,
}

impl Field {
    /// Fields about the whole trace rather than a span.
    pub fn is_trace_level(&self) -> bool {
        matches!(
            self,
            Field::TraceDuration | Field::RootName | Field::RootServiceName
        )
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=~` (anchored)
    Re,
    /// `!~` (anchored)
    NotRe,
    /// Substring (the `tags` parameter's well-known tags).
    Contains,
}

impl Op {
    /// Ordering comparisons.
    pub fn is_order(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    /// The SQL operator (for `Contains` the caller writes `strpos`).
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Re => "~",
            Op::NotRe => "!~",
            Op::Contains => "strpos",
        }
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A duration, ns.
    Duration(i64),
    /// A boolean.
    Bool(bool),
    /// A status: 0 unset, 1 ok, 2 error.
    Status(i16),
    /// A span kind, 0 to 5.
    Kind(i16),
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// What.
    pub field: Field,
    /// How.
    pub op: Op,
    /// Against.
    pub value: Literal,
}

/// A span filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// One condition.
    Cond(Cond),
    /// All of these.
    And(Vec<Expr>),
    /// Any of these.
    Or(Vec<Expr>),
}

impl Expr {
    /// Every condition in the expression.
    pub fn conds(&self) -> Vec<&Cond> {
        match self {
            Expr::Cond(c) => vec![c],
            Expr::And(v) | Expr::Or(v) => v.iter().flat_map(Expr::conds).collect(),
        }
    }
}

/// A parsed search: the span filter (`None`: every span) and the trace-level
/// conditions, all of which must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    /// Which spans match.
    pub spans: Option<Expr>,
    /// Conditions on the whole trace: each group is an `||` of conditions,
    /// and every group must hold.
    pub traces: Vec<Vec<Cond>>,
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LParen,
    RParen,
    And,
    Or,
    Op(Op),
    Str(String),
    Num(String),
    Ident(String),
}

const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | '@')
}

fn lex(text: &str) -> Result<Vec<Tok>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = match (c, next) {
            ('&', Some('&')) => Some(Tok::And),
            ('|', Some('|')) => Some(Tok::Or),
            ('=', Some('~')) => Some(Tok::Op(Op::Re)),
            ('!', Some('~')) => Some(Tok::Op(Op::NotRe)),
            ('!', Some('=')) => Some(Tok::Op(Op::Ne)),
            ('>', Some('=')) => Some(Tok::Op(Op::Ge)),
            ('<', Some('=')) => Some(Tok::Op(Op::Le)),
            _ => None,
        };
        if let Some(t) = two {
            out.push(t);
            i += 2;
            continue;
        }
        let one = match c {
            '{' => Some(Tok::Open),
            '}' => Some(Tok::Close),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Op(Op::Eq)),
            '>' => Some(Tok::Op(Op::Gt)),
            '<' => Some(Tok::Op(Op::Lt)),
            _ => None,
        };
        if let Some(t) = one {
            out.push(t);
            i += 1;
            continue;
        }
        match c {
            '"' | '`' => {
                let (s, end) = quoted(&chars, i)?;
                out.push(Tok::Str(s));
                i = end;
            }
            c if c.is_ascii_digit()
                || (c == '-' && next.is_some_and(|n| n.is_ascii_digit() || n == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == 'µ')
                {
                    i += 1;
                }
                out.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if ident_char(c) => {
                let mut name = String::new();
                while i < chars.len() {
                    if ident_char(chars[i]) {
                        name.push(chars[i]);
                        i += 1;
                    } else if chars[i] == '"' && name.ends_with('.') {
                        // span."key with spaces"
                        let (s, end) = quoted(&chars, i)?;
                        name.push_str(&s);
                        i = end;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(name));
            }
            other => return err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

/// A quoted string starting at `chars[start]`; returns it and the index after it.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), SyntaxError> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            return Ok((s, i + 1));
        }
        if c == '\\' && quote == '"' {
            i += 1;
            match chars.get(i) {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('r') => s.push('\r'),
                Some(&c @ ('\\' | '"' | '\'')) => s.push(c),
                // Regular expressions keep their escapes (`\d`, `\.`).
                Some(&c) => {
                    s.push('\\');
                    s.push(c);
                }
                None => break,
            }
        } else {
            s.push(c);
        }
        i += 1;
    }
    err("unterminated string")
}

// ---- parser ----

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    conds: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one")
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut terms = vec![self.primary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            terms.push(self.primary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one")
        } else {
            Expr::And(terms)
        })
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => err("expected `)`"),
                }
            }
            Some(Tok::Ident(name)) => {
                let field = field(&name)?;
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    _ => return err(format!("expected a comparison after `{name}`")),
                };
                let value = match self.next() {
                    Some(Tok::Str(s)) => Literal::Str(s),
                    Some(Tok::Num(n)) => number(&n)?,
                    Some(Tok::Ident(w)) => keyword(&w)?,
                    _ => return err(format!("expected a value after `{name}`")),
                };
                self.conds += 1;
                if self.conds > MAX_CONDITIONS {
                    return err(format!("at most {MAX_CONDITIONS} conditions"));
                }
                check(Cond { field, op, value }).map(Expr::Cond)
            }
            Some(t) => err(format!("unexpected {t:?}")),
            None => err("unexpected end of query"),
        }
    }
}

/// A field name as TraceQL writes it (`name`, `span.http.method`, ...).
pub fn field(name: &str) -> Result<Field, SyntaxError> {
    let attr = |key: &str| -> Result<String, SyntaxError> {
        if key.is_empty() {
            err(format!("`{name}` names no attribute"))
        } else {
            Ok(key.to_owned())
        }
    };
    Ok(match name {
        "name" | "span:name" => Field::Name,
        "status" | "span:status" => Field::Status,
        "statusMessage" | "span:statusMessage" => Field::StatusMessage,
        "kind" | "span:kind" => Field::Kind,
        "duration" | "span:duration" => Field::Duration,
        "traceDuration" | "trace:duration" => Field::TraceDuration,
        "rootName" | "trace:rootName" => Field::RootName,
        "rootServiceName" | "trace:rootService" => Field::RootServiceName,
        "span:id" => Field::SpanId,
        "span:parentID" => Field::ParentSpanId,
        "trace:id" => Field::TraceId,
        "instrumentation:name" => Field::ScopeName,
        "resource.service.name" => Field::Service,
        _ => {
            if let Some(key) = name.strip_prefix("span.") {
                Field::Span(attr(key)?)
            } else if let Some(key) = name.strip_prefix("resource.") {
                Field::Resource(attr(key)?)
            } else if let Some(key) = name.strip_prefix('.') {
                Field::Any(attr(key)?)
            } else {
                return err(format!(
                    "unsupported field `{name}`: use an intrinsic, span.<key>, resource.<key> or .<key>"
                ));
            }
        }
    })
}

fn keyword(word: &str) -> Result<Literal, SyntaxError> {
    Ok(match word {
        "true" => Literal::Bool(true),
        "false" => Literal::Bool(false),
        "unset" => Literal::Status(0),
        "ok" => Literal::Status(1),
        "error" => Literal::Status(2),
        k => match KINDS.iter().position(|&n| n == k) {
            Some(i) => Literal::Kind(i as i16),
            None => return err(format!("unsupported value `{word}`")),
        },
    })
}

fn number(text: &str) -> Result<Literal, SyntaxError> {
    if text.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return parse_go_duration(text)
            .map(Literal::Duration)
            .ok_or_else(|| SyntaxError(format!("`{text}` is not a number or a duration")));
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Literal::Int(i));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Literal::Float(f)),
        _ => err(format!("`{text}` is not a number")),
    }
}

/// Checks that a condition's value fits its field and operator.
fn check(mut c: Cond) -> Result<Cond, SyntaxError> {
    use Field as F;
    use Literal as L;
    let ok = match (&c.field, &c.value) {
        (
            F::Name
            | F::StatusMessage
            | F::Service
            | F::RootName
            | F::RootServiceName
            | F::ScopeName
            | F::SpanId
            | F::ParentSpanId
            | F::TraceId,
            L::Str(_),
        ) => !c.op.is_order(),
        (F::Status, L::Status(_)) | (F::Kind, L::Kind(_)) => matches!(c.op, Op::Eq | Op::Ne),
        (F::Duration | F::TraceDuration, L::Duration(_)) => !matches!(c.op, Op::Re | Op::NotRe),
        (F::Span(_) | F::Resource(_) | F::Any(_), L::Str(_)) => !c.op.is_order(),
        (F::Span(_) | F::Resource(_) | F::Any(_), L::Int(_) | L::Float(_)) => {
            !matches!(c.op, Op::Re | Op::NotRe)
        }
        (F::Span(_) | F::Resource(_) | F::Any(_), L::Bool(_)) => matches!(c.op, Op::Eq | Op::Ne),
        _ => false,
    };
    if !ok {
        return err(format!(
            "unsupported comparison {:?} {:?} {:?}",
            c.field, c.op, c.value
        ));
    }
    // Ids are stored as bytes and compared as lowercase hex.
    if let (F::SpanId | F::ParentSpanId | F::TraceId, Op::Eq | Op::Ne, L::Str(id)) =
        (&c.field, c.op, &mut c.value)
    {
        id.make_ascii_lowercase();
    }
    if let (Op::Re | Op::NotRe, L::Str(re)) = (c.op, &c.value) {
        if let Err(e) = regex::Regex::new(&anchored(re)) {
            return err(format!("invalid regular expression: {e}"));
        }
    }
    Ok(c)
}

/// A regular expression anchored at both ends, as TraceQL's are.
pub fn anchored(re: &str) -> String {
    format!("^(?:{re})$")
}

/// Parses a TraceQL query.
pub fn parse(text: &str) -> Result<Query, SyntaxError> {
    if text.len() > MAX_QUERY_BYTES {
        return err(format!("a query is at most {MAX_QUERY_BYTES} bytes"));
    }
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        conds: 0,
    };
    if p.next() != Some(Tok::Open) {
        return err("a query is one spanset filter `{ ... }`");
    }
    let spans = if p.peek() == Some(&Tok::Close) {
        None
    } else {
        Some(p.or()?)
    };
    if p.next() != Some(Tok::Close) {
        return err("expected `}`");
    }
    if p.pos < p.toks.len() {
        return err("only one spanset filter is supported (no pipelines, no spanset operators)");
    }
    split_trace_level(spans)
}

/// Moves trace-level conditions out of the span filter; they may only be
/// top-level `&&` terms.
fn split_trace_level(spans: Option<Expr>) -> Result<Query, SyntaxError> {
    let mut query = Query::default();
    let terms = match spans {
        None => return Ok(query),
        Some(Expr::And(terms)) => terms,
        Some(e) => vec![e],
    };
    let mut rest = Vec::new();
    for t in terms {
        match t {
            Expr::Cond(c) if c.field.is_trace_level() => query.traces.push(vec![c]),
            // `(rootServiceName = "a" || rootServiceName = "b")`, as Grafana's
            // search builder writes several values of one field.
            Expr::Or(items)
                if items
                    .iter()
                    .all(|i| matches!(i, Expr::Cond(c) if c.field.is_trace_level())) =>
            {
                query.traces.push(
                    items
                        .into_iter()
                        .filter_map(|i| match i {
                            Expr::Cond(c) => Some(c),
                            _ => None,
                        })
                        .collect(),
                )
            }
            e if e.conds().iter().any(|c| c.field.is_trace_level()) => {
                return err("trace-level fields (traceDuration, rootName, rootServiceName) may only be combined with && or in an || of trace-level conditions only");
            }
            e => rest.push(e),
        }
    }
    query.spans = match rest.len() {
        0 => None,
        1 => rest.pop(),
        _ => Some(Expr::And(rest)),
    };
    Ok(query)
}

// ---- tags (logfmt) ----

/// The `tags` parameter (logfmt `key=value` pairs) as conditions, with
/// Tempo's meaning of each tag: `name`, `service.name`, `root.name` and
/// `root.service.name` match substrings, `status.code` a status, and
/// `http.status_code` an integer; any other tag is a span or resource
/// attribute with that exact string value.
pub fn tags(text: &str) -> Result<Query, SyntaxError> {
    if text.len() > MAX_QUERY_BYTES {
        return err(format!("tags are at most {MAX_QUERY_BYTES} bytes"));
    }
    let pairs = logfmt(text)?;
    if pairs.len() > MAX_CONDITIONS {
        return err(format!("at most {MAX_CONDITIONS} tags"));
    }
    let mut query = Query::default();
    let mut span = Vec::new();
    for (key, value) in pairs {
        let cond = |field, op, value| Cond { field, op, value };
        match key.as_str() {
            "name" => span.push(cond(Field::Name, Op::Contains, Literal::Str(value))),
            "service.name" => span.push(cond(Field::Service, Op::Contains, Literal::Str(value))),
            "root.name" => query.traces.push(vec![cond(
                Field::RootName,
                Op::Contains,
                Literal::Str(value),
            )]),
            "root.service.name" => query.traces.push(vec![cond(
                Field::RootServiceName,
                Op::Contains,
                Literal::Str(value),
            )]),
            "status.code" => match keyword(&value) {
                Ok(status @ Literal::Status(_)) => span.push(cond(Field::Status, Op::Eq, status)),
                _ => return err(format!("status.code is error, ok or unset, not {value:?}")),
            },
            "http.status_code" if value.parse::<i64>().is_ok() => span.push(cond(
                Field::Any(key),
                Op::Eq,
                Literal::Int(value.parse().expect("checked")),
            )),
            _ => span.push(cond(Field::Any(key), Op::Eq, Literal::Str(value))),
        }
    }
    query.spans = match span.len() {
        0 => None,
        1 => Some(Expr::Cond(span.pop().expect("one"))),
        _ => Some(Expr::And(span.into_iter().map(Expr::Cond).collect())),
    };
    Ok(query)
}

/// Parses logfmt `key=value key2="quoted value" key3`; a key may appear once.
pub fn logfmt(text: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            if chars[i] == '"' {
                return err(format!("unexpected '\"' at position {i}"));
            }
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        if key.is_empty() {
            return err(format!("unexpected '=' at position {i}"));
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            if i < chars.len() && chars[i] == '"' {
                let (s, end) = quoted(&chars, i)?;
                value = s;
                i = end;
                if i < chars.len() && !chars[i].is_whitespace() {
                    return err(format!("unexpected {:?} at position {i}", chars[i]));
                }
            } else {
                while i < chars.len() && !chars[i].is_whitespace() {
                    if chars[i] == '"' || chars[i] == '=' {
                        return err(format!("unexpected {:?} at position {i}", chars[i]));
                    }
                    value.push(chars[i]);
                    i += 1;
                }
            }
        }
        if out.iter().any(|(k, _)| *k == key) {
            return err(format!("tag {key} has been set twice"));
        }
        out.push((key, value));
    }
    Ok(out)
}

// ---- durations ----

/// Go's `time.ParseDuration` (`300ms`, `1.5h`, `2h45m`, `-1s`) in
/// nanoseconds; `None` when malformed or out of range.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: Field, op: Op, value: Literal) -> Expr {
        Expr::Cond(Cond { field, op, value })
    }

    #[test]
    fn empty_spanset_matches_every_span() {
        assert_eq!(parse("{}").unwrap(), Query::default());
        assert_eq!(parse("  { }  ").unwrap(), Query::default());
    }

    #[test]
    fn conjunctions_of_intrinsics_and_attributes() {
        let q = parse(
            r#"{ resource.service.name = "support-bot" && name != "x" && status = error && duration > 1.5s && span.gen_ai.request.model =~ "gpt-4.*" && span.tokens >= 100 && .deployment.environment = "prod" && kind = client && span.flag = true && resource.region <= 2.5 }"#,
        )
        .unwrap();
        assert!(q.traces.is_empty());
        let Some(Expr::And(terms)) = q.spans else {
            panic!("a conjunction")
        };
        assert_eq!(
            terms,
            vec![
                cond(Field::Service, Op::Eq, Literal::Str("support-bot".into())),
                cond(Field::Name, Op::Ne, Literal::Str("x".into())),
                cond(Field::Status, Op::Eq, Literal::Status(2)),
                cond(Field::Duration, Op::Gt, Literal::Duration(1_500_000_000)),
                cond(
                    Field::Span("gen_ai.request.model".into()),
                    Op::Re,
                    Literal::Str("gpt-4.*".into())
                ),
                cond(Field::Span("tokens".into()), Op::Ge, Literal::Int(100)),
                cond(
                    Field::Any("deployment.environment".into()),
                    Op::Eq,
                    Literal::Str("prod".into())
                ),
                cond(Field::Kind, Op::Eq, Literal::Kind(3)),
                cond(Field::Span("flag".into()), Op::Eq, Literal::Bool(true)),
                cond(
                    Field::Resource("region".into()),
                    Op::Le,
                    Literal::Float(2.5)
                ),
            ]
        );
    }

    #[test]
    fn disjunctions_parentheses_and_quoted_names() {
        let q =
            parse(r#"{(name = "a" || name = "b") && span."key with space" = `raw\d`}"#).unwrap();
        assert_eq!(
            q.spans.unwrap(),
            Expr::And(vec![
                Expr::Or(vec![
                    cond(Field::Name, Op::Eq, Literal::Str("a".into())),
                    cond(Field::Name, Op::Eq, Literal::Str("b".into())),
                ]),
                cond(
                    Field::Span("key with space".into()),
                    Op::Eq,
                    Literal::Str("raw\\d".into())
                ),
            ])
        );
    }

    #[test]
    fn trace_level_fields_are_split_out() {
        let q =
            parse(r#"{ traceDuration > 2s && name = "a" && rootServiceName = "svc" }"#).unwrap();
        assert_eq!(q.traces.len(), 2);
        assert_eq!(q.traces[0][0].field, Field::TraceDuration);
        assert_eq!(
            q.spans,
            Some(cond(Field::Name, Op::Eq, Literal::Str("a".into())))
        );
        assert!(parse(r#"{ traceDuration > 2s || name = "a" }"#).is_err());
        // Several values of a trace-level field, as Grafana's builder writes them.
        let q =
            parse(r#"{ (rootServiceName = "a" || rootServiceName = "b") && name = "x" }"#).unwrap();
        assert_eq!(q.traces.len(), 1);
        assert_eq!(q.traces[0].len(), 2);
        assert!(q.spans.is_some());
        assert!(parse(r#"{ (rootServiceName = "a" || name = "b") }"#).is_err());
    }

    #[test]
    fn grafana_id_and_scope_intrinsics() {
        let q = parse(r#"{ span:id = "00F067AA0BA902B7" && instrumentation:name = "openai" }"#)
            .unwrap();
        assert_eq!(
            q.spans,
            Some(Expr::And(vec![
                cond(
                    Field::SpanId,
                    Op::Eq,
                    Literal::Str("00f067aa0ba902b7".into())
                ),
                cond(Field::ScopeName, Op::Eq, Literal::Str("openai".into())),
            ]))
        );
        assert!(parse(r#"{ trace:id != "ab" || span:parentID =~ "00.*" }"#).is_ok());
        assert!(parse(r#"{ span:id > "ab" }"#).is_err());
        assert!(parse(r#"{ event:name = "x" }"#).is_err());
    }

    #[test]
    fn unsupported_queries_are_errors() {
        for bad in [
            "",
            "name = \"a\"",
            "{ name = \"a\" } | count() > 1",
            "{ a } && { b }",
            "{ name = }",
            "{ name = \"a\"",
            "{ foo = \"a\" }",
            "{ status = \"error\" }",
            "{ name > \"a\" }",
            "{ duration = \"1s\" }",
            "{ span.x =~ \"(\" }",
            "{ span.x = 1 && ; }",
            "{ span. = 1 }",
            "{ name = \"unterminated }",
            "{ duration > 5xs }",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let many = format!(
            "{{ {} }}",
            vec!["name = \"a\""; MAX_CONDITIONS + 1].join(" && ")
        );
        assert!(parse(&many).is_err());
        assert!(parse(&format!("{{ name = \"{}\" }}", "a".repeat(MAX_QUERY_BYTES))).is_err());
    }

    #[test]
    fn hostile_strings_stay_values() {
        let q = parse(r#"{ name = "'; DROP TABLE spans; --" }"#).unwrap();
        assert_eq!(
            q.spans,
            Some(cond(
                Field::Name,
                Op::Eq,
                Literal::Str("'; DROP TABLE spans; --".into())
            ))
        );
    }

    #[test]
    fn logfmt_tags() {
        assert_eq!(
            logfmt(r#"service.name=api  http.url="/a b" empty="" bare"#).unwrap(),
            vec![
                ("service.name".into(), "api".into()),
                ("http.url".into(), "/a b".into()),
                ("empty".into(), String::new()),
                ("bare".into(), String::new()),
            ]
        );
        for bad in ["a=1 a=2", "=x", "a=\"x", "a=b\"c", "a=\"x\"y"] {
            assert!(logfmt(bad).is_err(), "{bad:?}");
        }
        let q = tags("service.name=api http.status_code=500 status.code=error region=eu").unwrap();
        let Some(Expr::And(terms)) = q.spans else {
            panic!()
        };
        assert_eq!(
            terms[0],
            cond(Field::Service, Op::Contains, Literal::Str("api".into()))
        );
        assert_eq!(
            terms[1],
            cond(
                Field::Any("http.status_code".into()),
                Op::Eq,
                Literal::Int(500)
            )
        );
        assert_eq!(terms[2], cond(Field::Status, Op::Eq, Literal::Status(2)));
        assert!(tags("status.code=maybe").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("2h45m"), Some(9_900_000_000_000));
        assert_eq!(parse_go_duration("1µs"), Some(1_000));
        assert_eq!(parse_go_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "1..2s",
            "abc",
            "1e400h",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_go_duration(bad), None, "{bad:?}");
        }
    }
}
