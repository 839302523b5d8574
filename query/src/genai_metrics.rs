//! LLM analytics from the OpenTelemetry GenAI metrics: what `/llm/metrics`
//! and `/llm/costs` read with `source=metrics`, and beside the spans with
//! `source=auto` (the default).
//!
//! Why: instrumentations record `gen_ai.client.operation.duration` and
//! `gen_ai.client.token.usage` for every call, also when the application
//! samples its traces; spans alone then undercount calls, tokens and cost.
//!
//! What it guarantees:
//! - calls are the observations of `gen_ai.client.operation.duration`
//!   (those with `error.type` are the errors); a (service, provider) that
//!   records token usage but no durations counts its input-token
//!   observations instead. Tokens are the sums of `gen_ai.client.token.usage`
//!   by `gen_ai.token.type` (`input`, `output`). Latency and TTFT
//!   percentiles come from the duration and
//!   `gen_ai.client.operation.time_to_first_chunk` histograms, each bucket
//!   mapped onto the rollups' log-scale buckets by its upper bound: never
//!   below the true value, but as coarse as the metric's buckets (the
//!   suggested ones double).
//! - cumulative points become increases (a new start time or a count that
//!   goes down is a restart; a series first seen inside the read counts
//!   from zero when it started inside it); delta points are added. Each
//!   increase belongs to the step of its point's time, so the answer is
//!   as fine as the application's export interval.
//! - cost: input tokens at the model's input price, output tokens at its
//!   output price, on the day of the point, from the same price table as
//!   the spans'. Metrics do not split cached input from the rest, so cache
//!   discounts are not applied: a cache-heavy workload is priced above its
//!   bill. A model without a price costs 0 and its calls are counted in
//!   `unpriced_calls`, as for spans.
//! - model is the response model, else the requested one; provider is
//!   normalized as for spans; service and environment come from the
//!   resource. Metrics carry no end user: `user` needs spans.
//! - `source=auto` never counts a call twice: where a (service, provider)
//!   has call metrics, its calls of those minutes are read from metrics and
//!   its spans of those minutes are left out ([`Cover`]). The covers are
//!   computed from all the tenant's GenAI series, whatever the filters, so
//!   filtered and grouped answers add up to the unfiltered one.

use crate::analytics::{Dim, Selection, Totals};
use observatory_schemas::genai::normalize_provider;
use observatory_schemas::histogram::bucket;
use observatory_schemas::pricing::PriceBook;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Client call duration, seconds.
pub const DURATION: &str = "gen_ai.client.operation.duration";
/// Client token usage, by `gen_ai.token.type`.
pub const TOKENS: &str = "gen_ai.client.token.usage";
/// Client time to the first streamed chunk, seconds.
pub const TTFT: &str = "gen_ai.client.operation.time_to_first_chunk";

/// How far before the window cumulative points are read, to find the base
/// of the window's first increase.
const LOOKBACK: Duration = Duration::from_secs(3_600);
/// The interval a delta point without a start time covers.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Where `/llm/metrics` and `/llm/costs` read calls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Metrics where they cover the calls, spans elsewhere.
    #[default]
    Auto,
    /// Spans only (what was traced).
    Spans,
    /// GenAI metrics only.
    Metrics,
}

impl Source {
    /// Parses `auto`, `spans` or `metrics`.
    pub fn parse(text: &str) -> Result<Source, String> {
        match text {
            "auto" => Ok(Source::Auto),
            "spans" => Ok(Source::Spans),
            "metrics" => Ok(Source::Metrics),
            _ => Err("auto, spans or metrics".into()),
        }
    }

    /// Its name in requests and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Auto => "auto",
            Source::Spans => "spans",
            Source::Metrics => "metrics",
        }
    }
}

/// What an answer was computed from.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Signal {
    /// The `source` asked for.
    pub requested: &'static str,
    /// `spans`, `metrics` or `both`.
    pub used: &'static str,
    /// Services whose numbers (some or all) came from GenAI metrics.
    pub metrics_services: Vec<String>,
}

impl Signal {
    /// What `requested` used, given whether spans and metrics gave rows.
    pub fn new(requested: Source, spans: bool, metrics: &FromMetrics) -> Signal {
        let from_metrics = !metrics.cells.is_empty();
        let used = match requested {
            Source::Spans => "spans",
            Source::Metrics => "metrics",
            Source::Auto if from_metrics && spans => "both",
            Source::Auto if from_metrics => "metrics",
            Source::Auto => "spans",
        };
        Signal {
            requested: requested.as_str(),
            used,
            metrics_services: metrics.services.iter().cloned().collect(),
        }
    }
}

/// A stretch of whole minutes, `[from, to)`, in which a (service,
/// provider)'s calls are read from metrics (and its spans left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Cover {
    /// Service.
    pub service: String,
    /// Provider, normalized.
    pub provider: String,
    /// First minute.
    pub from: SystemTime,
    /// End (exclusive).
    pub to: SystemTime,
}

/// The sums and histograms of one group in one step.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    /// Calls, errors, tokens, cost.
    pub totals: Totals,
    /// Call latency by the rollups' `le`.
    pub latency: Vec<(i16, i64)>,
    /// Time to first token by `le`.
    pub ttft: Vec<(i16, i64)>,
}

/// What the metrics contribute to an answer.
#[derive(Debug, Default)]
pub struct FromMetrics {
    /// Where spans must be left out.
    pub covers: Vec<Cover>,
    /// By (group values, step start in µs since the epoch; 0 for a whole
    /// window).
    pub cells: BTreeMap<(Vec<String>, i64), Cell>,
    /// Services with counted points.
    pub services: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Duration,
    InputTokens,
    OutputTokens,
    Ttft,
}

#[derive(Debug)]
struct Series {
    role: Role,
    cumulative: bool,
    /// Explicit bounds, or `None` for an exponential histogram.
    bounds: Option<Vec<f64>>,
    /// Milliseconds per unit of the metric.
    unit_ms: f64,
    service: String,
    provider: String,
    model: String,
    environment: String,
    error: bool,
    /// Whether calls are counted from it (durations, or input tokens where
    /// the (service, provider) records no durations).
    counts_calls: bool,
    /// Passes the filters; its group's values.
    group: Option<Vec<String>>,
}

/// One stored histogram point, its buckets mapped onto the rollups' `le`.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    time: SystemTime,
    start: Option<SystemTime>,
    count: i64,
    sum: f64,
    hist: Vec<(i16, i64)>,
}

impl Point {
    /// This point less `before`, or `None` when this one restarted the
    /// stream (a new start time, a count that went down).
    fn less(&self, before: &Point) -> Option<Point> {
        if self.start != before.start || self.count < before.count {
            return None;
        }
        let mut hist: BTreeMap<i16, i64> = self.hist.iter().copied().collect();
        for (le, c) in &before.hist {
            *hist.entry(*le).or_default() -= c;
        }
        Some(Point {
            count: self.count - before.count,
            sum: self.sum - before.sum,
            hist: hist.into_iter().filter(|(_, c)| *c > 0).collect(),
            ..self.clone()
        })
    }
}

/// An explicit histogram's counts by the rollups' `le`: each bucket at its
/// upper bound, the overflow bucket at the last bound (at least that).
fn explicit_hist(bounds: &[f64], counts: &[i64], unit_ms: f64) -> Vec<(i16, i64)> {
    let mut out: BTreeMap<i16, i64> = BTreeMap::new();
    for (i, c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let Some(upper) = bounds.get(i).or(bounds.last()) else {
            continue;
        };
        *out.entry(bucket(upper * unit_ms)).or_default() += c;
    }
    out.into_iter().collect()
}

/// An exponential histogram's positive buckets (and its zero bucket) by `le`.
fn exponential_hist(
    scale: i32,
    offset: i32,
    zero: i64,
    counts: &[i64],
    unit_ms: f64,
) -> Vec<(i16, i64)> {
    let mut out: BTreeMap<i16, i64> = BTreeMap::new();
    if zero > 0 {
        *out.entry(0).or_default() += zero;
    }
    let base_log2 = 2f64.powi(-scale);
    for (i, c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let index = i64::from(offset) + i as i64;
        let upper = 2f64.powf((index + 1) as f64 * base_log2);
        *out.entry(bucket(upper * unit_ms)).or_default() += c;
    }
    out.into_iter().collect()
}

fn unit_ms(unit: &str) -> f64 {
    match unit {
        "ms" => 1.0,
        "us" | "µs" => 0.001,
        "ns" => 0.000_001,
        "min" => 60_000.0,
        _ => 1000.0, // "s", as the conventions say
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn at_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// Whole minutes around `[from, to]`.
fn minutes(from: SystemTime, to: SystemTime) -> (SystemTime, SystemTime) {
    const MIN: i64 = 60_000_000;
    let f = micros(from).div_euclid(MIN) * MIN;
    let t = (micros(to) + MIN - 1).div_euclid(MIN) * MIN;
    (at_micros(f), at_micros(t.max(f + MIN)))
}

/// Merges each (service, provider)'s stretches that touch or overlap.
fn merge(mut covers: Vec<Cover>) -> Vec<Cover> {
    covers
        .sort_by(|a, b| (&a.service, &a.provider, a.from).cmp(&(&b.service, &b.provider, b.from)));
    let mut out: Vec<Cover> = Vec::new();
    for c in covers {
        match out.last_mut() {
            Some(last)
                if last.service == c.service
                    && last.provider == c.provider
                    && c.from <= last.to =>
            {
                last.to = last.to.max(c.to);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The value of `dim` for a series.
fn dim_value(s: &Series, dim: Dim) -> &str {
    match dim {
        Dim::Model => &s.model,
        Dim::Provider => &s.provider,
        Dim::Service => &s.service,
        Dim::Environment => &s.environment,
        Dim::User => "",
    }
}

/// The columns every points query returns, in the order `read` takes them.
const POINT_COLUMNS: &str = "series_id, time, start_time, count, coalesce(sum, 0)::float8, \
     coalesce(buckets, '{}'), coalesce(exp_scale, 0), coalesce(exp_offset, 0), \
     coalesce(exp_zero_count, 0)::int8";

/// The points of `ids` over `[fetch_from, window.to)`, ordered by series
/// and time, reduced to one per `bin` seconds (bins aligned on the
/// window's start) where that gives the same increases: a cumulative
/// stream's last point of each bin and start time (a restart starts a new
/// row), a delta stream's sums over each bin (their bucket counts summed
/// only when `buckets`; exponential delta points, whose scales differ, are
/// read whole). So a month is ~720 rows per series, not ~43 000.
#[allow(clippy::too_many_arguments)]
async fn fetch(
    client: &tokio_postgres::Client,
    series: &HashMap<i64, Series>,
    ids: &[i64],
    fetch_from: SystemTime,
    window: crate::filters::Range,
    bin: u64,
    buckets: bool,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let reduce = bin > 60;
    let mut raw = Vec::new();
    let mut cumulative = Vec::new();
    let mut delta = Vec::new();
    for id in ids {
        let s = &series[id];
        match (reduce, s.cumulative, s.bounds.is_some()) {
            (true, true, _) => cumulative.push(*id),
            (true, false, true) => delta.push(*id),
            _ => raw.push(*id),
        }
    }
    let secs = bin as f64;
    let mut rows = Vec::new();
    if !raw.is_empty() {
        rows.extend(
            client
                .query(
                    &format!(
                        "SELECT {POINT_COLUMNS} FROM metric_points
                          WHERE series_id = ANY($1) AND time >= $2 AND time < $3 AND count IS NOT NULL"
                    ),
                    &[&raw, &fetch_from, &window.to],
                )
                .await?,
        );
    }
    if !cumulative.is_empty() {
        rows.extend(
            client
                .query(
                    &format!(
                        "SELECT DISTINCT ON (series_id, date_bin(make_interval(secs => $4), time, $5), start_time)
                                {POINT_COLUMNS}
                           FROM metric_points
                          WHERE series_id = ANY($1) AND time >= $2 AND time < $3 AND count IS NOT NULL
                          ORDER BY series_id, date_bin(make_interval(secs => $4), time, $5), start_time, time DESC"
                    ),
                    &[&cumulative, &fetch_from, &window.to, &secs, &window.from],
                )
                .await?,
        );
    }
    if !delta.is_empty() {
        rows.extend(
            client
                .query(
                    "WITH p AS (
                         SELECT series_id, date_bin(make_interval(secs => $4), time, $5) AS bin, time,
                                start_time, count, coalesce(sum, 0) AS sum, buckets
                           FROM metric_points
                          WHERE series_id = ANY($1) AND time >= $2 AND time < $3 AND count IS NOT NULL),
                     b AS (
                         SELECT series_id, bin, u.i, sum(u.v)::int8 AS v
                           FROM p, unnest(p.buckets) WITH ORDINALITY AS u(v, i)
                          WHERE $6 GROUP BY 1, 2, 3)
                     SELECT p.series_id, max(p.time), min(p.start_time), sum(p.count)::int8,
                            sum(p.sum)::float8,
                            coalesce((SELECT array_agg(b.v ORDER BY b.i) FROM b
                                       WHERE b.series_id = p.series_id AND b.bin = p.bin), '{}'),
                            0, 0, 0::int8
                       FROM p GROUP BY p.series_id, p.bin",
                    &[&delta, &fetch_from, &window.to, &secs, &window.from, &buckets],
                )
                .await?,
        );
    }
    rows.sort_by_key(|r| (r.get::<_, i64>(0), r.get::<_, SystemTime>(1)));
    Ok(rows)
}

/// Reads the tenant's GenAI metrics over the selection's window, in steps
/// of `step` seconds (aligned on the epoch, as the rollups' buckets) or as
/// one whole-window cell when `step` is `None`.
pub async fn read(
    client: &tokio_postgres::Client,
    tenant: &str,
    sel: &Selection,
    step: Option<u64>,
    prices: &PriceBook,
) -> Result<FromMetrics, tokio_postgres::Error> {
    let names = vec![DURATION, TOKENS, TTFT];
    // Series are touched once a day: two days back finds every live one.
    let seen_since = sel
        .range
        .from
        .checked_sub(Duration::from_secs(2 * 86_400))
        .unwrap_or(UNIX_EPOCH);
    let rows = client
        .query(
            "SELECT s.series_id, s.name, s.kind, s.temporality, s.unit, s.service, s.bounds,
                    coalesce(nullif(s.attributes ->> 'gen_ai.response.model', ''),
                             nullif(s.attributes ->> 'gen_ai.request.model', ''), 'unknown'),
                    coalesce(s.attributes ->> 'gen_ai.provider.name', s.attributes ->> 'gen_ai.system', ''),
                    coalesce(s.attributes ->> 'gen_ai.token.type', ''),
                    coalesce(s.attributes ->> 'error.type', ''),
                    coalesce(r.attributes ->> 'deployment.environment.name',
                             r.attributes ->> 'deployment.environment', '')
               FROM metric_series s
               LEFT JOIN resources r ON r.tenant = s.tenant AND r.id = s.resource_id
              WHERE s.tenant = $1 AND s.name = ANY($2) AND s.kind IN (3, 4) AND s.last_seen >= $3",
            &[&tenant, &names, &seen_since],
        )
        .await?;
    let mut series: HashMap<i64, Series> = HashMap::new();
    for r in &rows {
        let name: &str = r.get(1);
        let token_type: &str = r.get(9);
        let role = match (name, token_type) {
            (DURATION, _) => Role::Duration,
            (TTFT, _) => Role::Ttft,
            (_, "input") => Role::InputTokens,
            (_, "output") => Role::OutputTokens,
            _ => continue,
        };
        let provider: &str = r.get(8);
        let provider = if provider.trim().is_empty() {
            "unknown".to_owned()
        } else {
            normalize_provider(provider, false)
        };
        let bounds: Option<Vec<f64>> = r.get(6);
        series.insert(
            r.get(0),
            Series {
                role,
                cumulative: r.get::<_, i16>(3) == 2,
                bounds: (r.get::<_, i16>(2) == 3).then(|| bounds.unwrap_or_default()),
                unit_ms: unit_ms(r.get(4)),
                service: r.get(5),
                provider,
                model: r.get(7),
                environment: r.get(11),
                error: !r.get::<_, &str>(10).is_empty(),
                counts_calls: false,
                group: None,
            },
        );
    }
    // Calls: durations where a (service, provider) has them, else input tokens.
    let timed: HashSet<(String, String)> = series
        .values()
        .filter(|s| s.role == Role::Duration)
        .map(|s| (s.service.clone(), s.provider.clone()))
        .collect();
    for s in series.values_mut() {
        s.counts_calls = match s.role {
            Role::Duration => true,
            Role::InputTokens => !timed.contains(&(s.service.clone(), s.provider.clone())),
            _ => false,
        };
        let kept = sel
            .filters
            .iter()
            .all(|(dim, value)| dim_value(s, *dim) == value);
        if kept {
            s.group = Some(
                sel.group_by
                    .iter()
                    .map(|d| dim_value(s, *d).to_owned())
                    .collect(),
            );
        }
    }
    let ids: Vec<i64> = series
        .iter()
        .filter(|(_, s)| s.counts_calls || s.group.is_some())
        .map(|(id, _)| *id)
        .collect();
    let mut out = FromMetrics::default();
    if ids.is_empty() {
        return Ok(out);
    }
    let fetch_from = sel.range.from.checked_sub(LOOKBACK).unwrap_or(UNIX_EPOCH);
    let bin = step.unwrap_or(3_600);
    let rows = fetch(
        client,
        &series,
        &ids,
        fetch_from,
        sel.range,
        bin,
        step.is_some(),
    )
    .await?;
    let (from, to) = (sel.range.from, sel.range.to);
    let mut covers = Vec::new();
    let mut previous: Option<(i64, Point)> = None;
    for r in &rows {
        let id: i64 = r.get(0);
        let s = &series[&id];
        let counts: Vec<i64> = r.get(5);
        let point = Point {
            time: r.get(1),
            start: r.get(2),
            count: r.get(3),
            sum: r.get(4),
            hist: match &s.bounds {
                Some(bounds) => explicit_hist(bounds, &counts, s.unit_ms),
                None => exponential_hist(r.get(6), r.get(7), r.get(8), &counts, s.unit_ms),
            },
        };
        let before = match previous.take() {
            Some((pid, p)) if pid == id => Some(p),
            _ => None,
        };
        // The increase this point brings, and the time it covers.
        let increase = match (&before, s.cumulative) {
            (_, false) => Some((
                point.clone(),
                point.start.unwrap_or(point.time - DEFAULT_INTERVAL),
            )),
            (Some(b), true) => match point.less(b) {
                Some(d) => Some((d, b.time)),
                None => Some((point.clone(), point.start.unwrap_or(b.time))),
            },
            // First point read: it counts whole only if the stream started
            // inside the read; otherwise it is only the base of the next.
            (None, true) => point
                .start
                .filter(|start| *start >= fetch_from)
                .map(|start| (point.clone(), start)),
        };
        previous = Some((id, point));
        let Some((d, covered_from)) = increase else {
            continue;
        };
        if d.time < from || d.time >= to || d.count <= 0 {
            continue;
        }
        if s.counts_calls {
            let (f, t) = minutes(covered_from.min(d.time), d.time);
            covers.push(Cover {
                service: s.service.clone(),
                provider: s.provider.clone(),
                from: f,
                to: t,
            });
        }
        let Some(group) = &s.group else {
            continue;
        };
        let at = match step {
            Some(step) => {
                let step = step as i64 * 1_000_000;
                micros(d.time).div_euclid(step) * step
            }
            None => 0,
        };
        out.services.insert(s.service.clone());
        let cell = out.cells.entry((group.clone(), at)).or_default();
        let price = prices.lookup(&s.model, micros(d.time).max(0) as u64 * 1000);
        match s.role {
            Role::Duration => {
                cell.totals.calls += d.count;
                if s.error {
                    cell.totals.errors += d.count;
                }
                if price.is_none() {
                    cell.totals.unpriced_calls += d.count;
                }
                cell.latency.extend(d.hist);
            }
            Role::Ttft => cell.ttft.extend(d.hist),
            Role::InputTokens => {
                if s.counts_calls {
                    cell.totals.calls += d.count;
                    if price.is_none() {
                        cell.totals.unpriced_calls += d.count;
                    }
                }
                cell.totals.input_tokens += d.sum.round() as i64;
                cell.totals.cost_usd += price.map_or(0.0, |p| d.sum * p.input / 1e6);
            }
            Role::OutputTokens => {
                cell.totals.output_tokens += d.sum.round() as i64;
                cell.totals.cost_usd += price.map_or(0.0, |p| d.sum * p.output / 1e6);
            }
        }
    }
    for cell in out.cells.values_mut() {
        cell.totals.finish();
        cell.latency.sort_unstable();
        cell.ttft.sort_unstable();
    }
    out.covers = merge(covers);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::histogram::upper_bound_ms;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn explicit_buckets_land_at_their_upper_bound() {
        // Bounds 0.01, 0.02, 0.04 s; counts 1, 2, 0 and 3 overflowing.
        let h = explicit_hist(&[0.01, 0.02, 0.04], &[1, 2, 0, 3], 1000.0);
        assert_eq!(
            h,
            vec![(bucket(10.0), 1), (bucket(20.0), 2), (bucket(40.0), 3)]
        );
        for (le, _) in &h {
            assert!(upper_bound_ms(*le) >= 10.0);
        }
    }

    #[test]
    fn exponential_buckets_land_at_their_upper_bound() {
        // Scale 0: bucket index i holds (2^i, 2^(i+1)] seconds.
        let h = exponential_hist(0, 1, 4, &[5, 0, 1], 1000.0);
        assert_eq!(h, vec![(0, 4), (bucket(4_000.0), 5), (bucket(16_000.0), 1)]);
    }

    #[test]
    fn a_cumulative_point_less_its_base_and_restarts() {
        let p = |time, start, count, sum: f64, hist: Vec<(i16, i64)>| Point {
            time: t(time),
            start: Some(t(start)),
            count,
            sum,
            hist,
        };
        let a = p(60, 0, 3, 30.0, vec![(10, 2), (20, 1)]);
        let b = p(120, 0, 5, 70.0, vec![(10, 3), (20, 2)]);
        assert_eq!(b.less(&a), Some(p(120, 0, 2, 40.0, vec![(10, 1), (20, 1)])));
        let restarted = p(180, 150, 1, 5.0, vec![(10, 1)]);
        assert_eq!(restarted.less(&b), None, "new start time");
        let lower = p(180, 0, 4, 50.0, vec![(10, 4)]);
        assert_eq!(lower.less(&b), None, "count went down");
    }

    #[test]
    fn covers_are_whole_minutes_merged_per_service_and_provider() {
        let c = |service: &str, from, to| {
            let (from, to) = minutes(t(from), t(to));
            Cover {
                service: service.into(),
                provider: "openai".into(),
                from,
                to,
            }
        };
        let merged = merge(vec![
            c("a", 130, 190),
            c("a", 70, 130),
            c("b", 70, 130),
            c("a", 600, 660),
        ]);
        assert_eq!(merged.len(), 3, "{merged:?}");
        assert_eq!((merged[0].from, merged[0].to), (t(60), t(240)));
        assert_eq!((merged[1].from, merged[1].to), (t(600), t(660)));
        assert_eq!(merged[2].service, "b");
    }

    #[test]
    fn sources_parse_and_say_what_they_used() {
        assert_eq!(Source::parse("auto"), Ok(Source::Auto));
        assert!(Source::parse("traces").is_err());
        let mut m = FromMetrics::default();
        assert_eq!(Signal::new(Source::Auto, true, &m).used, "spans");
        m.cells.insert((vec![], 0), Cell::default());
        m.services.insert("svc".into());
        assert_eq!(Signal::new(Source::Auto, true, &m).used, "both");
        assert_eq!(Signal::new(Source::Auto, false, &m).used, "metrics");
        assert_eq!(Signal::new(Source::Spans, true, &m).used, "spans");
        assert_eq!(
            Signal::new(Source::Metrics, false, &m).metrics_services,
            ["svc"]
        );
    }
}
