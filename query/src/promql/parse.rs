//! The lexer and the recursive-descent parser of the PromQL subset (see
//! the [module documentation](super)).
//!
//! Lexing follows Prometheus's: keywords and aggregation names are
//! case-insensitive, function names are not; `Inf` and `NaN` are numbers;
//! strings take Go's escapes (`\n`, `\\`, `\"`, `\x41`, `\101`, `\u00e9`,
//! `\U0001F600`) and any other escape is an error, so a regular expression
//! spells `\d` as `"\\d"` or `` `\d` ``. Both stages are single passes over
//! the query; the parser's recursion is bounded by [`MAX_DEPTH`].

use std::fmt;
use std::time::Duration;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Deepest nesting accepted: parentheses, calls and aggregations, each
/// counting one level (`sum(rate(m[5m]))` is three).
pub const MAX_DEPTH: usize = 64;

/// The supported subset, as [`ParseError::Unsupported`] names it.
pub const SUBSET: &str =
    "selectors, rate, increase, sum/avg/min/max/count by, histogram_quantile, \
     numbers, and + - * / between numbers or between a vector and a number";

/// Largest compiled program of one regular-expression matcher, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Longest excerpt of the query quoted in an error message, in bytes.
const EXCERPT_BYTES: usize = 40;

/// A parsed query of the subset.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An instant vector selector. In a parsed query its `range` is always
    /// `None`: range selectors only appear inside [`Expr::Rate`] and
    /// [`Expr::Increase`].
    Selector(Selector),
    /// `rate(selector[range])`: the per-second rate of a counter.
    Rate {
        /// The selector, as written (its `range` is `Some(range)`).
        selector: Selector,
        /// The selector's range.
        range: Duration,
    },
    /// `increase(selector[range])`: a counter's increase over the range.
    Increase {
        /// The selector, as written (its `range` is `Some(range)`).
        selector: Selector,
        /// The selector's range.
        range: Duration,
    },
    /// `op by (labels) (expr)`, or `op (expr) by (labels)`.
    Aggregate {
        /// The aggregation.
        op: AggregateOp,
        /// The labels grouped by, as written (empty: one group of all).
        by: Vec<String>,
        /// The aggregated instant vector.
        expr: Box<Expr>,
    },
    /// `histogram_quantile(q, expr)` over `le`-labelled buckets.
    HistogramQuantile {
        /// The quantile, in `[0, 1]`.
        q: f64,
        /// The buckets, an instant vector.
        expr: Box<Expr>,
    },
    /// `lhs op rhs` between an instant vector and a number (either side);
    /// arithmetic between two numbers is folded into [`Expr::Number`] as
    /// it is parsed, and unary minus on a vector is `-1 * vector`.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand: a vector or a number.
        lhs: Box<Expr>,
        /// The right operand: a number if `lhs` is a vector, else a vector.
        rhs: Box<Expr>,
    },
    /// A number literal (also `Inf` and `NaN`), or arithmetic between
    /// numbers, folded.
    Number(f64),
}

/// The supported binary operators: arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/` (IEEE 754: `x / 0` is infinite, `0 / 0` is NaN, as Prometheus).
    Div,
}

impl BinaryOp {
    /// The operator as PromQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
        }
    }

    /// `lhs op rhs`.
    pub fn apply(self, lhs: f64, rhs: f64) -> f64 {
        match self {
            BinaryOp::Add => lhs + rhs,
            BinaryOp::Sub => lhs - rhs,
            BinaryOp::Mul => lhs * rhs,
            BinaryOp::Div => lhs / rhs,
        }
    }

    fn from_token(tok: &Tok) -> Option<BinaryOp> {
        match tok {
            Tok::Op("+") => Some(BinaryOp::Add),
            Tok::Op("-") => Some(BinaryOp::Sub),
            Tok::Op("*") => Some(BinaryOp::Mul),
            Tok::Op("/") => Some(BinaryOp::Div),
            _ => None,
        }
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vector selector: the series with this metric name and these labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name, from `name{…}`, `{"name", …}` or
    /// `{__name__="name"}`; `None` when the matchers alone select (other
    /// `__name__` matchers, such as `__name__=~"http_.*"`, stay in
    /// `matchers`).
    pub name: Option<String>,
    /// The label matchers, in the order written.
    pub matchers: Vec<Matcher>,
    /// The range of a range selector (`[5m]`), longer than zero.
    pub range: Option<Duration>,
}

/// One label matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label name (quoted names may hold any non-empty text, such as
    /// `gen_ai.system`).
    pub label: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value, or for [`MatchOp::Re`] and [`MatchOp::Nre`] a regular
    /// expression that compiles; Prometheus anchors it at both ends
    /// (`^(?s:value)$`), which is the evaluator's job.
    pub value: String,
}

/// How a [`Matcher`] compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Ne,
    /// `=~`: the whole value matches the regular expression.
    Re,
    /// `!~`: the whole value does not match the regular expression.
    Nre,
}

impl MatchOp {
    /// The operator as PromQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The supported aggregations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
}

impl AggregateOp {
    /// The aggregation as PromQL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateOp::Sum => "sum",
            AggregateOp::Avg => "avg",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Count => "count",
        }
    }

    fn from_keyword(lower: &str) -> Option<Self> {
        Some(match lower {
            "sum" => AggregateOp::Sum,
            "avg" => AggregateOp::Avg,
            "min" => AggregateOp::Min,
            "max" => AggregateOp::Max,
            "count" => AggregateOp::Count,
            _ => return None,
        })
    }
}

impl fmt::Display for AggregateOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PromQL's aggregations outside the subset.
const UNSUPPORTED_AGGREGATIONS: [&str; 9] = [
    "topk",
    "bottomk",
    "quantile",
    "stddev",
    "stdvar",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

/// Why a query was refused. Every variant has a byte position in the
/// query ([`ParseError::pos`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Valid PromQL outside the subset.
    #[error(
        "unsupported PromQL: {construct} at byte {pos} is outside the supported subset ({SUBSET})"
    )]
    Unsupported {
        /// The construct, such as `the binary operator "/"`.
        construct: String,
        /// Where it starts.
        pos: usize,
    },
    /// Not valid PromQL, or ill-typed (`rate` of an instant vector, a
    /// range vector at the top level, a quantile outside `[0, 1]`).
    #[error("invalid PromQL at byte {pos}: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
        /// Where.
        pos: usize,
    },
    /// A regular-expression matcher that does not compile.
    #[error(
        "invalid PromQL at byte {pos}: the regular expression {pattern:?} does not compile: {reason}"
    )]
    Regex {
        /// The regular expression, as decoded from its string.
        pattern: String,
        /// The regular-expression compiler's reason.
        reason: String,
        /// Where its string starts.
        pos: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("invalid PromQL at byte {pos}: nested more than {MAX_DEPTH} levels deep")]
    TooDeep {
        /// Where the first expression too deep starts.
        pos: usize,
    },
    /// Longer than [`MAX_QUERY_BYTES`].
    #[error(
        "invalid PromQL: the query is {len} bytes long, more than the {MAX_QUERY_BYTES} accepted"
    )]
    TooLong {
        /// The query's length, in bytes.
        len: usize,
    },
}

impl ParseError {
    /// The byte offset in the query the error is about ([`MAX_QUERY_BYTES`]
    /// for [`ParseError::TooLong`]).
    pub fn pos(&self) -> usize {
        match self {
            ParseError::Unsupported { pos, .. }
            | ParseError::Invalid { pos, .. }
            | ParseError::Regex { pos, .. }
            | ParseError::TooDeep { pos } => *pos,
            ParseError::TooLong { .. } => MAX_QUERY_BYTES,
        }
    }

    /// Whether the query is valid PromQL outside the subset (rather than
    /// invalid).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, ParseError::Unsupported { .. })
    }
}

fn invalid(message: impl Into<String>, pos: usize) -> ParseError {
    ParseError::Invalid {
        message: message.into(),
        pos,
    }
}

fn unsupported(construct: impl Into<String>, pos: usize) -> ParseError {
    ParseError::Unsupported {
        construct: construct.into(),
        pos,
    }
}

/// Parses `input`, a query of the subset (see the [module
/// documentation](super)), into a well-typed [`Expr`] that can be charted:
/// a number or an instant vector.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(ParseError::TooLong { len: input.len() });
    }
    let toks = lex(input)?;
    let mut p = Parser {
        src: input,
        toks,
        i: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::End {
        return Err(invalid("the query is empty", 0));
    }
    let (expr, pos) = p.expr()?;
    if p.peek().tok != Tok::End {
        return Err(p.unexpected("the end of the query"));
    }
    if kind(&expr) == Kind::Range {
        return Err(invalid(
            "a range vector cannot be charted; wrap it in rate() or increase()",
            pos,
        ));
    }
    Ok(expr)
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A metric name, label name, keyword or function name.
    Ident(String),
    Number(f64),
    Duration(Duration),
    /// A string literal, decoded.
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    /// `:`, only inside brackets (subqueries).
    Colon,
    /// `=`
    Assign,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `@`
    At,
    /// The binary and comparison operators other than `!=`.
    Op(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut brackets = 0usize;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let next = b.get(i + 1).copied();
        let (tok, end) = match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = src[i..].find('\n').map_or(b.len(), |n| i + n);
                continue;
            }
            b'(' => (Tok::LParen, i + 1),
            b')' => (Tok::RParen, i + 1),
            b'{' => (Tok::LBrace, i + 1),
            b'}' => (Tok::RBrace, i + 1),
            b'[' => {
                brackets += 1;
                (Tok::LBracket, i + 1)
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                (Tok::RBracket, i + 1)
            }
            b',' => (Tok::Comma, i + 1),
            b':' if brackets > 0 => (Tok::Colon, i + 1),
            b'@' => (Tok::At, i + 1),
            b'=' => match next {
                Some(b'=') => (Tok::Op("=="), i + 2),
                Some(b'~') => (Tok::Re, i + 2),
                _ => (Tok::Assign, i + 1),
            },
            b'!' => match next {
                Some(b'=') => (Tok::Ne, i + 2),
                Some(b'~') => (Tok::Nre, i + 2),
                _ => return Err(invalid("unexpected `!`", i)),
            },
            b'<' | b'>' => {
                let eq = next == Some(b'=');
                let op = match (b[i], eq) {
                    (b'<', false) => "<",
                    (b'<', true) => "<=",
                    (_, false) => ">",
                    (_, true) => ">=",
                };
                (Tok::Op(op), i + 1 + usize::from(eq))
            }
            b'+' => (Tok::Op("+"), i + 1),
            b'-' => (Tok::Op("-"), i + 1),
            b'*' => (Tok::Op("*"), i + 1),
            b'/' => (Tok::Op("/"), i + 1),
            b'%' => (Tok::Op("%"), i + 1),
            b'^' => (Tok::Op("^"), i + 1),
            b'"' | b'\'' | b'`' => {
                let (s, end) = string(src, i)?;
                (Tok::Str(s), end)
            }
            b'0'..=b'9' => number(src, i)?,
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) => number(src, i)?,
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let mut end = i + 1;
                while end < b.len()
                    && (b[end].is_ascii_alphanumeric()
                        || b[end] == b'_'
                        || (b[end] == b':' && brackets == 0))
                {
                    end += 1;
                }
                (Tok::Ident(src[i..end].to_string()), end)
            }
            _ => {
                let c = src[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(invalid(format!("unexpected character {c:?}"), i));
            }
        };
        toks.push(Token { tok, start, end });
        i = end;
    }
    toks.push(Token {
        tok: Tok::End,
        start: b.len(),
        end: b.len(),
    });
    Ok(toks)
}

/// A number or a duration starting at `src[start]` (a digit, or a dot
/// before one).
fn number(src: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let b = src.as_bytes();
    let digits = |mut i: usize, radix: u32| {
        while i < b.len() && (b[i] as char).is_digit(radix) {
            i += 1;
        }
        i
    };
    let mut i;
    let value;
    if b[start] == b'0' && matches!(b.get(start + 1), Some(b'x' | b'X')) {
        i = digits(start + 2, 16);
        value = (i > start + 2).then(|| {
            b[start + 2..i].iter().fold(0f64, |v, &d| {
                v * 16.0 + f64::from((d as char).to_digit(16).unwrap_or(0))
            })
        });
    } else {
        i = digits(start, 10);
        let unit = b
            .get(i)
            .is_some_and(|c| c.is_ascii_alphabetic() && !matches!(c, b'e' | b'E'));
        if i > start && unit {
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let text = &src[start..i];
            return match parse_duration(text) {
                Some(d) => Ok((Tok::Duration(d), i)),
                None => Err(invalid(
                    format!(
                        "invalid duration `{text}`: write it as 5m, 1h30m or 500ms \
                         (units y, w, d, h, m, s, ms, largest first)"
                    ),
                    start,
                )),
            };
        }
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1, 10);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if b.get(j).is_some_and(u8::is_ascii_digit) {
                i = digits(j, 10);
            }
        }
        value = src[start..i].parse::<f64>().ok();
    }
    let trailing = b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
    match value {
        // As Prometheus (Go's ParseFloat): a literal too large for a float
        // is an error, not infinity (write `Inf` for that).
        Some(v) if !trailing && v.is_infinite() => Err(invalid(
            format!("the number `{}` is out of range", excerpt(&src[start..i])),
            start,
        )),
        Some(v) if !trailing => Ok((Tok::Number(v), i)),
        _ => {
            let mut end = i;
            while end < b.len()
                && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b'.')
            {
                end += 1;
            }
            Err(invalid(
                format!("invalid number `{}`", excerpt(&src[start..end])),
                start,
            ))
        }
    }
}

/// A Prometheus duration such as `1h30m`: units `y` (365 days), `w`, `d`,
/// `h`, `m`, `s`, `ms`, each at most once and largest first.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    const DAY: u64 = 24 * 60 * 60 * 1000;
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * DAY),
        ("w", 7 * DAY),
        ("d", DAY),
        ("h", 60 * 60 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = text;
    let mut last: Option<usize> = None;
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = UNITS.iter().position(|(u, _)| *u == &rest[..unit_len])?;
        if last.is_some_and(|l| unit <= l) {
            return None;
        }
        last = Some(unit);
        millis = millis.checked_add(n.checked_mul(UNITS[unit].1)?)?;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_millis(millis))
}

/// A string literal starting at `src[start]` (its quote); returns it
/// decoded and the offset after it.
fn string(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let b = src.as_bytes();
    let quote = b[start];
    let unterminated = || invalid("unterminated string", start);
    if quote == b'`' {
        let body = start + 1;
        return match src[body..].find('`') {
            Some(n) => Ok((src[body..body + n].to_string(), body + n + 1)),
            None => Err(unterminated()),
        };
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err(unterminated());
        };
        if c == quote {
            i += 1;
            break;
        }
        match c {
            b'\n' => {
                return Err(invalid(
                    "unterminated string (a line break in a quoted string)",
                    start,
                ))
            }
            b'\\' => {
                let esc = i;
                let Some(&e) = b.get(i + 1) else {
                    return Err(unterminated());
                };
                i += 2;
                let bad = || {
                    let seq: String = src[esc..].chars().take(2).collect();
                    invalid(
                        format!(
                            "unknown escape sequence `{seq}` (write a backslash as `\\\\`, \
                             or use a raw `…` string for a regular expression)"
                        ),
                        esc,
                    )
                };
                match e {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' => out.push(b'\\'),
                    _ if e == quote => out.push(quote),
                    b'x' | b'0'..=b'7' => {
                        let (radix, len, from) = if e == b'x' { (16, 2, i) } else { (8, 3, i - 1) };
                        let byte = fixed_digits(b, from, len, radix)
                            .and_then(|v| u8::try_from(v).ok())
                            .ok_or_else(bad)?;
                        out.push(byte);
                        i = from + len;
                    }
                    b'u' | b'U' => {
                        let len = if e == b'u' { 4 } else { 8 };
                        let c = fixed_digits(b, i, len, 16)
                            .and_then(char::from_u32)
                            .ok_or_else(bad)?;
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i += len;
                    }
                    _ => return Err(bad()),
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(|s| (s, i)).map_err(|_| {
        invalid(
            "the string is not UTF-8 once its escapes are decoded",
            start,
        )
    })
}

/// Exactly `len` digits of `radix` at `b[from..]`, as a number.
fn fixed_digits(b: &[u8], from: usize, len: usize, radix: u32) -> Option<u32> {
    let digits = b.get(from..from + len)?;
    digits
        .iter()
        .try_fold(0u32, |v, &d| Some(v * radix + (d as char).to_digit(radix)?))
}

/// `text`, cut to [`EXCERPT_BYTES`] on a character boundary.
fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_string();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

// ---- parser ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Instant,
    Range,
}

fn kind(e: &Expr) -> Kind {
    match e {
        Expr::Number(_) => Kind::Number,
        Expr::Binary { .. } => Kind::Instant,
        Expr::Selector(s) if s.range.is_some() => Kind::Range,
        _ => Kind::Instant,
    }
}

/// `e` if it is an instant vector, the argument of `what` at `pos`.
fn instant(what: &str, e: Expr, pos: usize) -> Result<Box<Expr>, ParseError> {
    match kind(&e) {
        Kind::Instant => Ok(Box::new(e)),
        Kind::Number => Err(invalid(format!("{what} needs a vector, not a number"), pos)),
        Kind::Range => Err(invalid(
            format!(
                "{what} needs an instant vector; wrap the range selector in rate() or increase()"
            ),
            pos,
        )),
    }
}

/// `lhs op rhs` (each with where it starts), the operator at `op_pos`:
/// two numbers fold into one; a vector and a number make an
/// [`Expr::Binary`]; two vectors are outside the subset.
fn binary(
    op: BinaryOp,
    (lhs, lhs_pos): (Expr, usize),
    (rhs, rhs_pos): (Expr, usize),
    op_pos: usize,
) -> Result<Expr, ParseError> {
    for (e, pos) in [(&lhs, lhs_pos), (&rhs, rhs_pos)] {
        if kind(e) == Kind::Range {
            return Err(invalid(
                format!(
                    "the binary operator \"{op}\" needs numbers or instant vectors; wrap the \
                     range selector in rate() or increase()"
                ),
                pos,
            ));
        }
    }
    match (&lhs, &rhs) {
        (Expr::Number(a), Expr::Number(b)) => Ok(Expr::Number(op.apply(*a, *b))),
        (Expr::Number(_), _) | (_, Expr::Number(_)) => Ok(Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }),
        _ => Err(unsupported(
            format!("the binary operator \"{op}\" between two vectors"),
            op_pos,
        )),
    }
}

/// A label name written bare (`job`; no colons).
fn bare_label(name: &str, pos: usize) -> Result<String, ParseError> {
    if name.contains(':') {
        return Err(invalid(
            format!(
                "`{}` is not a label name; quote it: \"{}\"",
                excerpt(name),
                excerpt(name)
            ),
            pos,
        ));
    }
    Ok(name.to_string())
}

/// A label name written quoted (`"gen_ai.system"`).
fn quoted_label(name: String, pos: usize) -> Result<String, ParseError> {
    if name.is_empty() {
        return Err(invalid("a label name cannot be empty", pos));
    }
    Ok(name)
}

/// `pattern`, compiled as Prometheus would before anchoring it.
fn compile(pattern: &str, pos: usize) -> Result<regex::Regex, ParseError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| ParseError::Regex {
            pattern: pattern.to_string(),
            reason: match e {
                regex::Error::Syntax(text) => match text.rfind("error: ") {
                    Some(n) => text[n + "error: ".len()..].trim().to_string(),
                    None => text.trim().to_string(),
                },
                regex::Error::CompiledTooBig(limit) => {
                    format!("it compiles to more than {limit} bytes")
                }
                other => other.to_string(),
            },
            pos,
        })
}

struct Parser<'a> {
    src: &'a str,
    /// Ends with one [`Tok::End`], which [`Parser::bump`] never passes.
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.i]
    }

    fn peek_second(&self) -> &Token {
        &self.toks[(self.i + 1).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    /// The next token if it is `want`, else an error (see
    /// [`Parser::unexpected`]).
    fn expect(&mut self, want: Tok, expected: &str) -> Result<Token, ParseError> {
        if self.peek().tok == want {
            Ok(self.bump())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// The next token, for a message.
    fn describe(&self) -> String {
        let t = self.peek();
        if t.tok == Tok::End {
            "the end of the query".to_string()
        } else {
            format!("`{}`", excerpt(&self.src[t.start..t.end]))
        }
    }

    /// The next token is not what the grammar expects, inside a matcher
    /// list or a grouping: always an [`ParseError::Invalid`].
    fn invalid_here(&self, expected: &str) -> ParseError {
        invalid(
            format!("expected {expected}, found {}", self.describe()),
            self.peek().start,
        )
    }

    /// The next token is not what the grammar expects: a construct outside
    /// the subset if it starts one, else [`ParseError::Invalid`].
    fn unexpected(&self, expected: &str) -> ParseError {
        let pos = self.peek().start;
        match &self.peek().tok {
            Tok::Op(op @ ("+" | "-" | "*" | "/" | "%" | "^")) => {
                unsupported(format!("the binary operator \"{op}\""), pos)
            }
            Tok::Op(op) => unsupported(format!("the comparison operator \"{op}\""), pos),
            Tok::Ne => unsupported("the comparison operator \"!=\"", pos),
            Tok::At => unsupported("the @ modifier", pos),
            Tok::LBracket => self.bracket_error(),
            Tok::Ident(word) => match word.to_ascii_lowercase().as_str() {
                w @ ("and" | "or" | "unless") => {
                    unsupported(format!("the set operator \"{w}\""), pos)
                }
                "offset" => unsupported("the offset modifier", pos),
                "bool" => unsupported("the bool modifier", pos),
                w @ ("on" | "ignoring" | "group_left" | "group_right") => {
                    unsupported(format!("vector matching with \"{w}\""), pos)
                }
                "without" => unsupported("grouping with \"without\"", pos),
                _ => self.invalid_here(expected),
            },
            _ => self.invalid_here(expected),
        }
    }

    /// A `[` that does not follow a selector: a subquery if a `:` comes
    /// before its `]`.
    fn bracket_error(&self) -> ParseError {
        let pos = self.peek().start;
        let subquery = self.toks[self.i + 1..]
            .iter()
            .take_while(|t| !matches!(t.tok, Tok::RBracket | Tok::End))
            .any(|t| t.tok == Tok::Colon);
        if subquery {
            unsupported("the subquery", pos)
        } else {
            invalid(
                "a range such as [5m] can only follow a metric selector, as in rate(metric[5m])",
                pos,
            )
        }
    }

    /// An expression and where it starts: terms joined by `+` and `-`
    /// (left-associative, below `*` and `/`, as in PromQL).
    fn expr(&mut self) -> Result<(Expr, usize), ParseError> {
        let pos = self.peek().start;
        if self.depth >= MAX_DEPTH {
            return Err(ParseError::TooDeep { pos });
        }
        self.depth += 1;
        let mut lhs = self.term()?;
        while let Some(op) = BinaryOp::from_token(&self.peek().tok)
            .filter(|op| matches!(op, BinaryOp::Add | BinaryOp::Sub))
        {
            let op_pos = self.bump().start;
            self.no_modifier()?;
            let rhs = self.term()?;
            let start = lhs.1;
            lhs = (binary(op, lhs, rhs, op_pos)?, start);
        }
        self.depth -= 1;
        Ok((lhs.0, pos))
    }

    /// Factors joined by `*` and `/`, and where they start.
    fn term(&mut self) -> Result<(Expr, usize), ParseError> {
        let mut lhs = self.unary()?;
        while let Some(op) = BinaryOp::from_token(&self.peek().tok)
            .filter(|op| matches!(op, BinaryOp::Mul | BinaryOp::Div))
        {
            let op_pos = self.bump().start;
            self.no_modifier()?;
            let rhs = self.unary()?;
            let start = lhs.1;
            lhs = (binary(op, lhs, rhs, op_pos)?, start);
        }
        Ok(lhs)
    }

    /// Refuses what may follow a binary operator in PromQL but not here:
    /// `bool`, and vector matching (`on(…)`, `ignoring(…)`, …).
    fn no_modifier(&self) -> Result<(), ParseError> {
        let t = self.peek();
        let Tok::Ident(word) = &t.tok else {
            return Ok(());
        };
        let lower = word.to_ascii_lowercase();
        let next = &self.peek_second().tok;
        match lower.as_str() {
            "on" | "ignoring" | "group_left" | "group_right" if *next == Tok::LParen => Err(
                unsupported(format!("vector matching with \"{lower}\""), t.start),
            ),
            "bool"
                if !matches!(
                    next,
                    Tok::LBrace | Tok::LBracket | Tok::End | Tok::RParen | Tok::Comma
                ) && BinaryOp::from_token(next).is_none() =>
            {
                Err(unsupported("the bool modifier", t.start))
            }
            _ => Ok(()),
        }
    }

    /// A factor with its signs (`-x`, `+x`, `--x`), and where it starts.
    fn unary(&mut self) -> Result<(Expr, usize), ParseError> {
        let pos = self.peek().start;
        let mut negate = false;
        while let Tok::Op(op @ ("+" | "-")) = self.peek().tok {
            negate ^= op == "-";
            self.bump();
        }
        let operand = self.peek().start;
        let e = self.primary()?;
        if self.peek().tok == Tok::LBracket {
            return Err(self.bracket_error());
        }
        if pos == operand {
            return Ok((e, pos));
        }
        match e {
            Expr::Number(n) if negate => Ok((Expr::Number(-n), pos)),
            e if kind(&e) == Kind::Range => Err(invalid(
                "a unary sign needs a number or an instant vector; wrap the range selector in \
                 rate() or increase()",
                operand,
            )),
            e if negate => Ok((
                Expr::Binary {
                    op: BinaryOp::Mul,
                    lhs: Box::new(Expr::Number(-1.0)),
                    rhs: Box::new(e),
                },
                pos,
            )),
            e => Ok((e, pos)),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::LParen => {
                self.bump();
                let (e, _) = self.expr()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Number(n) => {
                self.bump();
                Ok(Expr::Number(n))
            }
            Tok::Duration(_) => Err(invalid(
                "a duration such as 5m can only be a range, as in rate(metric[5m])",
                t.start,
            )),
            Tok::Str(_) => Err(unsupported("a string literal as an expression", t.start)),
            Tok::LBrace => self.selector(None, t.start),
            Tok::Ident(word) => self.identifier(word, t.start),
            _ => Err(self.unexpected("an expression")),
        }
    }

    /// What starts with a name: a number, a call, an aggregation or a
    /// selector.
    fn identifier(&mut self, word: String, pos: usize) -> Result<Expr, ParseError> {
        let lower = word.to_ascii_lowercase();
        match lower.as_str() {
            "inf" => {
                self.bump();
                return Ok(Expr::Number(f64::INFINITY));
            }
            "nan" => {
                self.bump();
                return Ok(Expr::Number(f64::NAN));
            }
            _ => {}
        }
        let aggregation = AggregateOp::from_keyword(&lower);
        let grouped = matches!(&self.peek_second().tok,
            Tok::Ident(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without"));
        let called = self.peek_second().tok == Tok::LParen;
        let unsupported_aggregation = UNSUPPORTED_AGGREGATIONS.contains(&lower.as_str());
        if called || grouped {
            if let Some(op) = aggregation {
                return self.aggregation(op, pos);
            }
            if unsupported_aggregation {
                return Err(unsupported(format!("the aggregation \"{lower}\""), pos));
            }
        }
        if called {
            return match word.as_str() {
                "rate" | "increase" | "histogram_quantile" => self.call(&word, pos),
                _ => Err(unsupported(
                    format!("the function \"{}\"", excerpt(&word)),
                    pos,
                )),
            };
        }
        self.selector(Some(word), pos)
    }

    /// `(arg, …)`: the arguments and where each starts.
    fn args(&mut self) -> Result<Vec<(Expr, usize)>, ParseError> {
        self.expect(Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        loop {
            if self.peek().tok == Tok::RParen {
                self.bump();
                return Ok(args);
            }
            args.push(self.expr()?);
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.unexpected("`,` or `)`")),
            }
        }
    }

    /// `rate(…)`, `increase(…)` or `histogram_quantile(…)`.
    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, ParseError> {
        self.bump();
        let args = self.args()?;
        if name == "histogram_quantile" {
            let [(q, q_pos), (e, e_pos)]: [(Expr, usize); 2] = args.try_into().map_err(|_| {
                invalid(
                    "histogram_quantile() takes two arguments, a quantile and a vector, as in \
                     histogram_quantile(0.95, sum by (le) (rate(metric_bucket[5m])))",
                    pos,
                )
            })?;
            let q = match q {
                Expr::Number(q) if (0.0..=1.0).contains(&q) => q,
                _ => {
                    return Err(invalid(
                        "histogram_quantile() needs a number between 0 and 1 as its first \
                         argument, such as 0.95",
                        q_pos,
                    ))
                }
            };
            let expr = instant("histogram_quantile()", e, e_pos)?;
            return Ok(Expr::HistogramQuantile { q, expr });
        }
        let [(arg, arg_pos)]: [(Expr, usize); 1] = args.try_into().map_err(|_| {
            invalid(
                format!("{name}() takes one argument, a range selector such as metric[5m]"),
                pos,
            )
        })?;
        match arg {
            Expr::Selector(selector) => match selector.range {
                Some(range) if name == "rate" => Ok(Expr::Rate { selector, range }),
                Some(range) => Ok(Expr::Increase { selector, range }),
                None => Err(invalid(
                    format!("{name}() needs a range on its selector, as in {name}(metric[5m])"),
                    arg_pos,
                )),
            },
            _ => Err(invalid(
                format!("{name}() needs a range selector such as metric[5m] as its argument"),
                arg_pos,
            )),
        }
    }

    /// `op [by (…)] (expr) [by (…)]`.
    fn aggregation(&mut self, op: AggregateOp, pos: usize) -> Result<Expr, ParseError> {
        self.bump();
        let mut by = None;
        if self.at_grouping() {
            by = Some(self.grouping()?);
        }
        let args = self.args()?;
        if self.at_grouping() {
            if by.is_some() {
                return Err(invalid(
                    format!("{op}() is grouped twice"),
                    self.peek().start,
                ));
            }
            by = Some(self.grouping()?);
        }
        let [(e, e_pos)]: [(Expr, usize); 1] = args
            .try_into()
            .map_err(|_| invalid(format!("{op}() takes one argument, a vector"), pos))?;
        let expr = instant(&format!("{op}()"), e, e_pos)?;
        Ok(Expr::Aggregate {
            op,
            by: by.unwrap_or_default(),
            expr,
        })
    }

    fn at_grouping(&self) -> bool {
        matches!(&self.peek().tok,
            Tok::Ident(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without"))
    }

    /// `by (a, "b.c")`; `without` is refused.
    fn grouping(&mut self) -> Result<Vec<String>, ParseError> {
        let keyword = self.bump();
        if matches!(&keyword.tok, Tok::Ident(w) if w.eq_ignore_ascii_case("without")) {
            return Err(unsupported("grouping with \"without\"", keyword.start));
        }
        if self.peek().tok != Tok::LParen {
            return Err(self.invalid_here("`(` after `by`"));
        }
        self.bump();
        let mut labels = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::RParen => {
                    self.bump();
                    return Ok(labels);
                }
                Tok::Ident(name) => labels.push(bare_label(&name, t.start)?),
                Tok::Str(name) => labels.push(quoted_label(name, t.start)?),
                _ => return Err(self.invalid_here("a label name or `)`")),
            }
            self.bump();
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {}
                _ => return Err(self.invalid_here("`,` or `)`")),
            }
        }
    }

    /// `name`, `name{…}` or `{…}`, then an optional range; `name` is the
    /// current token if given.
    fn selector(&mut self, name: Option<String>, pos: usize) -> Result<Expr, ParseError> {
        if name.is_some() {
            self.bump();
        }
        let mut name = name;
        let mut matchers = Vec::new();
        // Whether something rules out "every series" (Prometheus's rule).
        let mut narrowed = name.is_some();
        if self.peek().tok == Tok::LBrace {
            self.bump();
            loop {
                let t = self.peek().clone();
                let label = match t.tok {
                    Tok::RBrace => {
                        self.bump();
                        break;
                    }
                    Tok::Ident(label) => {
                        self.bump();
                        bare_label(&label, t.start)?
                    }
                    Tok::Str(s) => {
                        self.bump();
                        if matches!(self.peek().tok, Tok::Assign | Tok::Ne | Tok::Re | Tok::Nre) {
                            quoted_label(s, t.start)?
                        } else {
                            // Prometheus 3's `{"metric.name", …}`.
                            if s.is_empty() {
                                return Err(invalid("a metric name cannot be empty", t.start));
                            }
                            set_name(&mut name, s, t.start)?;
                            narrowed = true;
                            self.end_of_item()?;
                            continue;
                        }
                    }
                    _ => return Err(self.invalid_here("a label name or `}`")),
                };
                let (matcher, matches_empty) = self.matcher(label)?;
                if matcher.label == "__name__"
                    && matcher.op == MatchOp::Eq
                    && !matcher.value.is_empty()
                {
                    set_name(&mut name, matcher.value, t.start)?;
                    narrowed = true;
                } else {
                    narrowed |= !matches_empty;
                    matchers.push(matcher);
                }
                self.end_of_item()?;
            }
        }
        if !narrowed {
            return Err(invalid(
                "a selector needs a metric name or a matcher that does not match the empty \
                 string, such as {job=\"api\"}",
                pos,
            ));
        }
        let range = if self.peek().tok == Tok::LBracket {
            Some(self.range()?)
        } else {
            None
        };
        Ok(Expr::Selector(Selector {
            name,
            matchers,
            range,
        }))
    }

    /// After a matcher list's item: `,` (consumed) or `}` (left).
    fn end_of_item(&mut self) -> Result<(), ParseError> {
        match self.peek().tok {
            Tok::Comma => {
                self.bump();
                Ok(())
            }
            Tok::RBrace => Ok(()),
            _ => Err(self.invalid_here("`,` or `}`")),
        }
    }

    /// `op "value"` after `label`; also whether it matches the empty value.
    fn matcher(&mut self, label: String) -> Result<(Matcher, bool), ParseError> {
        let op = match self.peek().tok {
            Tok::Assign => MatchOp::Eq,
            Tok::Ne => MatchOp::Ne,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return Err(self.invalid_here("a matcher operator (`=`, `!=`, `=~` or `!~`)")),
        };
        self.bump();
        let t = self.peek().clone();
        let Tok::Str(value) = t.tok else {
            return Err(self.invalid_here("a quoted label value"));
        };
        self.bump();
        let matches_empty = match op {
            MatchOp::Eq => value.is_empty(),
            MatchOp::Ne => !value.is_empty(),
            // Any match in "" spans all of it, anchored or not.
            MatchOp::Re => compile(&value, t.start)?.is_match(""),
            MatchOp::Nre => !compile(&value, t.start)?.is_match(""),
        };
        Ok((Matcher { label, op, value }, matches_empty))
    }

    /// `[5m]`; `[5m:1m]` is a subquery, refused.
    fn range(&mut self) -> Result<Duration, ParseError> {
        let open = self.bump();
        let t = self.peek().clone();
        let range = match t.tok {
            Tok::Duration(d) => d,
            Tok::Number(_) => return Err(invalid("a range needs a unit, as in [5m]", t.start)),
            Tok::Colon => return Err(unsupported("the subquery", open.start)),
            _ => return Err(self.invalid_here("a duration such as 5m")),
        };
        self.bump();
        match self.peek().tok {
            Tok::RBracket => {
                self.bump();
            }
            Tok::Colon => return Err(unsupported("the subquery", open.start)),
            _ => return Err(self.unexpected("`]`")),
        }
        if range.is_zero() {
            return Err(invalid("a range must be longer than zero", t.start));
        }
        Ok(range)
    }
}

/// Sets a selector's metric name, given at `pos`, unless it has one.
fn set_name(name: &mut Option<String>, new: String, pos: usize) -> Result<(), ParseError> {
    if let Some(old) = name {
        return Err(invalid(
            format!(
                "the metric name is given twice: \"{}\" and \"{}\"",
                excerpt(old),
                excerpt(&new)
            ),
            pos,
        ));
    }
    *name = Some(new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Expr {
        parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"))
    }

    fn err(q: &str) -> ParseError {
        match parse(q) {
            Ok(e) => panic!("{q:?} parsed as {e:?}"),
            Err(e) => e,
        }
    }

    fn m(label: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher {
            label: label.into(),
            op,
            value: value.into(),
        }
    }

    fn sel(name: Option<&str>, matchers: Vec<Matcher>, range: Option<u64>) -> Selector {
        Selector {
            name: name.map(Into::into),
            matchers,
            range: range.map(Duration::from_secs),
        }
    }

    fn rate(selector: Selector) -> Expr {
        let range = selector.range.expect("a range");
        Expr::Rate { selector, range }
    }

    fn agg(op: AggregateOp, by: &[&str], expr: Expr) -> Expr {
        Expr::Aggregate {
            op,
            by: by.iter().map(|s| s.to_string()).collect(),
            expr: Box::new(expr),
        }
    }

    fn selector(q: &str) -> Selector {
        match ok(q) {
            Expr::Selector(s) => s,
            other => panic!("{q:?} parsed as {other:?}"),
        }
    }

    fn range_of(q: &str) -> Duration {
        match ok(&format!("rate(m[{q}])")) {
            Expr::Rate { range, .. } => range,
            other => panic!("{other:?}"),
        }
    }

    /// The error is Unsupported, names `construct` and points at `pos`.
    fn refused(q: &str, construct: &str, pos: usize) {
        let e = err(q);
        assert!(e.is_unsupported(), "{q:?}: {e}");
        let text = e.to_string();
        assert!(text.contains(construct), "{q:?}: {text}");
        assert!(text.contains(SUBSET), "{q:?}: {text}");
        assert_eq!(e.pos(), pos, "{q:?}: {text}");
    }

    /// The error is Invalid, says `message` and points at `pos`.
    fn invalid_at(q: &str, message: &str, pos: usize) {
        let e = err(q);
        assert!(matches!(e, ParseError::Invalid { .. }), "{q:?}: {e}");
        assert!(e.to_string().contains(message), "{q:?}: {e}");
        assert_eq!(e.pos(), pos, "{q:?}: {e}");
    }

    #[test]
    fn bare_and_braced_selectors() {
        assert_eq!(ok("up"), Expr::Selector(sel(Some("up"), vec![], None)));
        assert_eq!(
            selector("job:http_requests:rate5m").name.as_deref(),
            Some("job:http_requests:rate5m")
        );
        assert_eq!(
            selector(r#"m{a="v", b!="x", c=~"re.*", d!~"re"}"#),
            sel(
                Some("m"),
                vec![
                    m("a", MatchOp::Eq, "v"),
                    m("b", MatchOp::Ne, "x"),
                    m("c", MatchOp::Re, "re.*"),
                    m("d", MatchOp::Nre, "re"),
                ],
                None
            )
        );
        // Trailing comma, empty braces, whitespace and comments.
        assert_eq!(selector(r#"m{a="v",}"#), selector(r#"m{a="v"}"#));
        assert_eq!(selector("m{}"), selector("m"));
        assert_eq!(
            selector("  m # a comment\n { a = \"v\" }\t"),
            selector(r#"m{a="v"}"#)
        );
        // Keywords are label names inside braces.
        assert_eq!(
            selector(r#"m{by="1", offset="2"}"#).matchers[1],
            m("offset", MatchOp::Eq, "2")
        );
    }

    #[test]
    fn metric_name_matchers_and_quoted_names() {
        let want = sel(Some("m"), vec![m("job", MatchOp::Eq, "api")], None);
        assert_eq!(selector(r#"{__name__="m", job="api"}"#), want);
        assert_eq!(selector(r#"{job="api", __name__="m"}"#), want);
        assert_eq!(selector(r#"{"m", job="api"}"#), want);
        assert_eq!(selector(r#"{job="api", "m"}"#), want);
        // OpenTelemetry's dotted names, metric and label.
        assert_eq!(
            selector(r#"{"gen_ai.client.token.usage", "gen_ai.system"="openai", label="x"}"#),
            sel(
                Some("gen_ai.client.token.usage"),
                vec![
                    m("gen_ai.system", MatchOp::Eq, "openai"),
                    m("label", MatchOp::Eq, "x")
                ],
                None
            )
        );
        assert_eq!(
            selector(r#"{'gen_ai.x'}"#).name.as_deref(),
            Some("gen_ai.x")
        );
        // Other __name__ matchers stay matchers.
        assert_eq!(
            selector(r#"{__name__=~"http_.*"}"#),
            sel(None, vec![m("__name__", MatchOp::Re, "http_.*")], None)
        );
        assert_eq!(
            selector(r#"{job!=""}"#),
            sel(None, vec![m("job", MatchOp::Ne, "")], None)
        );
        assert_eq!(selector(r#"{job=~".+"}"#).name, None);
        assert_eq!(selector(r#"{job!~".*"}"#).name, None);
    }

    #[test]
    fn strings_and_escapes() {
        let value = |q: &str| selector(&format!("m{{a={q}}}")).matchers[0].value.clone();
        assert_eq!(value(r#""x""#), "x");
        assert_eq!(value("'x'"), "x");
        assert_eq!(value(r#""a\"b\\c\n\t""#), "a\"b\\c\n\t");
        assert_eq!(value(r#"'it\'s'"#), "it's");
        assert_eq!(value(r#""\x41\101\u00e9\U0001F600""#), "AAé😀");
        assert_eq!(value(r#""\xc3\xa9""#), "é");
        assert_eq!(value("\"é\""), "é");
        assert_eq!(value(r#""\\d+""#), r"\d+");
        assert_eq!(value(r#"`\d+"'`"#), r#"\d+"'"#);
        assert_eq!(value("`a\nb`"), "a\nb");
        assert_eq!(value("\"a # not a comment\""), "a # not a comment");
    }

    #[test]
    fn ranges_and_durations() {
        assert_eq!(ok("rate(m[5m])"), rate(sel(Some("m"), vec![], Some(300))));
        assert_eq!(range_of("1h30m"), Duration::from_secs(5400));
        assert_eq!(range_of("90s"), Duration::from_secs(90));
        assert_eq!(range_of("500ms"), Duration::from_millis(500));
        assert_eq!(range_of("1s500ms"), Duration::from_millis(1500));
        assert_eq!(range_of("2d"), Duration::from_secs(2 * 86400));
        assert_eq!(range_of("1w"), Duration::from_secs(7 * 86400));
        assert_eq!(range_of("1y"), Duration::from_secs(365 * 86400));
        assert_eq!(
            range_of("1y2w3d4h5m6s7ms"),
            Duration::from_millis(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7)
        );
        assert_eq!(range_of(" 5m "), Duration::from_secs(300));
        for bad in [
            "5x",
            "1m1h",
            "5m5m",
            "1ms1s",
            "5mm",
            "1M",
            "99999999999999999999y",
        ] {
            invalid_at(&format!("rate(m[{bad}])"), "invalid duration", 7);
        }
        invalid_at("rate(m[0s])", "longer than zero", 7);
        invalid_at("rate(m[5])", "needs a unit", 7);
        invalid_at("rate(m[1.5m])", "invalid number", 7);
        invalid_at("rate(m[])", "expected a duration", 7);
        invalid_at("rate(m[5m)", "expected `]`", 9);
        invalid_at("5m", "can only be a range", 0);
    }

    #[test]
    fn rate_and_increase() {
        let s = sel(
            Some("http_requests_total"),
            vec![m("job", MatchOp::Eq, "api")],
            Some(60),
        );
        assert_eq!(
            ok(r#"rate(http_requests_total{job="api"}[1m])"#),
            rate(s.clone())
        );
        assert_eq!(
            ok(r#"increase(http_requests_total{job="api"}[1m])"#),
            Expr::Increase {
                selector: s,
                range: Duration::from_secs(60)
            }
        );
        assert_eq!(ok("rate((m[5m]))"), ok("rate(m[5m])"));
        assert_eq!(ok("rate(m[5m],)"), ok("rate(m[5m])"));
        assert_eq!(
            ok(r#"rate({"gen_ai.client.token.usage"}[5m])"#),
            rate(sel(Some("gen_ai.client.token.usage"), vec![], Some(300)))
        );
    }

    #[test]
    fn aggregations() {
        let inner = || rate(sel(Some("x"), vec![], Some(60)));
        let want = agg(AggregateOp::Sum, &["service_name"], inner());
        assert_eq!(ok("sum(rate(x[1m])) by (service_name)"), want);
        assert_eq!(ok("sum by (service_name) (rate(x[1m]))"), want);
        assert_eq!(ok("SUM BY(service_name)(rate(x[1m]))"), want);
        assert_eq!(ok("sum by (service_name,) (rate(x[1m]))"), want);
        assert_eq!(ok("sum(rate(x[1m]))"), agg(AggregateOp::Sum, &[], inner()));
        assert_eq!(
            ok("sum by () (rate(x[1m]))"),
            agg(AggregateOp::Sum, &[], inner())
        );
        assert_eq!(
            ok(r#"avg by (a, "gen_ai.system", by) (x)"#),
            agg(
                AggregateOp::Avg,
                &["a", "gen_ai.system", "by"],
                Expr::Selector(sel(Some("x"), vec![], None))
            )
        );
        for (q, op) in [
            ("min(x)", AggregateOp::Min),
            ("max(x)", AggregateOp::Max),
            ("count(x)", AggregateOp::Count),
            ("avg(x)", AggregateOp::Avg),
        ] {
            assert_eq!(
                ok(q),
                agg(op, &[], Expr::Selector(sel(Some("x"), vec![], None)))
            );
        }
        assert_eq!(
            ok("sum(sum by (a) (x)) by (b)"),
            agg(
                AggregateOp::Sum,
                &["b"],
                agg(
                    AggregateOp::Sum,
                    &["a"],
                    Expr::Selector(sel(Some("x"), vec![], None))
                )
            )
        );
        // Without a call or grouping, an aggregation's name is a metric.
        assert_eq!(ok("sum"), Expr::Selector(sel(Some("sum"), vec![], None)));
    }

    #[test]
    fn histogram_quantile_as_grafana_writes_it() {
        let q = r#"histogram_quantile(0.95, sum by (le) (rate(http_server_duration_bucket{job="api"}[5m])))"#;
        let want = Expr::HistogramQuantile {
            q: 0.95,
            expr: Box::new(agg(
                AggregateOp::Sum,
                &["le"],
                rate(sel(
                    Some("http_server_duration_bucket"),
                    vec![m("job", MatchOp::Eq, "api")],
                    Some(300),
                )),
            )),
        };
        assert_eq!(ok(q), want);
        assert_eq!(
            ok(
                r#"histogram_quantile(0.95, sum(rate(http_server_duration_bucket{job="api"}[5m])) by (le))"#
            ),
            want
        );
        let otel = r#"histogram_quantile(0.99, sum by (le, "gen_ai.request.model") (rate({"gen_ai.client.operation.duration_bucket", "gen_ai.system"="openai"}[5m])))"#;
        assert!(matches!(ok(otel), Expr::HistogramQuantile { q, .. } if q == 0.99));
        for q in ["0", "1", "0.5", "1e-1", ".5", "(0.5)"] {
            assert!(matches!(
                ok(&format!("histogram_quantile({q}, m_bucket)")),
                Expr::HistogramQuantile { .. }
            ));
        }
    }

    #[test]
    fn numbers() {
        for (q, v) in [
            ("1", 1.0),
            ("0.95", 0.95),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("2.5e+2", 250.0),
            ("0x1F", 31.0),
            ("Inf", f64::INFINITY),
            ("inf", f64::INFINITY),
            ("(((42)))", 42.0),
        ] {
            assert_eq!(ok(q), Expr::Number(v), "{q}");
        }
        assert!(matches!(ok("NaN"), Expr::Number(n) if n.is_nan()));
        for bad in ["1e", "0x", "1.2.3", "1_000", "0xfg", "1e5m"] {
            invalid_at(bad, "invalid number", 0);
        }
        invalid_at("12abc", "invalid duration `12abc`", 0);
    }

    #[test]
    fn parentheses_are_transparent() {
        assert_eq!(ok("(m)"), ok("m"));
        assert_eq!(ok("((sum(rate(m[5m]))))"), ok("sum(rate(m[5m]))"));
        assert_eq!(ok("sum((rate(m[5m])))"), ok("sum(rate(m[5m]))"));
    }

    #[test]
    fn arithmetic_between_numbers_folds() {
        for (q, v) in [
            ("1+1", 2.0),
            ("1 + 2 * 3", 7.0),
            ("(1 + 2) * 3", 9.0),
            ("10 - 4 - 3", 3.0),
            ("12 / 2 / 3", 2.0),
            ("-1", -1.0),
            ("- -2", 2.0),
            ("+3", 3.0),
            ("2 * -3", -6.0),
            ("1 - -1", 2.0),
            ("-Inf", f64::NEG_INFINITY),
            ("1 / 0", f64::INFINITY),
        ] {
            assert_eq!(ok(q), Expr::Number(v), "{q}");
        }
        assert!(matches!(ok("0 / 0"), Expr::Number(n) if n.is_nan()));
        assert!(matches!(
            ok("histogram_quantile(1 - 0.05, m_bucket)"),
            Expr::HistogramQuantile { q, .. } if (q - 0.95).abs() < 1e-12
        ));
        invalid_at("9".repeat(400).as_str(), "is out of range", 0);
        invalid_at("1 + 1e999", "is out of range", 4);
    }

    #[test]
    fn arithmetic_between_a_vector_and_a_number() {
        let m = || Box::new(Expr::Selector(sel(Some("m"), vec![], None)));
        assert_eq!(
            ok("m * 60"),
            Expr::Binary {
                op: BinaryOp::Mul,
                lhs: m(),
                rhs: Box::new(Expr::Number(60.0)),
            }
        );
        assert_eq!(
            ok("1 - m"),
            Expr::Binary {
                op: BinaryOp::Sub,
                lhs: Box::new(Expr::Number(1.0)),
                rhs: m(),
            }
        );
        // Numbers fold first: `m * 2 * 30` is `(m * 2) * 30`, `m * (2 * 30)` one node.
        assert_eq!(
            ok("m * (2 * 30)"),
            Expr::Binary {
                op: BinaryOp::Mul,
                lhs: m(),
                rhs: Box::new(Expr::Number(60.0)),
            }
        );
        assert!(matches!(
            ok("m * 2 * 30"),
            Expr::Binary { op: BinaryOp::Mul, lhs, .. } if matches!(*lhs, Expr::Binary { .. })
        ));
        // Precedence: `*` before `+`.
        assert!(matches!(
            ok("1 + m * 2"),
            Expr::Binary { op: BinaryOp::Add, lhs, .. } if *lhs == Expr::Number(1.0)
        ));
        assert_eq!(
            ok("-m"),
            Expr::Binary {
                op: BinaryOp::Mul,
                lhs: Box::new(Expr::Number(-1.0)),
                rhs: m(),
            }
        );
        assert_eq!(ok("+m"), ok("m"));
        assert!(matches!(
            ok("sum by (a) (rate(m[5m]) * 60) / 1000"),
            Expr::Binary {
                op: BinaryOp::Div,
                ..
            }
        ));
        assert!(matches!(
            ok("histogram_quantile(0.9, sum by (le) (rate(m_bucket[5m]))) * 1000"),
            Expr::Binary { .. }
        ));
        let range = "needs numbers or instant vectors";
        invalid_at("m[5m] * 2", range, 0);
        invalid_at("2 * m[5m]", range, 4);
        invalid_at("-m[5m]", "a unary sign needs", 1);
        invalid_at("sum(2 * 3)", "sum() needs a vector, not a number", 4);
        invalid_at("1 +", "expected an expression", 3);
    }

    #[test]
    fn refused_constructs_name_themselves() {
        refused("a / b", "the binary operator \"/\"", 2);
        assert!(err("a / b").to_string().starts_with(
            "unsupported PromQL: the binary operator \"/\" between two vectors at byte 2"
        ));
        for op in ["+", "-", "*", "%", "^"] {
            refused(
                &format!("a {op} b"),
                &format!("the binary operator \"{op}\""),
                2,
            );
        }
        refused(
            "sum(rate(a[5m])) / sum(rate(b[5m]))",
            "the binary operator \"/\"",
            17,
        );
        refused("1 % 2", "the binary operator \"%\"", 2);
        refused("rate(a[5m]) ^ 2", "the binary operator \"^\"", 12);
        refused(
            "2 * a + b",
            "the binary operator \"+\" between two vectors",
            6,
        );
        refused("a + on(job) b", "vector matching with \"on\"", 4);
        refused("a * ignoring(x) b", "vector matching with \"ignoring\"", 4);
        refused("a + bool 1", "the bool modifier", 4);
        for op in ["==", "!=", ">", ">=", "<", "<="] {
            refused(
                &format!("a {op} 1"),
                &format!("the comparison operator \"{op}\""),
                2,
            );
        }
        refused("a > bool 1", "the comparison operator \">\"", 2);
        for op in ["and", "or", "unless", "AND"] {
            let lower = op.to_lowercase();
            refused(
                &format!("a {op} b"),
                &format!("the set operator \"{lower}\""),
                2,
            );
        }
        refused("a bool", "the bool modifier", 2);
        refused("a on(job) b", "vector matching with \"on\"", 2);
        refused("a ignoring(job) b", "vector matching with \"ignoring\"", 2);
        refused("a offset 5m", "the offset modifier", 2);
        refused("rate(a[5m] offset 1h)", "the offset modifier", 11);
        refused("a @ 1609746000", "the @ modifier", 2);
        refused("rate(a[5m] @ end())", "the @ modifier", 11);
        refused("rate(a[5m:1m])", "the subquery", 6);
        refused("a[5m:]", "the subquery", 1);
        refused(
            "max_over_time(rate(a[5m])[1h:5m])",
            "the function \"max_over_time\"",
            0,
        );
        refused("sum(rate(a[5m]))[1h:5m]", "the subquery", 16);
        for f in [
            "irate",
            "delta",
            "idelta",
            "abs",
            "label_replace",
            "vector",
            "scalar",
        ] {
            refused(&format!("{f}(a[5m])"), &format!("the function \"{f}\""), 0);
        }
        refused("sum(irate(a[5m]))", "the function \"irate\"", 4);
        refused("Rate(a[5m])", "the function \"Rate\"", 0);
        for a in [
            "topk",
            "bottomk",
            "quantile",
            "stddev",
            "stdvar",
            "count_values",
            "group",
        ] {
            refused(
                &format!("{a}(5, a)"),
                &format!("the aggregation \"{a}\""),
                0,
            );
        }
        refused("topk by (a) (5, b)", "the aggregation \"topk\"", 0);
        refused("sum without (a) (b)", "grouping with \"without\"", 4);
        refused("sum(b) without (a)", "grouping with \"without\"", 7);
        refused("\"text\"", "a string literal as an expression", 0);
    }

    #[test]
    fn type_checks() {
        let top = "a range vector cannot be charted; wrap it in rate() or increase()";
        invalid_at("m[5m]", top, 0);
        invalid_at("(m[5m])", top, 0);
        invalid_at(r#"{job="api"}[5m]"#, top, 0);
        invalid_at("rate(m)", "rate() needs a range on its selector", 5);
        invalid_at("increase(m)", "increase() needs a range on its selector", 9);
        invalid_at("rate(sum(m))", "rate() needs a range selector", 5);
        invalid_at("rate(1)", "rate() needs a range selector", 5);
        invalid_at("rate()", "rate() takes one argument", 0);
        invalid_at("rate(a[5m], b[5m])", "rate() takes one argument", 0);
        invalid_at("sum(m[5m])", "sum() needs an instant vector", 4);
        invalid_at("sum(1)", "sum() needs a vector, not a number", 4);
        invalid_at("sum()", "sum() takes one argument", 0);
        invalid_at("sum(a, b)", "sum() takes one argument", 0);
        invalid_at("sum by (a) (b) by (c)", "sum() is grouped twice", 15);
        invalid_at("sum by a (b)", "expected `(` after `by`", 7);
        invalid_at("sum by (a:b) (c)", "is not a label name", 8);
        invalid_at(r#"sum by ("") (c)"#, "a label name cannot be empty", 8);
        let hq = "histogram_quantile() needs a number between 0 and 1";
        invalid_at("histogram_quantile(1.5, m)", hq, 19);
        invalid_at("histogram_quantile(-0.5, m)", hq, 19);
        invalid_at("histogram_quantile(NaN, m)", hq, 19);
        invalid_at("histogram_quantile(Inf, m)", hq, 19);
        invalid_at("histogram_quantile(m, 0.5)", hq, 19);
        invalid_at("histogram_quantile(0.5)", "takes two arguments", 0);
        invalid_at("histogram_quantile(0.5, a, b)", "takes two arguments", 0);
        invalid_at(
            "histogram_quantile(0.5, 1)",
            "needs a vector, not a number",
            24,
        );
        invalid_at(
            "histogram_quantile(0.5, m_bucket[5m])",
            "histogram_quantile() needs an instant vector",
            24,
        );
    }

    #[test]
    fn selectors_must_narrow_and_name_once() {
        let narrow = "a selector needs a metric name or a matcher";
        for q in [
            "{}",
            r#"{a=""}"#,
            r#"{a=~".*"}"#,
            r#"{a=~"x|"}"#,
            r#"{a!~".+"}"#,
            r#"{a!="x"}"#,
        ] {
            invalid_at(q, narrow, 0);
        }
        invalid_at(r#"sum({a=""})"#, narrow, 4);
        invalid_at(
            r#"a{__name__="b"}"#,
            "the metric name is given twice: \"a\" and \"b\"",
            2,
        );
        invalid_at(r#"a{"b"}"#, "given twice", 2);
        invalid_at(r#"{"a", "b"}"#, "given twice", 6);
        invalid_at(r#"{""}"#, "a metric name cannot be empty", 1);
        invalid_at(r#"{"", a="b"}"#, "a metric name cannot be empty", 1);
        invalid_at(r#"{""="b"}"#, "a label name cannot be empty", 1);
        invalid_at(r#"{a:b="x"}"#, "is not a label name", 1);
        invalid_at(r#"m{a=5}"#, "expected a quoted label value, found `5`", 4);
        invalid_at(r#"m{a=b}"#, "expected a quoted label value", 4);
        invalid_at(r#"m{a=="b"}"#, "expected a matcher operator", 3);
        invalid_at(r#"m{a}"#, "expected a matcher operator", 3);
        invalid_at(r#"m{a="b" c="d"}"#, "expected `,` or `}`", 8);
        invalid_at(r#"m{,}"#, "expected a label name or `}`", 2);
        invalid_at(
            r#"m{a="b""#,
            "expected `,` or `}`, found the end of the query",
            7,
        );
    }

    #[test]
    fn regular_expressions_must_compile() {
        let e = err(r#"m{a=~"(["}"#);
        let ParseError::Regex { pattern, pos, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((pattern.as_str(), *pos), ("([", 5));
        assert!(
            e.to_string()
                .contains("the regular expression \"([\" does not compile"),
            "{e}"
        );
        // Unbalanced patterns are refused even though anchoring could balance them.
        assert!(matches!(err(r#"m{a!~"a)|(b"}"#), ParseError::Regex { .. }));
        // A pattern that compiles too large is refused, quickly.
        let e = err(r#"m{a=~"(a{1000}){1000}"}"#);
        assert!(e.to_string().contains("compiles to more than"), "{e}");
        assert!(matches!(
            ok(r#"m{a=~"GET|POST", b!~"^/health$"}"#),
            Expr::Selector(_)
        ));
    }

    #[test]
    fn syntax_errors_point_at_their_byte() {
        invalid_at("", "the query is empty", 0);
        invalid_at(" \n\t# only a comment", "the query is empty", 0);
        invalid_at("m{a=\"é\"} $", "unexpected character '$'", 10);
        invalid_at("é", "unexpected character 'é'", 0);
        invalid_at("m\0", "unexpected character '\\0'", 1);
        invalid_at("m !", "unexpected `!`", 2);
        invalid_at(
            "sum(m",
            "expected `,` or `)`, found the end of the query",
            5,
        );
        invalid_at("(m", "expected `)`", 2);
        invalid_at("m)", "expected the end of the query, found `)`", 1);
        invalid_at("a b", "expected the end of the query, found `b`", 2);
        invalid_at("m[5m][5m]", "can only follow a metric selector", 5);
        invalid_at("(m)[5m]", "can only follow a metric selector", 3);
        invalid_at("sum(m)[5m]", "can only follow a metric selector", 6);
        invalid_at("rate(,)", "expected an expression", 5);
        // Positions are bytes, not characters.
        refused("m{a=\"ééé\"} / b", "the binary operator \"/\"", 14);
    }

    #[test]
    fn broken_strings_are_errors() {
        for (q, pos) in [
            (r#"m{a="x}"#, 4),
            ("m{a='x}", 4),
            ("m{a=`x}", 4),
            (r#"m{a="x\"#, 4),
            (r#"m{a="x\""#, 4),
            ("\"", 0),
        ] {
            invalid_at(q, "unterminated string", pos);
        }
        invalid_at("m{a=\"x\ny\"}", "a line break in a quoted string", 4);
        invalid_at(r#"m{a="\d"}"#, "unknown escape sequence `\\d`", 5);
        invalid_at(r#"m{a="\'"}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a='\"'}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a="\x4"}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a="\400"}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a="\ud800"}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a="\U00110000"}"#, "unknown escape sequence", 5);
        invalid_at(r#"m{a="x\é"}"#, "unknown escape sequence `\\é`", 6);
        invalid_at(r#"m{a="\xff"}"#, "not UTF-8", 4);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep =
            |open: &str, n: usize, close: &str| format!("{}m{}", open.repeat(n), close.repeat(n));
        let e = err(&deep("(", 10_000, ")"));
        assert_eq!(e, ParseError::TooDeep { pos: MAX_DEPTH });
        assert!(
            e.to_string().contains("nested more than 64 levels deep"),
            "{e}"
        );
        assert!(matches!(
            err(&"(".repeat(10_000)),
            ParseError::TooDeep { .. }
        ));
        assert!(matches!(
            err(&deep("sum(", 10_000, ")")),
            ParseError::TooDeep { .. }
        ));
        assert!(matches!(
            err(&deep("sum by (le) (", 4_000, ")")),
            ParseError::TooDeep { .. }
        ));
        assert!(matches!(
            err(&deep("histogram_quantile(0.5, ", 2_000, ")")),
            ParseError::TooDeep { .. }
        ));
        assert!(matches!(
            err(&deep("rate(", 10_000, ")")),
            ParseError::TooDeep { .. }
        ));
        // Up to the limit, nesting is fine.
        assert_eq!(ok(&deep("(", MAX_DEPTH - 1, ")")), ok("m"));
        assert!(matches!(
            ok(&deep("sum(", MAX_DEPTH - 1, ")")),
            Expr::Aggregate { .. }
        ));
        assert!(matches!(
            err(&deep("(", MAX_DEPTH, ")")),
            ParseError::TooDeep { .. }
        ));
    }

    #[test]
    fn long_queries() {
        // 1 MB is refused before any work.
        let huge = format!("m{{a=\"{}\"}}", "x".repeat(1 << 20));
        let e = err(&huge);
        assert_eq!(e, ParseError::TooLong { len: huge.len() });
        assert_eq!(e.pos(), MAX_QUERY_BYTES);
        assert!(matches!(
            err(&"(".repeat(1 << 20)),
            ParseError::TooLong { .. }
        ));
        // Just under the limit parses: a long value, a long alternation (what
        // Grafana writes for a multi-value variable), many matchers.
        let value = "v".repeat(MAX_QUERY_BYTES - 10);
        assert_eq!(
            selector(&format!("m{{a=\"{value}\"}}")).matchers[0].value,
            value
        );
        let services: Vec<String> = (0..5_000).map(|i| format!("svc-{i}")).collect();
        let q = format!(
            r#"sum by (le) (rate(m{{service=~"{}"}}[5m]))"#,
            services.join("|")
        );
        assert!(q.len() <= MAX_QUERY_BYTES);
        assert!(matches!(ok(&q), Expr::Aggregate { .. }));
        let matchers: Vec<String> = (0..5_000).map(|i| format!("l{i}=\"v\"")).collect();
        let q = format!("m{{{}}}", matchers.join(","));
        assert_eq!(selector(&q).matchers.len(), 5_000);
        let q = format!("m{}", " ".repeat(MAX_QUERY_BYTES - 1));
        assert_eq!(ok(&q), ok("m"));
    }

    #[test]
    fn every_prefix_of_valid_queries_is_handled() {
        let queries = [
            r#"histogram_quantile(0.95, sum by (le) (rate(http_server_duration_bucket{job="api"}[5m])))"#,
            r#"sum(increase({"gen_ai.client.token.usage", 'gen_ai.system'=~"open.*"}[1h30m])) by ("gen_ai.token.type")"#,
            "avg(rate(m{a!~`x\\d`, b!=\"\\u00e9\"}[500ms])) # done",
        ];
        for q in queries {
            ok(q);
            for (i, _) in q.char_indices() {
                if let Err(e) = parse(&q[..i]) {
                    assert!(e.pos() <= i, "{:?}: {e}", &q[..i]);
                }
            }
        }
    }
}
