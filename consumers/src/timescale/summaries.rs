//! The trace summaries of the spans and calls a batch **inserted**, merged
//! per (tenant, trace) here and upserted into `trace_summaries` in the same
//! transaction as the rows themselves (`writer.rs`).
//!
//! What it guarantees: a summary row is the same whatever order, grouping
//! and repetition its trace's spans arrive in. The writer hands in only the
//! rows its insert really added (so a re-delivered or replayed span adds
//! nothing), and every field merges with an order-independent rule, here
//! and in [`UPSERT`]: least start, greatest end, counts and sums added,
//! status bits OR-ed, sets unioned, the root chosen by rank (a span without
//! a parent first, then the earliest start), user and session from the
//! earliest call naming one. This file is pure: it merges and renders the
//! rows, sorted by key, as the array parameters of one upsert (concurrent
//! writers lock summary rows in the same order and never deadlock).

use super::rows::{CallRecord, SpanRecord};
type HashMap<K, V> = std::collections::HashMap<K, V, super::FastHash>;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Set values are sent as one text, separated by this (never in a name we
/// store: control characters are rare and harmless to split on).
pub(super) const SEPARATOR: char = '\u{1f}';

/// Most values kept in a set (services, models, providers, environments).
pub const MAX_SET: usize = 64;

/// The upsert of [`Columns`]; every merge rule is order-independent.
pub const UPSERT: &str = "
INSERT INTO trace_summaries AS t (tenant, trace_id, start_time, end_time, duration_us, root_service,
    root_name, root_parented, root_start, span_count, statuses, llm_calls, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens, cost_usd, services, models,
    providers, environments, user_id, user_at, session_id, session_at)
SELECT d.tenant, d.trace_id, d.start_time, d.end_time,
       (extract(epoch FROM d.end_time - d.start_time) * 1000000)::bigint,
       d.root_service, d.root_name, d.root_parented, d.root_start, d.span_count, d.statuses, d.llm_calls,
       d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens, d.reasoning_tokens,
       d.input_tokens + d.output_tokens, d.cost_usd,
       string_to_array(d.services, E'\\x1f'), string_to_array(d.models, E'\\x1f'),
       string_to_array(d.providers, E'\\x1f'), string_to_array(d.environments, E'\\x1f'),
       d.user_id, d.user_at, d.session_id, d.session_at
FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[],
            $7::bool[], $8::timestamptz[], $9::int8[], $10::int2[], $11::int8[], $12::int8[], $13::int8[],
            $14::int8[], $15::int8[], $16::int8[], $17::float8[], $18::text[], $19::text[], $20::text[],
            $21::text[], $22::text[], $23::timestamptz[], $24::text[], $25::timestamptz[])
  AS d(tenant, trace_id, start_time, end_time, root_service, root_name, root_parented, root_start,
       span_count, statuses, llm_calls, input_tokens, output_tokens, cache_read_tokens,
       cache_write_tokens, reasoning_tokens, cost_usd, services, models, providers, environments,
       user_id, user_at, session_id, session_at)
ORDER BY d.tenant, d.trace_id
ON CONFLICT (tenant, trace_id) DO UPDATE SET
    start_time = least(t.start_time, EXCLUDED.start_time),
    end_time = greatest(t.end_time, EXCLUDED.end_time),
    duration_us = (extract(epoch FROM greatest(t.end_time, EXCLUDED.end_time)
                                     - least(t.start_time, EXCLUDED.start_time)) * 1000000)::bigint,
    root_service = CASE WHEN (EXCLUDED.root_parented, EXCLUDED.root_start) < (t.root_parented, t.root_start)
                        THEN EXCLUDED.root_service ELSE t.root_service END,
    root_name = CASE WHEN (EXCLUDED.root_parented, EXCLUDED.root_start) < (t.root_parented, t.root_start)
                     THEN EXCLUDED.root_name ELSE t.root_name END,
    root_parented = t.root_parented AND EXCLUDED.root_parented,
    root_start = CASE WHEN (EXCLUDED.root_parented, EXCLUDED.root_start) < (t.root_parented, t.root_start)
                      THEN EXCLUDED.root_start ELSE t.root_start END,
    span_count = t.span_count + EXCLUDED.span_count,
    statuses = t.statuses | EXCLUDED.statuses,
    llm_calls = t.llm_calls + EXCLUDED.llm_calls,
    input_tokens = t.input_tokens + EXCLUDED.input_tokens,
    output_tokens = t.output_tokens + EXCLUDED.output_tokens,
    cache_read_tokens = t.cache_read_tokens + EXCLUDED.cache_read_tokens,
    cache_write_tokens = t.cache_write_tokens + EXCLUDED.cache_write_tokens,
    reasoning_tokens = t.reasoning_tokens + EXCLUDED.reasoning_tokens,
    total_tokens = t.total_tokens + EXCLUDED.total_tokens,
    cost_usd = t.cost_usd + EXCLUDED.cost_usd,
    services = observatory_union(t.services, EXCLUDED.services),
    models = observatory_union(t.models, EXCLUDED.models),
    providers = observatory_union(t.providers, EXCLUDED.providers),
    environments = observatory_union(t.environments, EXCLUDED.environments),
    user_id = CASE WHEN t.user_at IS NULL OR EXCLUDED.user_at < t.user_at
                   THEN EXCLUDED.user_id ELSE t.user_id END,
    user_at = least(t.user_at, EXCLUDED.user_at),
    session_id = CASE WHEN t.session_at IS NULL OR EXCLUDED.session_at < t.session_at
                      THEN EXCLUDED.session_id ELSE t.session_id END,
    session_at = least(t.session_at, EXCLUDED.session_at)";

/// The status bit of an OTLP status code: 0 unset, 1 ok, 2 error.
pub fn status_bit(code: i16) -> i16 {
    match code {
        2 => 4,
        1 => 2,
        _ => 1,
    }
}

/// A time as PostgreSQL stores it: whole microseconds.
pub(super) fn micros(t: SystemTime) -> SystemTime {
    let us = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_micros();
    UNIX_EPOCH + Duration::from_micros(us as u64)
}

/// One trace's part of a batch.
#[derive(Debug, Clone, PartialEq)]
struct Summary<'a> {
    start: SystemTime,
    end: SystemTime,
    root: (bool, SystemTime, &'a str, &'a str),
    span_count: i64,
    statuses: i16,
    llm_calls: i64,
    tokens: [i64; 5],
    cost_usd: f64,
    services: Vec<&'a str>,
    models: Vec<&'a str>,
    providers: Vec<&'a str>,
    environments: Vec<&'a str>,
    user: Option<(SystemTime, &'a str)>,
    session: Option<(SystemTime, &'a str)>,
}

pub(super) fn add<'a>(set: &mut Vec<&'a str>, value: &'a str) {
    if !value.is_empty() && set.len() < MAX_SET && !set.contains(&value) {
        set.push(value);
    }
}

fn earliest<'a>(have: &mut Option<(SystemTime, &'a str)>, at: SystemTime, value: Option<&'a str>) {
    if let Some(v) = value {
        if have.is_none_or(|(t, old)| (at, v) < (t, old)) {
            *have = Some((at, v));
        }
    }
}

/// The summaries of a set of inserted spans and calls.
#[derive(Debug, Default)]
pub struct Summaries<'a> {
    traces: HashMap<(&'a str, [u8; 16]), Summary<'a>>,
}

impl<'a> Summaries<'a> {
    /// Merges `spans` and `calls` (each inserted by this transaction) by trace.
    pub fn of(
        spans: impl IntoIterator<Item = &'a SpanRecord>,
        calls: impl IntoIterator<Item = &'a CallRecord>,
    ) -> Summaries<'a> {
        let mut out = Summaries::default();
        for s in spans {
            let start = micros(s.start);
            let end = start + Duration::from_micros(s.duration_ns.max(0) as u64 / 1000);
            let root = (
                s.row.parent_span_id.is_some(),
                start,
                s.row.service.as_str(),
                s.row.name.as_str(),
            );
            let t = out
                .traces
                .entry((s.tenant.as_str(), s.row.trace_id))
                .or_insert_with(|| Summary {
                    start,
                    end,
                    root,
                    span_count: 0,
                    statuses: 0,
                    llm_calls: 0,
                    tokens: [0; 5],
                    cost_usd: 0.0,
                    services: Vec::new(),
                    models: Vec::new(),
                    providers: Vec::new(),
                    environments: Vec::new(),
                    user: None,
                    session: None,
                });
            t.start = t.start.min(start);
            t.end = t.end.max(end);
            if (root.0, root.1) < (t.root.0, t.root.1) {
                t.root = root;
            }
            t.span_count += 1;
            t.statuses |= status_bit(s.row.status_code);
            add(&mut t.services, &s.row.service);
        }
        for c in calls {
            // A call is always a span of the same transaction.
            let Some(t) = out.traces.get_mut(&(c.tenant.as_str(), c.trace_id)) else {
                continue;
            };
            let at = micros(c.start);
            t.llm_calls += 1;
            for (sum, n) in t.tokens.iter_mut().zip([
                c.input_tokens,
                c.output_tokens,
                c.cache_read_tokens,
                c.cache_write_tokens,
                c.reasoning_tokens,
            ]) {
                *sum += n.unwrap_or(0);
            }
            t.cost_usd += c.cost_usd.unwrap_or(0.0);
            add(&mut t.models, &c.model);
            add(&mut t.providers, &c.provider);
            add(&mut t.environments, &c.environment);
            earliest(&mut t.user, at, c.user_id.as_deref());
            earliest(&mut t.session, at, c.session_id.as_deref());
        }
        out
    }

    /// No trace, nothing to upsert.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// How many traces.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// The rows as one array per parameter of [`UPSERT`], sorted by key.
    pub fn columns(&self) -> Columns<'_> {
        let mut rows: Vec<_> = self.traces.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut c = Columns::default();
        let joined = |set: &[&str]| {
            let mut set = set.to_vec();
            set.sort_unstable();
            set.join(&SEPARATOR.to_string())
        };
        for ((tenant, trace_id), s) in rows {
            c.tenant.push(tenant);
            c.trace_id.push(&trace_id[..]);
            c.start.push(s.start);
            c.end.push(s.end);
            c.root_service.push(s.root.2);
            c.root_name.push(s.root.3);
            c.root_parented.push(s.root.0);
            c.root_start.push(s.root.1);
            c.span_count.push(s.span_count);
            c.statuses.push(s.statuses);
            c.llm_calls.push(s.llm_calls);
            for (column, n) in c.tokens.iter_mut().zip(s.tokens) {
                column.push(n);
            }
            c.cost_usd.push(s.cost_usd);
            c.services.push(joined(&s.services));
            c.models.push(joined(&s.models));
            c.providers.push(joined(&s.providers));
            c.environments.push(joined(&s.environments));
            c.user_id.push(s.user.map(|u| u.1));
            c.user_at.push(s.user.map(|u| u.0));
            c.session_id.push(s.session.map(|u| u.1));
            c.session_at.push(s.session.map(|u| u.0));
        }
        c
    }
}

/// The parameters of [`UPSERT`], in its order.
#[derive(Debug, Default)]
pub struct Columns<'a> {
    /// Tenant.
    pub tenant: Vec<&'a str>,
    /// Trace id.
    pub trace_id: Vec<&'a [u8]>,
    /// First start.
    pub start: Vec<SystemTime>,
    /// Last end.
    pub end: Vec<SystemTime>,
    /// Root service.
    pub root_service: Vec<&'a str>,
    /// Root span name.
    pub root_name: Vec<&'a str>,
    /// Whether the root stand-in has a parent.
    pub root_parented: Vec<bool>,
    /// The root's start.
    pub root_start: Vec<SystemTime>,
    /// Spans.
    pub span_count: Vec<i64>,
    /// Status bits.
    pub statuses: Vec<i16>,
    /// Model calls.
    pub llm_calls: Vec<i64>,
    /// Input, output, cache read, cache write, reasoning.
    pub tokens: [Vec<i64>; 5],
    /// Cost, USD.
    pub cost_usd: Vec<f64>,
    /// Services, joined.
    pub services: Vec<String>,
    /// Models, joined.
    pub models: Vec<String>,
    /// Providers, joined.
    pub providers: Vec<String>,
    /// Environments, joined.
    pub environments: Vec<String>,
    /// User of the earliest call naming one.
    pub user_id: Vec<Option<&'a str>>,
    /// That call's start.
    pub user_at: Vec<Option<SystemTime>>,
    /// Session of the earliest call naming one.
    pub session_id: Vec<Option<&'a str>>,
    /// That call's start.
    pub session_at: Vec<Option<SystemTime>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::span::SpanRow;

    fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        start_s: u64,
        ms: i64,
        status: i16,
    ) -> SpanRecord {
        SpanRecord {
            tenant: "t".into(),
            row: SpanRow {
                trace_id: [trace; 16],
                span_id: [id; 8],
                parent_span_id: parent.map(|p| [p; 8]),
                service: format!("svc-{id}"),
                name: format!("span-{id}"),
                status_code: status,
                ..SpanRow::default()
            },
            start: UNIX_EPOCH + Duration::from_secs(start_s),
            duration_ns: ms * 1_000_000,
            received_at: UNIX_EPOCH,
            resource_id: 0,
        }
    }

    type Picked = (Vec<String>, Vec<bool>, Vec<i64>, Vec<i16>, Vec<SystemTime>);

    fn columns_of(spans: &[SpanRecord]) -> Picked {
        let s = Summaries::of(spans, &[]);
        let c = s.columns();
        let names = c.root_name.iter().map(|n| n.to_string()).collect();
        (names, c.root_parented, c.span_count, c.statuses, c.end)
    }

    #[test]
    fn the_root_is_the_parentless_span_whatever_the_order() {
        let spans = [
            span(1, 2, Some(1), 100, 10, 0),
            span(1, 1, None, 101, 5_000, 2),
            span(1, 3, Some(1), 99, 10, 1),
        ];
        let forward = columns_of(&spans);
        let mut reversed = spans.to_vec();
        reversed.reverse();
        assert_eq!(forward, columns_of(&reversed));
        assert_eq!(forward.0, ["span-1"]);
        assert_eq!(forward.1, [false]);
        assert_eq!(forward.2, [3]);
        assert_eq!(forward.3, [7], "unset, ok and error seen");
        assert_eq!(forward.4, [UNIX_EPOCH + Duration::from_millis(106_000)]);
        // Without the root, the earliest span stands in, marked parented.
        let orphans = columns_of(&spans[..1]);
        assert_eq!(
            (orphans.0, orphans.1),
            (vec!["span-2".to_string()], vec![true])
        );
    }

    #[test]
    fn rows_are_sorted_by_key_and_sets_are_sorted_and_bounded() {
        let mut spans: Vec<SpanRecord> = (0..100)
            .map(|i| span(9 - (i % 10) as u8, i as u8, None, 1, 1, 0))
            .collect();
        spans.push(span(5, 7, None, 1, 1, 0));
        let s = Summaries::of(&spans, &[]);
        let c = s.columns();
        let ids: Vec<u8> = c.trace_id.iter().map(|id| id[0]).collect();
        assert_eq!(ids, (0..10).collect::<Vec<u8>>());
        let services: Vec<&str> = c.services[5].split(SEPARATOR).collect();
        assert_eq!(services.len(), 11);
        assert!(services.windows(2).all(|w| w[0] < w[1]));
        let many: Vec<SpanRecord> = (0..200).map(|i| span(1, i as u8, None, 1, 1, 0)).collect();
        assert_eq!(
            Summaries::of(&many, &[]).columns().services[0]
                .split(SEPARATOR)
                .count(),
            MAX_SET
        );
    }
}
