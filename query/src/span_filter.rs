//! One compiler from span conditions to SQL, for both searches: the trace
//! list's `service=`, `name=`, `status=` and `attr=` filters
//! ([`crate::search`]) and TraceQL span filters ([`crate::tempo_api`]).
//! Each API lowers its request into a [`Filter`]; [`Filter::sql`] writes it
//! as a condition on one row of `span_rows s`.
//!
//! The semantics, the same for both APIs:
//! - Text tests (equal, not equal, ordering, contains, prefix, suffix,
//!   regular expression, one of a list) read an attribute as text: a
//!   string as it is, a number or boolean as JSON spells it (`200`, `true`).
//! - Number tests read JSON numbers and strings that spell one (`"3"`,
//!   `" 2.5e3 "`), compared exactly (`numeric`); any other value never
//!   matches.
//! - Boolean tests match JSON booleans only.
//! - A test on an attribute the span lacks is never true, negated ones
//!   included: a span without `tier` is not "tier not equal to gold" (SQL's
//!   NULL does this, so no test writes a presence check of its own).
//!
//! What it guarantees: attribute keys and every value are bound parameters
//! ([`Sql::bind`]); the SQL text holds only the column names and operators
//! written in this file.

use crate::sql::Sql;

/// A condition on one span.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one holds (none: true).
    All(Vec<Filter>),
    /// At least one holds (none: false).
    Any(Vec<Filter>),
    /// One test of one value of the span.
    Test(Subject, Test),
}

/// What a test reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A column of the span.
    Column(Column),
    /// An attribute, by key.
    Attribute(Attributes, String),
}

/// Whose attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attributes {
    /// The span's own.
    Span,
    /// Its resource's.
    Resource,
    /// Either (TraceQL's `.key`): the test holds on one of them.
    Either,
}

/// The span columns a filter can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Span name.
    Name,
    /// `service.name` of its resource.
    Service,
    /// Instrumentation scope name.
    ScopeName,
    /// Status message.
    StatusMessage,
    /// Span id, as lowercase hex.
    SpanId,
    /// Parent span id, as lowercase hex.
    ParentSpanId,
    /// Trace id, as lowercase hex.
    TraceId,
    /// Status code (0 unset, 1 ok, 2 error).
    Status,
    /// Span kind (OTLP's numbering).
    Kind,
    /// Duration, nanoseconds.
    DurationNs,
}

impl Column {
    /// The SQL reading the column; text for the first seven, an integer for
    /// the rest.
    pub fn sql(self) -> &'static str {
        match self {
            Column::Name => "s.name",
            Column::Service => "s.service",
            Column::ScopeName => "s.scope_name",
            Column::StatusMessage => "s.status_message",
            Column::SpanId => "encode(s.span_id, 'hex')",
            Column::ParentSpanId => "encode(s.parent_span_id, 'hex')",
            Column::TraceId => "encode(s.trace_id, 'hex')",
            Column::Status => "s.status_code",
            Column::Kind => "s.kind",
            Column::DurationNs => "s.duration_ns",
        }
    }

    fn is_integer(self) -> bool {
        matches!(self, Column::Status | Column::Kind | Column::DurationNs)
    }
}

/// A test of one value.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// Compared as text.
    Text(TextOp, String),
    /// Equal to one of these texts (`negated`: to none of them).
    OneOf {
        /// The texts.
        values: Vec<String>,
        /// Whether it means "none of".
        negated: bool,
    },
    /// Compared as a number.
    Number(Cmp, Number),
    /// Equal (`equal: false`: not equal) to a boolean.
    Bool {
        /// Equal or not.
        equal: bool,
        /// The boolean.
        value: bool,
    },
}

/// How text compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    /// A comparison, by the database's collation for the orderings.
    Cmp(Cmp),
    /// Holds the text.
    Contains,
    /// Does not hold it.
    NotContains,
    /// Begins with it.
    StartsWith,
    /// Ends with it.
    EndsWith,
    /// Matches the POSIX regular expression (anywhere: anchor it to match
    /// the whole).
    Matches,
    /// Does not match it.
    NotMatches,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`.
    Eq,
    /// `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// A number to compare with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Exact.
    Int(i64),
    /// Finite.
    Float(f64),
}

impl Number {
    /// Binds the number as `numeric` (exact for every i64).
    fn bind_numeric(self, sql: &mut Sql) -> String {
        let text = match self {
            Number::Int(i) => i.to_string(),
            Number::Float(f) => f.to_string(),
        };
        format!("{}::text::numeric", sql.bind(text))
    }
}

/// A JSON string that spells a number, as the number tests accept it.
const NUMBER_PATTERN: &str = r"'^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$'";

impl Filter {
    /// The condition as SQL over `span_rows s`.
    pub fn sql(&self, sql: &mut Sql) -> String {
        match self {
            Filter::All(v) if v.is_empty() => "TRUE".into(),
            Filter::Any(v) if v.is_empty() => "FALSE".into(),
            Filter::All(v) => joined(sql, v, " AND "),
            Filter::Any(v) => joined(sql, v, " OR "),
            Filter::Test(Subject::Column(c), test) => column_test(sql, *c, test),
            Filter::Test(Subject::Attribute(Attributes::Either, key), test) => {
                let a = attribute_test(sql, "s.attributes", key, test);
                let b = attribute_test(sql, "s.resource", key, test);
                format!("({a} OR {b})")
            }
            Filter::Test(Subject::Attribute(whose, key), test) => {
                let column = match whose {
                    Attributes::Resource => "s.resource",
                    _ => "s.attributes",
                };
                attribute_test(sql, column, key, test)
            }
        }
    }
}

fn joined(sql: &mut Sql, filters: &[Filter], with: &str) -> String {
    let parts: Vec<String> = filters.iter().map(|f| f.sql(sql)).collect();
    format!("({})", parts.join(with))
}

/// A test of a column: text columns take text tests, integer columns
/// number tests; any other pairing never holds.
fn column_test(sql: &mut Sql, column: Column, test: &Test) -> String {
    let value = column.sql();
    match (column.is_integer(), test) {
        (false, Test::Text(op, text)) => text_test(sql, value, *op, text),
        (false, Test::OneOf { values, negated }) => one_of(sql, value, values, *negated),
        (true, Test::Number(cmp, Number::Int(i))) => {
            format!("{value} {} {}::int8", cmp.sql(), sql.bind(*i))
        }
        (true, Test::Number(cmp, Number::Float(f))) => {
            format!("{value} {} {}::float8", cmp.sql(), sql.bind(*f))
        }
        _ => "FALSE".into(),
    }
}

/// A test of attribute `key` of the jsonb `column`.
fn attribute_test(sql: &mut Sql, column: &str, key: &str, test: &Test) -> String {
    let key = sql.bind(key.to_owned());
    let json = format!("({column} -> {key}::text)");
    let text = format!("({column} ->> {key}::text)");
    match test {
        Test::Text(op, value) => text_test(sql, &text, *op, value),
        Test::OneOf { values, negated } => one_of(sql, &text, values, *negated),
        Test::Number(cmp, n) => {
            // CASE, not AND: PostgreSQL may evaluate AND's operands in any
            // order, and a cast of a non-number must never run.
            let v = n.bind_numeric(sql);
            format!(
                "(CASE jsonb_typeof({json}) WHEN 'number' THEN {json}::numeric \
                 WHEN 'string' THEN CASE WHEN {text} ~ {NUMBER_PATTERN} THEN {text}::numeric END END) \
                 {} {v}",
                cmp.sql()
            )
        }
        Test::Bool { equal, value } => {
            let v = sql.bind(*value);
            let op = if *equal { "=" } else { "<>" };
            format!(
                "(CASE WHEN jsonb_typeof({json}) = 'boolean' THEN {json}::bool END) {op} {v}::bool"
            )
        }
    }
}

/// A text test of the SQL text `value`.
fn text_test(sql: &mut Sql, value: &str, op: TextOp, text: &str) -> String {
    let p = format!("{}::text", sql.bind(text.to_owned()));
    match op {
        TextOp::Cmp(cmp) => format!("{value} {} {p}", cmp.sql()),
        TextOp::Contains => format!("strpos({value}, {p}) > 0"),
        TextOp::NotContains => format!("strpos({value}, {p}) = 0"),
        TextOp::StartsWith => format!("starts_with({value}, {p})"),
        TextOp::EndsWith => format!("right({value}, length({p})) = {p}"),
        TextOp::Matches => format!("{value} ~ {p}"),
        TextOp::NotMatches => format!("{value} !~ {p}"),
    }
}

fn one_of(sql: &mut Sql, value: &str, values: &[String], negated: bool) -> String {
    let p = sql.bind(values.to_vec());
    if negated {
        format!("NOT ({value} = ANY({p}::text[]))")
    } else {
        format!("{value} = ANY({p}::text[])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: &Filter) -> (String, usize) {
        let mut sql = Sql::default();
        let text = f.sql(&mut sql);
        (text, sql.params.len())
    }

    fn attr(whose: Attributes, key: &str, test: Test) -> Filter {
        Filter::Test(Subject::Attribute(whose, key.into()), test)
    }

    #[test]
    fn keys_and_values_are_bound_never_inlined() {
        let hostile = "x' OR '1'='1";
        let f = Filter::All(vec![
            Filter::Test(
                Subject::Column(Column::Name),
                Test::Text(TextOp::Cmp(Cmp::Eq), hostile.into()),
            ),
            attr(
                Attributes::Span,
                hostile,
                Test::OneOf {
                    values: vec![hostile.into()],
                    negated: true,
                },
            ),
            attr(
                Attributes::Resource,
                hostile,
                Test::Number(Cmp::Gt, Number::Int(3)),
            ),
        ]);
        let (text, n) = render(&f);
        assert!(!text.contains(hostile), "{text}");
        assert_eq!(n, 5);
        assert!(
            text.starts_with(
                "(s.name = $1::text AND NOT ((s.attributes ->> $2::text) = ANY($3::text[])) AND"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_value_type_has_its_reading() {
        let (text, _) = render(&attr(
            Attributes::Span,
            "tokens",
            Test::Number(Cmp::Ge, Number::Int(i64::MAX)),
        ));
        assert!(text.contains("WHEN 'number' THEN (s.attributes -> $1::text)::numeric"));
        assert!(text.ends_with(">= $2::text::numeric"), "{text}");
        let (text, _) = render(&attr(
            Attributes::Either,
            "ok",
            Test::Bool {
                equal: true,
                value: true,
            },
        ));
        assert!(
            text.contains(" OR ") && text.contains("'boolean'"),
            "{text}"
        );
        let status = Filter::Test(
            Subject::Column(Column::Status),
            Test::Number(Cmp::Eq, Number::Int(2)),
        );
        assert_eq!(render(&status).0, "s.status_code = $1::int8");
        let mismatch = Filter::Test(
            Subject::Column(Column::Kind),
            Test::Text(TextOp::Contains, "x".into()),
        );
        assert_eq!(render(&mismatch), ("FALSE".into(), 0));
        assert_eq!(render(&Filter::All(vec![])).0, "TRUE");
        assert_eq!(render(&Filter::Any(vec![])).0, "FALSE");
    }
}
