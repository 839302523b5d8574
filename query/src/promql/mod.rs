//! PromQL over the stored OpenTelemetry metrics: Prometheus' HTTP API
//! under `/api/prom`, so that Grafana's Prometheus data source charts
//! them. One role per file:
//!
//! - `parse.rs`: the PromQL subset, parsed into an [`Expr`] by [`parse()`]
//!   (pure);
//! - [`names`]: OpenTelemetry names as Prometheus names and back, as
//!   Prometheus' OTLP receiver translates them (pure);
//! - [`eval`]: the evaluator over points already read (pure);
//! - [`store`]: the PostgreSQL reads (series, points, labels);
//! - [`api`]: the routes' parameters, answers and errors in Prometheus'
//!   shapes (start reading here).
//!
//! The subset:
//! - vector selectors: `metric`, `metric{job="api", code!="200",
//!   path=~"/v1/.*", method!~"GET|HEAD"}`, `{__name__="metric"}`, and
//!   Prometheus 3's quoted names for OpenTelemetry's dotted ones:
//!   `{"gen_ai.client.token.usage", "gen_ai.system"="openai"}`;
//! - ranges on a selector: `[5m]`, `[1h30m]`, `[500ms]` (units `ms`, `s`,
//!   `m`, `h`, `d`, `w`, `y`, largest first);
//! - `rate(selector[range])` and `increase(selector[range])`;
//! - `sum`, `avg`, `min`, `max`, `count`, optionally grouped `by (a, b)`
//!   before or after the argument;
//! - `histogram_quantile(q, expr)` with `q` a number in `[0, 1]`;
//! - number literals, `+ - * /` between numbers (folded as parsed) and
//!   between a vector and a number (either side), unary `-` and `+`,
//!   parentheses, `#` comments;
//! - strings in `"…"` or `'…'` with Go's backslash escapes, and raw
//!   `` `…` `` strings.
//!
//! What the parser guarantees:
//! - every other PromQL construct (binary operators between two vectors,
//!   `%` and `^`, comparison and set operators, `offset`, `@`, subqueries,
//!   `without`, `bool`, vector matching, and every other function or
//!   aggregation) is refused with [`ParseError::Unsupported`], whose
//!   message names the construct; every error carries the byte position it
//!   is about ([`ParseError::pos`]);
//! - a parsed [`Expr`] is well typed: `rate` and `increase` hold a range
//!   selector, aggregations, arithmetic and `histogram_quantile` hold
//!   instant vectors (arithmetic with one number), a top-level range
//!   selector (which cannot be charted) is refused, and every [`Selector`]
//!   outside `rate`/`increase` has no range;
//! - every selector names its metric or has a matcher that does not match
//!   the empty string (as Prometheus requires), so no selector means "every
//!   series";
//! - every regular-expression matcher compiles with Prometheus's anchored
//!   semantics (`^(?s:re)$`);
//! - a number literal too large for a float is an error, as in Prometheus;
//! - hostile input is bounded: at most [`MAX_QUERY_BYTES`] bytes and
//!   [`MAX_DEPTH`] levels of nesting (an error, not a stack overflow), and
//!   the work is linear in the query's length.

pub mod api;
pub mod eval;
pub mod names;
mod parse;
pub mod store;

pub use parse::{
    parse, AggregateOp, BinaryOp, Expr, MatchOp, Matcher, ParseError, Selector, MAX_DEPTH,
    MAX_QUERY_BYTES, SUBSET,
};
