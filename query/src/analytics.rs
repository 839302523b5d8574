//! LLM analytics: `GET /api/v1/llm/metrics` (time series), `GET
//! /api/v1/llm/costs` (totals, top-N breakdowns and budget use) and `GET
//! /api/v1/models` (models seen, with their current prices).
//!
//! What it guarantees: answers come from the per-minute rollups the
//! PostgreSQL sink keeps (`llm_rollup_1m`, `llm_latency_1m`), so their cost
//! does not grow with the number of calls; only a grouping or filter by
//! user, which the rollups do not keep, reads `llm_calls`, with the same
//! sums and the same histogram buckets, so both sources give the same
//! numbers. Windows are widened to whole buckets (echoed as `from`/`to`).
//! Percentiles are read from the latency histogram
//! ([`observatory_schemas::histogram`]): the upper bound of the bucket
//! holding the rank, so at most 19% above the exact value, never below it.
//! Grouping columns come from a closed enum; every value is bound.
//!
//! `source` chooses where calls are read from: `spans` (the rollups),
//! `metrics` (the GenAI metrics, [`crate::genai_metrics`]) or `auto`, the
//! default: metrics where they cover a (service, provider)'s minutes, its
//! spans elsewhere, never both for the same calls. The answer's `signal`
//! says which were used.

use crate::filters::{format_time, parse_in, Params, Range};
use crate::genai_metrics::{self, Cover, FromMetrics, Signal, Source};
use crate::problem::Problem;
use crate::sql::Sql;
use observatory_schemas::histogram::upper_bound_ms;
use observatory_schemas::pricing::PriceBook;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A dimension to group or filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    /// Billed model.
    Model,
    /// Provider.
    Provider,
    /// Service.
    Service,
    /// Deployment environment.
    Environment,
    /// End user (`llm_calls` only).
    User,
}

impl Dim {
    const ALL: [Dim; 5] = [
        Dim::Model,
        Dim::Provider,
        Dim::Service,
        Dim::Environment,
        Dim::User,
    ];

    /// Its name in requests and responses.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Model => "model",
            Dim::Provider => "provider",
            Dim::Service => "service",
            Dim::Environment => "environment",
            Dim::User => "user",
        }
    }

    /// Its column (the same name in the rollups and in `llm_calls`).
    fn column(self) -> &'static str {
        match self {
            Dim::User => "coalesce(user_id, '')",
            other => other.name(),
        }
    }
}

/// Parses `group_by=model,service`.
pub fn parse_group_by(text: &str) -> Result<Vec<Dim>, String> {
    let mut dims = Vec::new();
    for part in text.split(',') {
        let dim = Dim::ALL
            .into_iter()
            .find(|d| d.name() == part)
            .ok_or_else(|| {
                format!("{part:?} is not one of model, provider, service, environment, user")
            })?;
        if dims.contains(&dim) {
            return Err(format!("{part} is given twice"));
        }
        dims.push(dim);
    }
    Ok(dims)
}

/// Bucket widths a series may use.
pub const BUCKETS: [(&str, u64); 9] = [
    ("1m", 60),
    ("5m", 300),
    ("10m", 600),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("6h", 21_600),
    ("12h", 43_200),
    ("1d", 86_400),
];

/// The most points one series may have.
pub const MAX_POINTS: u64 = 1500;
/// The longest window of an analytics query.
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 86_400);

/// The dimensions and equality filters shared by metrics and costs.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The window, widened to whole buckets.
    pub range: Range,
    /// Group by these, in this order.
    pub group_by: Vec<Dim>,
    /// Keep only rows with these values.
    pub filters: Vec<(Dim, String)>,
    /// Where calls are read from.
    pub source: Source,
}

impl Selection {
    fn take(p: &mut Params, now: SystemTime, default: Duration) -> Result<Selection, Problem> {
        let range = Range::take(p, now, default, MAX_RANGE)?;
        let group_by = p.parsed("group_by", parse_group_by)?.unwrap_or_default();
        let mut filters = Vec::new();
        for dim in Dim::ALL {
            if let Some(v) = p.one(dim.name())? {
                filters.push((dim, v));
            }
        }
        let source = p.parsed("source", Source::parse)?.unwrap_or_default();
        let selection = Selection {
            range,
            group_by,
            filters,
            source,
        };
        if source == Source::Metrics && selection.needs_calls() {
            return Err(Problem::bad_parameter(
                "source",
                "GenAI metrics carry no user: group or filter by user with source=spans or auto",
            ));
        }
        Ok(selection)
    }

    /// Whether the GenAI metrics are read (`auto` with `user` reads spans
    /// only: metrics carry no user).
    fn reads_metrics(&self) -> bool {
        match self.source {
            Source::Spans => false,
            Source::Metrics => true,
            Source::Auto => !self.needs_calls(),
        }
    }

    /// Whether the spans are read.
    fn reads_spans(&self) -> bool {
        self.source != Source::Metrics
    }

    /// Whether only `llm_calls` can answer (the rollups keep no user).
    fn needs_calls(&self) -> bool {
        self.group_by.contains(&Dim::User) || self.filters.iter().any(|(d, _)| *d == Dim::User)
    }

    /// `WHERE` for `tenant`, on the time column `time`, over the window.
    fn where_clause(&self, sql: &mut Sql, tenant: &str, time: &str) {
        self.where_between(sql, tenant, time, self.range.from, self.range.to)
    }

    /// `WHERE` for `tenant`, on the time column `time`, over `[from, to)`.
    fn where_between(
        &self,
        sql: &mut Sql,
        tenant: &str,
        time: &str,
        from: SystemTime,
        to: SystemTime,
    ) {
        let t = sql.bind(tenant.to_owned());
        let from = sql.bind(from);
        let to = sql.bind(to);
        sql.push(&format!(
            " WHERE tenant = {t} AND {time} >= {from} AND {time} < {to}"
        ));
        for (dim, value) in &self.filters {
            let v = sql.bind(value.clone());
            sql.push(&format!(" AND {} = {v}", dim.column()));
        }
    }

    fn group_columns(&self) -> String {
        self.group_by
            .iter()
            .map(|d| format!(", {}", d.column()))
            .collect()
    }
}

/// A checked `/llm/metrics` request.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// What to read.
    pub selection: Selection,
    /// Bucket width, seconds.
    pub step: u64,
}

impl MetricsQuery {
    /// Reads `from`, `to`, `bucket`, `group_by` and the filters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<MetricsQuery, Problem> {
        let selection = Selection::take(p, now, Duration::from_secs(86_400))?;
        let span = selection
            .range
            .to
            .duration_since(selection.range.from)
            .unwrap_or_default();
        let step = match p.one("bucket")? {
            Some(b) => BUCKETS
                .iter()
                .find(|(name, _)| *name == b)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    let names: Vec<&str> = BUCKETS.iter().map(|(n, _)| *n).collect();
                    Problem::bad_parameter("bucket", format!("one of {}", names.join(", ")))
                })?,
            // The finest bucket that keeps the series under 300 points.
            None => BUCKETS
                .iter()
                .map(|(_, s)| *s)
                .find(|s| span.as_secs().div_ceil(*s) <= 300)
                .unwrap_or(86_400),
        };
        p.finish()?;
        if span.as_secs().div_ceil(step) > MAX_POINTS {
            return Err(Problem::bad_parameter(
                "bucket",
                format!("more than {MAX_POINTS} points: use a wider bucket or a shorter range"),
            ));
        }
        Ok(MetricsQuery {
            selection: Selection {
                range: selection.range.aligned(Duration::from_secs(step)),
                ..selection
            },
            step,
        })
    }
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Time-to-first-token percentiles, ms.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ttft {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// Sums over a bucket or a group.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Calls.
    pub calls: i64,
    /// Failed calls.
    pub errors: i64,
    /// errors / calls.
    pub error_rate: f64,
    /// Input tokens, cache included.
    pub input_tokens: i64,
    /// Output tokens, reasoning included.
    pub output_tokens: i64,
    /// Cache reads.
    pub cache_read_tokens: i64,
    /// Cache writes.
    pub cache_write_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// Cost, USD (calls of unpriced models count 0).
    pub cost_usd: f64,
    /// Calls whose model has no price.
    pub unpriced_calls: i64,
}

impl Totals {
    pub(crate) fn add(&mut self, other: &Totals) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.cost_usd += other.cost_usd;
        self.unpriced_calls += other.unpriced_calls;
        self.finish();
    }

    pub(crate) fn finish(&mut self) {
        self.error_rate = if self.calls > 0 {
            self.errors as f64 / self.calls as f64
        } else {
            0.0
        };
    }
}

/// One point of a series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Bucket start, RFC 3339.
    pub time: String,
    /// The sums.
    #[serde(flatten)]
    pub totals: Totals,
    /// Call latency percentiles.
    pub latency_ms: Option<Latency>,
    /// Time to first token percentiles (streaming calls only).
    pub ttft_ms: Option<Ttft>,
}

/// One series: a group and its points (buckets without calls are left out).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// The group's values, by dimension name.
    pub group: BTreeMap<&'static str, String>,
    /// Its points, oldest first.
    pub points: Vec<Point>,
}

/// The `/llm/metrics` answer.
#[derive(Debug, Serialize)]
pub struct MetricsAnswer {
    /// The window, widened to whole buckets.
    pub from: String,
    /// Its end.
    pub to: String,
    /// The bucket width.
    pub bucket: &'static str,
    /// The grouping.
    pub group_by: Vec<&'static str>,
    /// The spans' table: `rollups_1m`, `rollups_1h` or `llm_calls`.
    pub source: &'static str,
    /// Spans, metrics or both.
    pub signal: Signal,
    /// One series per group.
    pub series: Vec<Series>,
}

/// The value at rank `ceil(q * n)` of a histogram (`le` ascending): the
/// upper bound of its bucket.
///
/// ```
/// use observatory_api::analytics::percentile;
/// use observatory_schemas::histogram::{bucket, upper_bound_ms};
/// let h = [(bucket(100.0), 9), (bucket(1000.0), 1)];
/// assert_eq!(percentile(&h, 0.5), Some(upper_bound_ms(bucket(100.0))));
/// assert_eq!(percentile(&h, 0.95), Some(upper_bound_ms(bucket(1000.0))));
/// ```
pub fn percentile(histogram: &[(i16, i64)], q: f64) -> Option<f64> {
    let n: i64 = histogram.iter().map(|(_, c)| *c).sum();
    if n <= 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
    let mut seen = 0;
    for (le, count) in histogram {
        seen += count;
        if seen >= rank {
            return Some(upper_bound_ms(*le));
        }
    }
    histogram.last().map(|(le, _)| upper_bound_ms(*le))
}

type GroupKey = Vec<String>;
/// Histogram counts by `le`.
type Hist = Vec<(i16, i64)>;
/// One bucket of a series being built: start, sums, latency and TTFT histograms.
type Bucket = (SystemTime, Totals, Hist, Hist);

fn bucket_expr(sql: &mut Sql, step: u64, time: &str) -> String {
    let s = sql.bind(step as f64);
    format!("date_bin(make_interval(secs => {s}), {time}, TIMESTAMPTZ '2000-01-01 00:00:00+00')")
}

/// The columns the minute and hour rollups share.
const ROLLUP_COLUMNS: &str = "bucket, tenant, service, provider, model, environment, calls, \
     errors, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
     reasoning_tokens, cost_usd, unpriced_calls";

/// The columns the minute and hour latency histograms share.
const LATENCY_COLUMNS: &str =
    "bucket, tenant, service, provider, model, environment, metric, le, count";

/// Whether buckets of `step` seconds can be read from the hourly rollups.
fn hourly(step: u64) -> bool {
    step.is_multiple_of(3600)
}

/// The whole hours inside a window: `[first, last)`, empty when `first >= last`.
fn whole_hours(range: Range) -> (SystemTime, SystemTime) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let from = secs(range.from);
    let first = from.as_secs().div_ceil(3600) * 3600
        + u64::from(from.subsec_nanos() > 0 && from.as_secs() % 3600 == 0) * 3600;
    let last = secs(range.to).as_secs() / 3600 * 3600;
    (
        UNIX_EPOCH + Duration::from_secs(first),
        UNIX_EPOCH + Duration::from_secs(last),
    )
}

/// The hours of `[first, last)` a cover starts or ends inside: the hourly
/// rollups cannot tell their covered minutes from the others.
fn split_hours(covers: &[Cover], first: SystemTime, last: SystemTime) -> Vec<SystemTime> {
    let mut hours: Vec<SystemTime> = covers
        .iter()
        .flat_map(|c| [c.from, c.to])
        .filter_map(|t| {
            let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
            let hour = UNIX_EPOCH + Duration::from_secs(secs / 3600 * 3600);
            (secs % 3600 != 0 && hour >= first && hour < last).then_some(hour)
        })
        .collect();
    hours.sort_unstable();
    hours.dedup();
    hours
}

/// Leaves out the rows of the (service, provider, minute)s that metrics cover.
fn exclude_covers(sql: &mut Sql, covers: &[Cover]) {
    if covers.is_empty() {
        return;
    }
    let s = sql.bind(covers.iter().map(|c| c.service.clone()).collect::<Vec<_>>());
    let p = sql.bind(
        covers
            .iter()
            .map(|c| c.provider.clone())
            .collect::<Vec<_>>(),
    );
    let f = sql.bind(covers.iter().map(|c| c.from).collect::<Vec<_>>());
    let t = sql.bind(covers.iter().map(|c| c.to).collect::<Vec<_>>());
    sql.push(&format!(
        " AND NOT EXISTS (SELECT 1 FROM unnest({s}::text[], {p}::text[], {f}::timestamptz[], \
         {t}::timestamptz[]) AS c(s, p, f, t) \
         WHERE c.s = service AND c.p = provider AND bucket >= c.f AND bucket < c.t)"
    ));
}

/// The rollup rows (`columns`) of the window, as a `UNION ALL` of reads:
/// when `use_hours`, whole hours from the hourly table `tables.0` except
/// the hours a cover splits, everything else from the minute table
/// `tables.1`; rows inside a cover left out.
fn rollup_rows(
    sql: &mut Sql,
    sel: &Selection,
    tenant: &str,
    columns: &str,
    tables: (&str, &str),
    use_hours: bool,
    covers: &[Cover],
) {
    let (hour_table, minute_table) = tables;
    let (first, last) = whole_hours(sel.range);
    let mut parts = 0;
    let mut part = |sql: &mut Sql, table: &str, from: SystemTime, to: SystemTime| {
        if parts > 0 {
            sql.push(" UNION ALL ");
        }
        parts += 1;
        sql.push(&format!("SELECT {columns} FROM {table}"));
        sel.where_between(sql, tenant, "bucket", from, to);
        exclude_covers(sql, covers);
    };
    if !use_hours || first >= last {
        part(sql, minute_table, sel.range.from, sel.range.to);
        return;
    }
    let split = split_hours(covers, first, last);
    part(sql, hour_table, first, last);
    if !split.is_empty() {
        let h = sql.bind(split.clone());
        sql.push(&format!(" AND bucket <> ALL({h})"));
        part(sql, minute_table, first, last);
        let h = sql.bind(split);
        sql.push(&format!(
            " AND date_bin('1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') = ANY({h})"
        ));
    }
    if sel.range.from < first {
        part(sql, minute_table, sel.range.from, first);
    }
    if last < sel.range.to {
        part(sql, minute_table, last, sel.range.to);
    }
}

/// The sums per (bucket of `step`, group), or per group over the whole
/// window when `step` is `None`, of the spans outside `covers`. Rollups:
/// hour buckets and a whole window's whole hours from the hourly tables,
/// the rest from the minute ones.
fn sums_sql(sel: &Selection, tenant: &str, step: Option<u64>, covers: &[Cover]) -> Sql {
    let mut sql = Sql::default();
    let groups = sel.group_columns();
    if sel.needs_calls() {
        let sums = "count(*)::int8, count(*) FILTER (WHERE is_error)::int8, \
             coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8, \
             coalesce(sum(cache_read_tokens), 0)::int8, coalesce(sum(cache_write_tokens), 0)::int8, \
             coalesce(sum(reasoning_tokens), 0)::int8, coalesce(sum(cost_usd), 0)::float8, \
             count(*) FILTER (WHERE computed_cost_usd IS NULL)::int8";
        let t = match step {
            Some(step) => bucket_expr(&mut sql, step, "start_time"),
            None => "NULL::timestamptz".into(),
        };
        sql.push(&format!("SELECT {t}{groups}, {sums} FROM llm_calls"));
        sel.where_clause(&mut sql, tenant, "start_time");
    } else {
        let t = match step {
            Some(step) => bucket_expr(&mut sql, step, "bucket"),
            None => "NULL::timestamptz".into(),
        };
        sql.push(&format!(
            "SELECT {t}{groups}, sum(calls)::int8, sum(errors)::int8, sum(input_tokens)::int8, \
             sum(output_tokens)::int8, sum(cache_read_tokens)::int8, \
             sum(cache_write_tokens)::int8, sum(reasoning_tokens)::int8, \
             sum(cost_usd)::float8, sum(unpriced_calls)::int8 FROM ("
        ));
        rollup_rows(
            &mut sql,
            sel,
            tenant,
            ROLLUP_COLUMNS,
            ("llm_rollup_1h", "llm_rollup_1m"),
            step.is_none_or(hourly),
            covers,
        );
        sql.push(") r");
    }
    sql.push(&format!(" GROUP BY 1{groups}"));
    sql
}

fn latency_sql(sel: &Selection, tenant: &str, step: u64, covers: &[Cover]) -> Sql {
    let mut sql = Sql::default();
    let groups = sel.group_columns();
    if sel.needs_calls() {
        // Both histograms from one scan each, with the groups named g0, g1...
        let inner: String = sel
            .group_by
            .iter()
            .enumerate()
            .map(|(i, d)| format!(", {} AS g{i}", d.column()))
            .collect();
        let outer: String = (0..sel.group_by.len()).map(|i| format!(", g{i}")).collect();
        sql.push("SELECT t");
        sql.push(&outer);
        sql.push(", metric, le, count(*)::int8 FROM (");
        for (metric, column) in [(0, "latency_bucket"), (1, "ttft_bucket")] {
            if metric == 1 {
                sql.push(" UNION ALL ");
            }
            let t = bucket_expr(&mut sql, step, "start_time");
            sql.push(&format!(
                "SELECT {t} AS t{inner}, {metric}::int2 AS metric, {column} AS le FROM llm_calls"
            ));
            sel.where_clause(&mut sql, tenant, "start_time");
            sql.push(&format!(" AND {column} IS NOT NULL"));
        }
        sql.push(&format!(") calls GROUP BY t{outer}, metric, le"));
    } else {
        let t = bucket_expr(&mut sql, step, "bucket");
        sql.push(&format!(
            "SELECT {t}{groups}, metric, le, sum(count)::int8 FROM ("
        ));
        rollup_rows(
            &mut sql,
            sel,
            tenant,
            LATENCY_COLUMNS,
            ("llm_latency_1h", "llm_latency_1m"),
            hourly(step),
            covers,
        );
        sql.push(&format!(") r GROUP BY 1{groups}, metric, le"));
    }
    sql
}

fn totals_from(row: &tokio_postgres::Row, first: usize) -> Totals {
    let mut t = Totals {
        calls: row.get(first),
        errors: row.get(first + 1),
        error_rate: 0.0,
        input_tokens: row.get(first + 2),
        output_tokens: row.get(first + 3),
        cache_read_tokens: row.get(first + 4),
        cache_write_tokens: row.get(first + 5),
        reasoning_tokens: row.get(first + 6),
        cost_usd: row.get(first + 7),
        unpriced_calls: row.get(first + 8),
    };
    t.finish();
    t
}

fn group_key(row: &tokio_postgres::Row, n: usize) -> GroupKey {
    (0..n).map(|i| row.get::<_, String>(1 + i)).collect()
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Answers `/llm/metrics` for `tenant`.
pub async fn metrics(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &MetricsQuery,
) -> Result<MetricsAnswer, tokio_postgres::Error> {
    let sel = &q.selection;
    let n = sel.group_by.len();
    let from_metrics = read_metrics(client, tenant, sel, Some(q.step)).await?;
    let (sum_rows, lat_rows) = if sel.reads_spans() {
        let sums = sums_sql(sel, tenant, Some(q.step), &from_metrics.covers);
        let lat = latency_sql(sel, tenant, q.step, &from_metrics.covers);
        let (sum_params, lat_params) = (sums.refs(), lat.refs());
        futures::try_join!(
            client.query(sums.text.as_str(), &sum_params),
            client.query(lat.text.as_str(), &lat_params)
        )?
    } else {
        (Vec::new(), Vec::new())
    };
    let mut points: BTreeMap<GroupKey, BTreeMap<i64, Bucket>> = BTreeMap::new();
    for r in &sum_rows {
        let t: SystemTime = r.get(0);
        points
            .entry(group_key(r, n))
            .or_default()
            .insert(micros(t), (t, totals_from(r, 1 + n), vec![], vec![]));
    }
    for r in &lat_rows {
        let t: SystemTime = r.get(0);
        let metric: i16 = r.get(1 + n);
        let le: i16 = r.get(2 + n);
        let count: i64 = r.get(3 + n);
        if let Some(point) = points
            .get_mut(&group_key(r, n))
            .and_then(|p| p.get_mut(&micros(t)))
        {
            let h = if metric == 0 {
                &mut point.2
            } else {
                &mut point.3
            };
            h.push((le, count));
        }
    }
    for ((key, at), cell) in &from_metrics.cells {
        let t = UNIX_EPOCH + Duration::from_micros(*at as u64);
        let point = points
            .entry(key.clone())
            .or_default()
            .entry(*at)
            .or_insert_with(|| (t, Totals::default(), vec![], vec![]));
        point.1.add(&cell.totals);
        point.2.extend_from_slice(&cell.latency);
        point.3.extend_from_slice(&cell.ttft);
    }
    let signal = Signal::new(sel.source, !sum_rows.is_empty(), &from_metrics);
    let series = points
        .into_iter()
        .map(|(key, by_time)| Series {
            group: sel.group_by.iter().map(|d| d.name()).zip(key).collect(),
            points: by_time
                .into_values()
                .map(|(t, totals, mut lat, mut ttft)| {
                    lat.sort_unstable();
                    ttft.sort_unstable();
                    Point {
                        time: format_time(t),
                        totals,
                        latency_ms: percentile(&lat, 0.5).map(|p50| Latency {
                            p50,
                            p95: percentile(&lat, 0.95).unwrap_or(p50),
                            p99: percentile(&lat, 0.99).unwrap_or(p50),
                        }),
                        ttft_ms: percentile(&ttft, 0.5).map(|p50| Ttft {
                            p50,
                            p95: percentile(&ttft, 0.95).unwrap_or(p50),
                        }),
                    }
                })
                .collect(),
        })
        .collect();
    Ok(MetricsAnswer {
        from: format_time(sel.range.from),
        to: format_time(sel.range.to),
        bucket: BUCKETS
            .iter()
            .find(|(_, s)| *s == q.step)
            .map_or("1m", |(n, _)| n),
        group_by: sel.group_by.iter().map(|d| d.name()).collect(),
        source: if sel.needs_calls() {
            "llm_calls"
        } else if hourly(q.step) {
            "rollups_1h"
        } else {
            "rollups_1m"
        },
        signal,
        series,
    })
}

/// A checked `/llm/costs` request.
#[derive(Debug, Clone)]
pub struct CostsQuery {
    /// What to read (the window widened to whole minutes).
    pub selection: Selection,
    /// How many groups to list before `other`.
    pub top: usize,
}

/// The first instant of the UTC month of `t`.
pub fn month_start(t: SystemTime) -> SystemTime {
    let days = micros(t) / 86_400_000_000;
    let (y, m, _) = observatory_schemas::civil::civil_from_days(days);
    let first = observatory_schemas::civil::days_from_civil(y, m.into(), 1);
    UNIX_EPOCH + Duration::from_secs(first as u64 * 86_400)
}

impl CostsQuery {
    /// Reads `from` (default: the start of this UTC month), `to`, `group_by`, `top` and the filters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<CostsQuery, Problem> {
        let default = now.duration_since(month_start(now)).unwrap_or_default();
        let selection = Selection::take(p, now, default.max(Duration::from_secs(60)))?;
        let top = p.parsed("top", |s| parse_in(s, 1..=100))?.unwrap_or(10) as usize;
        p.finish()?;
        Ok(CostsQuery {
            selection: Selection {
                range: selection.range.aligned(Duration::from_secs(60)),
                ..selection
            },
            top,
        })
    }
}

/// One group of a breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCost {
    /// The group's values.
    pub group: BTreeMap<&'static str, String>,
    /// Its sums.
    #[serde(flatten)]
    pub totals: Totals,
    /// Its share of the total cost, 0 to 1.
    pub share: f64,
}

/// The `/llm/costs` answer.
#[derive(Debug, Serialize)]
pub struct CostsAnswer {
    /// The window, widened to whole minutes.
    pub from: String,
    /// Its end.
    pub to: String,
    /// Sums over the window.
    pub total: Totals,
    /// The grouping.
    pub group_by: Vec<&'static str>,
    /// The `top` most costly groups, most costly first.
    pub top: Vec<GroupCost>,
    /// The sums of the other groups, when there are more than `top`.
    pub other: Option<Totals>,
    /// Spans, metrics or both.
    pub signal: Signal,
    /// Budgets of the tenant and of its services, with this month's spend.
    pub budgets: Vec<crate::budgets::BudgetUse>,
}

/// Answers `/llm/costs` for `tenant`.
pub async fn costs(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &CostsQuery,
    now: SystemTime,
) -> Result<CostsAnswer, tokio_postgres::Error> {
    let sel = &q.selection;
    let (sums, budgets) = futures::try_join!(
        window_sums(client, tenant, sel),
        crate::budgets::usage(client, tenant, now)
    )?;
    let (mut groups, signal) = sums;
    let n = sel.group_by.len();
    let mut total = Totals::default();
    for (_, t) in &groups {
        total.add(t);
    }
    groups.sort_by(|a, b| b.1.cost_usd.total_cmp(&a.1.cost_usd).then(a.0.cmp(&b.0)));
    let mut other = None;
    if n > 0 && groups.len() > q.top {
        let mut rest = Totals::default();
        for (_, t) in groups.drain(q.top..) {
            rest.add(&t);
        }
        other = Some(rest);
    }
    let share = |t: &Totals| {
        if total.cost_usd > 0.0 {
            t.cost_usd / total.cost_usd
        } else {
            0.0
        }
    };
    let top = if n == 0 {
        Vec::new()
    } else {
        groups
            .into_iter()
            .map(|(key, totals)| GroupCost {
                group: sel.group_by.iter().map(|d| d.name()).zip(key).collect(),
                share: share(&totals),
                totals,
            })
            .collect()
    };
    Ok(CostsAnswer {
        from: format_time(sel.range.from),
        to: format_time(sel.range.to),
        total,
        group_by: sel.group_by.iter().map(|d| d.name()).collect(),
        top,
        other,
        signal,
        budgets,
    })
}

/// The tenant's GenAI metrics over the selection, when it reads them.
async fn read_metrics(
    client: &tokio_postgres::Client,
    tenant: &str,
    sel: &Selection,
    step: Option<u64>,
) -> Result<FromMetrics, tokio_postgres::Error> {
    if !sel.reads_metrics() {
        return Ok(FromMetrics::default());
    }
    genai_metrics::read(client, tenant, sel, step, crate::blocks::prices()).await
}

/// The sums per group over the whole window, from spans outside the
/// metrics' covers and from metrics, and what was used.
async fn window_sums(
    client: &tokio_postgres::Client,
    tenant: &str,
    sel: &Selection,
) -> Result<(Vec<(GroupKey, Totals)>, Signal), tokio_postgres::Error> {
    let n = sel.group_by.len();
    let from_metrics = read_metrics(client, tenant, sel, None).await?;
    let rows = if sel.reads_spans() {
        let sums = sums_sql(sel, tenant, None, &from_metrics.covers);
        client.query(sums.text.as_str(), &sums.refs()).await?
    } else {
        Vec::new()
    };
    let mut groups: BTreeMap<GroupKey, Totals> = rows
        .iter()
        .map(|r| (group_key(r, n), totals_from(r, 1 + n)))
        .collect();
    for ((key, _), cell) in &from_metrics.cells {
        groups.entry(key.clone()).or_default().add(&cell.totals);
    }
    let signal = Signal::new(sel.source, !rows.is_empty(), &from_metrics);
    Ok((groups.into_iter().collect(), signal))
}

/// Cost by service over `[from, now]` (whole minutes), for budgets: as
/// `/llm/costs` with `source=auto`, from spans and GenAI metrics.
pub async fn cost_by_service(
    client: &tokio_postgres::Client,
    tenant: &str,
    from: SystemTime,
    now: SystemTime,
) -> Result<Vec<(String, f64)>, tokio_postgres::Error> {
    let sel = Selection {
        range: Range { from, to: now }.aligned(Duration::from_secs(60)),
        group_by: vec![Dim::Service],
        filters: vec![],
        source: Source::Auto,
    };
    let (groups, _) = window_sums(client, tenant, &sel).await?;
    Ok(groups
        .into_iter()
        .map(|(mut key, totals)| (key.pop().unwrap_or_default(), totals.cost_usd))
        .collect())
}

/// Prices per million tokens, USD.
#[derive(Debug, Clone, Serialize)]
pub struct ModelPrice {
    /// Uncached input.
    pub input_per_million: f64,
    /// Output.
    pub output_per_million: f64,
    /// Cache reads.
    pub cache_read_per_million: f64,
    /// Cache writes.
    pub cache_write_per_million: f64,
}

/// A model the tenant called.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// Provider.
    pub provider: String,
    /// Billed model.
    pub model: String,
    /// Calls in the window.
    pub calls: i64,
    /// Their cost, USD.
    pub cost_usd: f64,
    /// First minute with a call, RFC 3339.
    pub first_seen: String,
    /// Last minute with a call.
    pub last_seen: String,
    /// Today's price; `null` when the price table does not know the model.
    pub price: Option<ModelPrice>,
}

/// The `/models` answer.
#[derive(Debug, Serialize)]
pub struct ModelsAnswer {
    /// The window.
    pub from: String,
    /// Its end.
    pub to: String,
    /// The models, most called first.
    pub models: Vec<Model>,
}

static PRICES: LazyLock<PriceBook> = LazyLock::new(PriceBook::builtin);

/// Reads `from` (default: 30 days before `to`) and `to`.
pub fn parse_models(p: &mut Params, now: SystemTime) -> Result<Range, Problem> {
    let range = Range::take(p, now, Duration::from_secs(30 * 86_400), MAX_RANGE)?;
    p.finish()?;
    Ok(range.aligned(Duration::from_secs(60)))
}

/// Answers `/models` for `tenant`.
pub async fn models(
    client: &tokio_postgres::Client,
    tenant: &str,
    range: Range,
    now: SystemTime,
) -> Result<ModelsAnswer, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT provider, model, sum(calls)::int8, sum(cost_usd)::float8, min(bucket), max(bucket)
             FROM llm_rollup_1m WHERE tenant = $1 AND bucket >= $2 AND bucket < $3
             GROUP BY provider, model ORDER BY 3 DESC, 1, 2",
            &[&tenant, &range.from, &range.to],
        )
        .await?;
    let at = micros(now).max(0) as u64 * 1000;
    let models = rows
        .iter()
        .map(|r| {
            let model: String = r.get(1);
            let price = PRICES.lookup(&model, at).map(|p| ModelPrice {
                input_per_million: p.input,
                output_per_million: p.output,
                cache_read_per_million: p.cache_read.unwrap_or(p.input),
                cache_write_per_million: p.cache_write.unwrap_or(p.input),
            });
            Model {
                provider: r.get(0),
                model,
                calls: r.get(2),
                cost_usd: r.get(3),
                first_seen: format_time(r.get(4)),
                last_seen: format_time(r.get(5)),
                price,
            }
        })
        .collect();
    Ok(ModelsAnswer {
        from: format_time(range.from),
        to: format_time(range.to),
        models,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::parse_rfc3339;
    use observatory_schemas::histogram::bucket;

    fn params(q: &[(&str, &str)]) -> Params {
        Params::new(
            q.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn percentiles_read_the_bucket_holding_the_rank() {
        // 100 calls: 1..=100 ms.
        let mut h: BTreeMap<i16, i64> = BTreeMap::new();
        for ms in 1..=100 {
            *h.entry(bucket(ms as f64)).or_default() += 1;
        }
        let h: Vec<(i16, i64)> = h.into_iter().collect();
        assert_eq!(percentile(&h, 0.5), Some(upper_bound_ms(bucket(50.0))));
        assert_eq!(percentile(&h, 0.99), Some(upper_bound_ms(bucket(99.0))));
        for q in [0.5, 0.95, 0.99] {
            let exact = (q * 100.0_f64).ceil();
            let p = percentile(&h, q).unwrap();
            assert!(p >= exact && p <= exact * 1.19, "{q}: {p} vs {exact}");
        }
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_bucket_defaults_to_about_300_points_and_is_checked() {
        let now = parse_rfc3339("2026-11-27T10:00:30Z").unwrap();
        let q = MetricsQuery::parse(&mut params(&[]), now).unwrap();
        assert_eq!(q.step, 300, "24 h in 5 min buckets");
        assert_eq!(
            format_time(q.selection.range.to),
            "2026-11-27T10:05:00Z",
            "widened to whole buckets"
        );
        let e = MetricsQuery::parse(&mut params(&[("bucket", "7m")]), now).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("bucket"));
        let e = MetricsQuery::parse(
            &mut params(&[("bucket", "1m"), ("from", "2026-11-01T00:00:00Z")]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("bucket"));
        let e = MetricsQuery::parse(&mut params(&[("group_by", "model,model")]), now).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("group_by"));
        let e = MetricsQuery::parse(&mut params(&[("group_by", "model;drop")]), now).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("group_by"));
    }

    #[test]
    fn only_user_reads_the_calls_table() {
        let now = parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        let q = MetricsQuery::parse(&mut params(&[("group_by", "model,service")]), now).unwrap();
        assert!(!q.selection.needs_calls());
        assert!(sums_sql(&q.selection, "t", Some(60), &[])
            .text
            .contains("FROM llm_rollup_1m"));
        assert_eq!(q.step, 300);
        let q = MetricsQuery::parse(&mut params(&[("user", "u-1")]), now).unwrap();
        assert!(q.selection.needs_calls());
        let q = MetricsQuery::parse(&mut params(&[("group_by", "user")]), now).unwrap();
        let sql = latency_sql(&q.selection, "t", 60, &[]);
        assert!(sql.text.contains("FROM llm_calls"), "{}", sql.text);
        assert!(
            sql.text.contains("GROUP BY t, g0, metric, le"),
            "{}",
            sql.text
        );
    }

    #[test]
    fn whole_windows_take_their_hours_from_the_hourly_rollups() {
        let t = |s| parse_rfc3339(s).unwrap();
        let range = Range {
            from: t("2026-11-27T09:30:00Z"),
            to: t("2026-11-27T12:15:00Z"),
        };
        let (first, last) = whole_hours(range);
        assert_eq!(format_time(first), "2026-11-27T10:00:00Z");
        assert_eq!(format_time(last), "2026-11-27T12:00:00Z");
        let sel = Selection {
            range,
            group_by: vec![Dim::Service],
            filters: vec![(Dim::Model, "gpt-4o".into())],
            source: Source::Auto,
        };
        let sql = sums_sql(&sel, "t", None, &[]);
        assert_eq!(
            sql.text.matches("FROM llm_rollup_1h").count(),
            1,
            "{}",
            sql.text
        );
        assert_eq!(
            sql.text.matches("FROM llm_rollup_1m").count(),
            2,
            "{}",
            sql.text
        );
        let inside = Range {
            from: t("2026-11-27T09:30:00Z"),
            to: t("2026-11-27T09:45:00Z"),
        };
        let sql = sums_sql(
            &Selection {
                range: inside,
                ..sel
            },
            "t",
            None,
            &[],
        );
        assert!(!sql.text.contains("llm_rollup_1h"), "{}", sql.text);
    }

    #[test]
    fn hour_buckets_read_the_hourly_tables() {
        let now = parse_rfc3339("2026-11-27T10:00:30Z").unwrap();
        let q = MetricsQuery::parse(&mut params(&[("bucket", "1h")]), now).unwrap();
        assert!(sums_sql(&q.selection, "t", Some(q.step), &[])
            .text
            .contains("llm_rollup_1h"));
        assert!(latency_sql(&q.selection, "t", q.step, &[])
            .text
            .contains("llm_latency_1h"));
        let q = MetricsQuery::parse(&mut params(&[("bucket", "15m")]), now).unwrap();
        assert!(latency_sql(&q.selection, "t", q.step, &[])
            .text
            .contains("llm_latency_1m"));
    }

    #[test]
    fn covered_minutes_leave_spans_out_and_split_their_hours() {
        let t = |s| parse_rfc3339(s).unwrap();
        let sel = Selection {
            range: Range {
                from: t("2026-11-27T09:00:00Z"),
                to: t("2026-11-27T13:00:00Z"),
            },
            group_by: vec![],
            filters: vec![],
            source: Source::Auto,
        };
        let covers = vec![Cover {
            service: "a".into(),
            provider: "openai".into(),
            from: t("2026-11-27T10:30:00Z"),
            to: t("2026-11-27T12:00:00Z"),
        }];
        assert_eq!(
            split_hours(&covers, sel.range.from, sel.range.to),
            vec![t("2026-11-27T10:00:00Z")],
            "12:00 is a whole hour: only 10:00 is split"
        );
        let sql = sums_sql(&sel, "t", None, &covers);
        assert_eq!(sql.text.matches("NOT EXISTS").count(), 2, "{}", sql.text);
        assert!(sql.text.contains("bucket <> ALL"), "{}", sql.text);
        assert_eq!(
            sql.text.matches("FROM llm_rollup_1m").count(),
            1,
            "{}",
            sql.text
        );
        // Without covers, nothing is left out.
        let sql = sums_sql(&sel, "t", None, &[]);
        assert!(!sql.text.contains("NOT EXISTS"), "{}", sql.text);
        // Metrics and user: refused, naming the parameter.
        let now = t("2026-11-27T10:00:00Z");
        let e = MetricsQuery::parse(
            &mut params(&[("source", "metrics"), ("group_by", "user")]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("source"));
        let q = CostsQuery::parse(&mut params(&[("source", "auto"), ("user", "u")]), now).unwrap();
        assert!(!q.selection.reads_metrics() && q.selection.reads_spans());
    }

    #[test]
    fn months_start_on_the_first() {
        let t = parse_rfc3339("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(format_time(month_start(t)), "2026-11-01T00:00:00Z");
    }
}
