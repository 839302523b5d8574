//! Request parameters, checked: every value a query takes is parsed here
//! into a typed form, or refused with a 400 problem naming the parameter.
//!
//! What it guarantees: a parameter the endpoint does not know, a repeated
//! single-valued parameter, a value over [`MAX_VALUE_LEN`] bytes, a time that
//! is not RFC 3339 and an inverted or oversized range are all refused here,
//! before any SQL runs. Nothing here builds SQL: the types only say what to
//! bind.

use crate::problem::Problem;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest value any parameter may have, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// The query string of one request, consumed parameter by parameter.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
    asked: Vec<String>,
}

impl Params {
    /// The pairs as received (repeats kept, in order). Refuses oversized values.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Params, Problem> {
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| v.len() > MAX_VALUE_LEN || k.len() > 64)
        {
            return Err(Problem::bad_parameter(
                &printable(name),
                format!("values are at most {MAX_VALUE_LEN} bytes"),
            ));
        }
        Ok(Params {
            pairs,
            asked: Vec::new(),
        })
    }

    /// Takes the one value of `name`; an empty value counts as absent.
    pub fn one(&mut self, name: &str) -> Result<Option<String>, Problem> {
        let mut values = self.all(name);
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop().filter(|v| !v.is_empty())),
            _ => Err(Problem::bad_parameter(name, "given more than once")),
        }
    }

    /// Takes every value of a repeatable parameter.
    pub fn all(&mut self, name: &str) -> Vec<String> {
        if !self.asked.iter().any(|a| a == name) {
            self.asked.push(name.to_owned());
        }
        let mut out = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == name {
                out.push(v.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// Takes `name` and parses it with `parse`, whose error is the detail.
    pub fn parsed<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Problem> {
        match self.one(name)? {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|why| Problem::bad_parameter(name, why)),
        }
    }

    /// Every name the endpoint asked for, in order: the parameters it
    /// knows (the OpenAPI test compares them with the document).
    pub fn asked(&self) -> &[String] {
        &self.asked
    }

    /// Refuses whatever parameter was not taken.
    pub fn finish(&self) -> Result<(), Problem> {
        match self.pairs.first() {
            None => Ok(()),
            Some((name, _)) => Err(Problem::bad_parameter(
                &printable(name),
                "unknown parameter for this endpoint",
            )),
        }
    }
}

/// A name safe to echo back: at most 64 characters, control characters out.
fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Parses an RFC 3339 timestamp (`2026-11-27T10:00:00Z`,
/// `2026-11-27T10:00:00.123+01:00`; `t` and `z` accepted, as RFC 3339 allows).
///
/// ```
/// use observatory_api::filters::parse_rfc3339;
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = parse_rfc3339("1970-01-02T00:00:01.5+01:00").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_millis((86_400 - 3_600 + 1) * 1000 + 500));
/// assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_err());
/// ```
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-11-27T10:00:00Z");
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let s = &text[range];
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        nanos = frac[..digits].parse::<i64>().map_err(|_| bad())? * 10i64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let h = num_in(&rest[1..3]).ok_or_else(bad)?;
            let m = num_in(&rest[4..6]).ok_or_else(bad)?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if year < 1970 || day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let days = observatory_schemas::civil::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_s;
    if secs < 0 {
        return Err(bad());
    }
    Ok(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_nanos(nanos as u64))
}

fn num_in(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// RFC 3339 with nanoseconds, UTC.
pub fn format_time(t: SystemTime) -> String {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    observatory_schemas::civil::rfc3339_nanos(ns)
}

/// A `[from, to)` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Start, inclusive.
    pub from: SystemTime,
    /// End, exclusive.
    pub to: SystemTime,
}

impl Range {
    /// `from` and `to` from the request; `to` defaults to now and `from` to
    /// `default` before `to`. Refuses `from >= to` (naming `from`) and
    /// ranges longer than `max` (naming `to`).
    pub fn take(
        params: &mut Params,
        now: SystemTime,
        default: Duration,
        max: Duration,
    ) -> Result<Range, Problem> {
        let to = params.parsed("to", parse_rfc3339)?.unwrap_or(now);
        let from = params
            .parsed("from", parse_rfc3339)?
            .unwrap_or_else(|| to.checked_sub(default).unwrap_or(UNIX_EPOCH));
        if from >= to {
            return Err(Problem::bad_parameter("from", "from must be before to"));
        }
        if to.duration_since(from).unwrap_or_default() > max {
            return Err(Problem::bad_parameter(
                "to",
                format!(
                    "the range is longer than {}",
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(Range { from, to })
    }

    /// Widens the window to whole multiples of `step` since the epoch.
    pub fn aligned(self, step: Duration) -> Range {
        let step = step.as_secs().max(1);
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let from = secs(self.from).as_secs() / step * step;
        let to_d = secs(self.to);
        let to = to_d.as_secs().div_ceil(step) * step
            + u64::from(to_d.subsec_nanos() > 0 && to_d.as_secs() % step == 0) * step;
        Range {
            from: UNIX_EPOCH + Duration::from_secs(from),
            to: UNIX_EPOCH + Duration::from_secs(to),
        }
    }

    /// Whether the window reaches within `recent` of `now` (its answer can
    /// still change).
    pub fn is_open(&self, now: SystemTime, recent: Duration) -> bool {
        self.to + recent >= now
    }
}

/// A duration: `250ms`, `2s`, `1m30s` (as Go and Tempo write them; `1.5s`
/// too), or a bare number of milliseconds.
///
/// ```
/// use observatory_api::filters::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert!(parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 250ms, 1.5s or 2m");
    if let Ok(ms) = text.parse::<f64>() {
        return (0.0..1e12)
            .contains(&ms)
            .then(|| Duration::from_secs_f64(ms / 1e3))
            .ok_or_else(bad);
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += value * scale;
    }
    (total.is_finite() && total < 1e9)
        .then(|| Duration::from_secs_f64(total))
        .ok_or_else(bad)
}

/// A number that is finite and not negative.
pub fn parse_non_negative(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{text:?} is not a non-negative number"))
}

/// An integer in `range`.
pub fn parse_in(text: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            format!(
                "{text:?} is not an integer from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// How an attribute filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal (as text).
    Eq,
    /// Present and not equal.
    Ne,
    /// Numerically greater.
    Gt,
    /// Numerically greater or equal.
    Gte,
    /// Numerically less.
    Lt,
    /// Numerically less or equal.
    Lte,
    /// One of a comma-separated list.
    In,
    /// Present and none of the list.
    NotIn,
    /// Contains the text.
    Contains,
    /// Present and does not contain the text.
    NotContains,
    /// Starts with the text.
    StartsWith,
    /// Ends with the text.
    EndsWith,
    /// Matches a POSIX regular expression (PostgreSQL `~`).
    Regex,
}

impl Op {
    /// Every operator, by its name in requests.
    pub const ALL: [(&'static str, Op); 13] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("contains", Op::Contains),
        ("not_contains", Op::NotContains),
        ("starts_with", Op::StartsWith),
        ("ends_with", Op::EndsWith),
        ("regex", Op::Regex),
    ];
}

/// Which attributes a filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The span's own (`span.` prefix, or none).
    Span,
    /// Its resource's (`resource.` prefix).
    Resource,
}

/// The value an attribute filter compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Text.
    Text(String),
    /// A number, for gt/gte/lt/lte.
    Number(f64),
    /// A list, for in/not_in.
    List(Vec<String>),
}

/// One `attr=<key>:<op>:<value>` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrFilter {
    /// Span or resource attributes.
    pub scope: Scope,
    /// The attribute key.
    pub key: String,
    /// The comparison.
    pub op: Op,
    /// What to compare with.
    pub operand: Operand,
}

/// The most attribute filters in one request.
pub const MAX_ATTR_FILTERS: usize = 16;

/// Parses `attr=<key>:<op>:<value>`: the key up to the first `:`, the
/// operator up to the second, the value is the rest (it may hold `:`).
/// `resource.` before the key reads resource attributes, `span.` (or
/// nothing) the span's.
///
/// ```
/// use observatory_api::filters::{parse_attr, Op, Operand, Scope};
/// let f = parse_attr("resource.deployment.environment:in:prod,staging").unwrap();
/// assert_eq!((f.scope, f.key.as_str(), f.op), (Scope::Resource, "deployment.environment", Op::In));
/// assert_eq!(f.operand, Operand::List(vec!["prod".into(), "staging".into()]));
/// assert!(parse_attr("gen_ai.usage.input_tokens:gt:many").is_err());
/// ```
pub fn parse_attr(text: &str) -> Result<AttrFilter, String> {
    let mut parts = text.splitn(3, ':');
    let (key, op, value) = match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(o), Some(v)) if !k.is_empty() => (k, o, v),
        _ => return Err(format!("{text:?} is not <key>:<operator>:<value>")),
    };
    let (scope, key) = match key.strip_prefix("resource.") {
        Some(k) => (Scope::Resource, k),
        None => (Scope::Span, key.strip_prefix("span.").unwrap_or(key)),
    };
    if key.is_empty() {
        return Err("the attribute key is empty".into());
    }
    let op = Op::ALL
        .iter()
        .find(|(name, _)| *name == op)
        .map(|(_, op)| *op)
        .ok_or_else(|| {
            let names: Vec<&str> = Op::ALL.iter().map(|(n, _)| *n).collect();
            format!("unknown operator {op:?}: one of {}", names.join(", "))
        })?;
    let operand = match op {
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => Operand::Number(
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{value:?} is not a number"))?,
        ),
        Op::In | Op::NotIn => {
            let list: Vec<String> = value.split(',').map(str::to_owned).collect();
            if list.len() > 100 {
                return Err("at most 100 values in a list".into());
            }
            Operand::List(list)
        }
        Op::Regex => {
            regex::RegexBuilder::new(value)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("not a valid regular expression: {e}"))?;
            Operand::Text(value.to_owned())
        }
        _ => Operand::Text(value.to_owned()),
    };
    Ok(AttrFilter {
        scope,
        key: key.to_owned(),
        op,
        operand,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)]) -> Params {
        Params::new(
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn unknown_repeated_and_huge_parameters_are_named() {
        let mut p = params(&[("service", "a"), ("service", "b")]);
        assert_eq!(p.one("service").unwrap_err().parameter.unwrap(), "service");
        let p = params(&[("servcie", "a")]);
        assert_eq!(p.finish().unwrap_err().parameter.unwrap(), "servcie");
        let huge = "x".repeat(MAX_VALUE_LEN + 1);
        let e = Params::new(vec![("model".into(), huge)]).unwrap_err();
        assert_eq!(e.parameter.unwrap(), "model");
    }

    #[test]
    fn times_parse_and_refuse() {
        let t = parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(format_time(t), "2026-11-27T10:00:00Z");
        assert_eq!(
            parse_rfc3339("2026-11-27T11:00:00.000000001+01:00").unwrap(),
            t + Duration::from_nanos(1)
        );
        for bad in [
            "2026-11-27",
            "2026-02-30T00:00:00Z",
            "2026-11-27T25:00:00Z",
            "2026-11-27T10:00:00",
            "2026-11-27T10:00:00+1:00",
            "1'; DROP TABLE spans; --",
            "2026-11-27T10:00:00.Z",
            "२०२६-11-27T10:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_default_and_refuse_inversion() {
        let now = parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        let hour = Duration::from_secs(3600);
        let r = Range::take(&mut params(&[]), now, hour, hour * 24).unwrap();
        assert_eq!((r.from, r.to), (now - hour, now));
        let mut p = params(&[
            ("from", "2026-11-27T10:00:00Z"),
            ("to", "2026-11-27T09:00:00Z"),
        ]);
        let e = Range::take(&mut p, now, hour, hour * 24).unwrap_err();
        assert_eq!(e.parameter.unwrap(), "from");
        let mut p = params(&[("from", "2026-01-01T00:00:00Z")]);
        let e = Range::take(&mut p, now, hour, hour * 24).unwrap_err();
        assert_eq!(e.parameter.unwrap(), "to");
    }

    #[test]
    fn ranges_align_outwards() {
        let t = |s| parse_rfc3339(s).unwrap();
        let r = Range {
            from: t("2026-11-27T10:00:30Z"),
            to: t("2026-11-27T10:05:00Z"),
        }
        .aligned(Duration::from_secs(60));
        assert_eq!(r.from, t("2026-11-27T10:00:00Z"));
        assert_eq!(r.to, t("2026-11-27T10:05:00Z"));
        let r = Range {
            from: t("2026-11-27T10:00:00Z"),
            to: t("2026-11-27T10:05:00.5Z"),
        }
        .aligned(Duration::from_secs(60));
        assert_eq!(r.to, t("2026-11-27T10:06:00Z"));
    }

    #[test]
    fn every_operator_parses() {
        for (name, op) in Op::ALL {
            let value = if matches!(op, Op::Gt | Op::Gte | Op::Lt | Op::Lte) {
                "1.5"
            } else {
                "a:b"
            };
            let f = parse_attr(&format!("span.k:{name}:{value}")).unwrap();
            assert_eq!((f.scope, f.key.as_str(), f.op), (Scope::Span, "k", op));
        }
        assert!(parse_attr("k:like:x")
            .unwrap_err()
            .contains("unknown operator"));
        assert!(parse_attr("k:regex:(").is_err());
        assert!(parse_attr(":eq:x").is_err());
        assert!(parse_attr("k:eq").is_err());
        assert_eq!(
            parse_attr("k:eq:").unwrap().operand,
            Operand::Text(String::new())
        );
    }
}
