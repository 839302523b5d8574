//! Stored OpenTelemetry metrics: `GET /api/v1/metrics/names`,
//! `/api/v1/metrics/labels?name=` and `/api/v1/metrics/query`.
//!
//! What it guarantees:
//! - every read is the token's tenant's, over at most 31 days, at most
//!   [`MAX_SERIES`] series and [`MAX_BUCKETS`] steps per series;
//! - `agg=sum|avg|min|max` of gauges and sums takes each series' last
//!   value in each step, then combines the series of each group;
//! - `agg=rate` (and `increase`) of sums: delta points are added up;
//!   cumulative points become increases, a new start time or a value that
//!   goes down counting as a restart (the value since the restart is the
//!   increase), and a series that started inside the window counts from
//!   zero, so the increase over a whole run is its final value;
//! - `agg=p50|p90|p95|p99` of histograms (explicit buckets, and
//!   exponential ones, merged at the coarsest scale seen) interpolates
//!   inside the bucket that holds the rank, as Prometheus'
//!   `histogram_quantile` does; `sum` and `avg` of a histogram are those of
//!   its observations (count and sum), `rate` its count per second.

use crate::filters::{parse_duration, Params, Range};
use crate::problem::Problem;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_RANGE: Duration = Duration::from_secs(31 * 86_400);
const DEFAULT_RANGE: Duration = Duration::from_secs(3_600);
/// Most series one query reads.
pub const MAX_SERIES: usize = 10_000;
/// Most steps per series.
pub const MAX_BUCKETS: u64 = 11_000;

/// One metric of the tenant.
#[derive(Debug, Serialize)]
pub struct MetricName {
    /// Name.
    pub name: String,
    /// gauge, sum, histogram, exponential_histogram or summary.
    pub kind: &'static str,
    /// Unit.
    pub unit: String,
    /// Description.
    pub description: String,
    /// Series stored.
    pub series: i64,
}

fn kind_name(kind: i16) -> &'static str {
    match kind {
        1 => "gauge",
        2 => "sum",
        3 => "histogram",
        4 => "exponential_histogram",
        5 => "summary",
        _ => "unknown",
    }
}

/// Every metric of `tenant`, by name.
pub async fn names(
    client: &tokio_postgres::Client,
    tenant: &str,
) -> Result<Value, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT name, kind, unit, max(description), count(*) FROM metric_series
              WHERE tenant = $1 GROUP BY name, kind, unit ORDER BY name LIMIT 10000",
            &[&tenant],
        )
        .await?;
    let metrics: Vec<MetricName> = rows
        .iter()
        .map(|r| MetricName {
            name: r.get(0),
            kind: kind_name(r.get(1)),
            unit: r.get(2),
            description: r.get(3),
            series: r.get(4),
        })
        .collect();
    Ok(serde_json::json!({ "metrics": metrics }))
}

/// The label keys of metric `name` and up to 100 values of each;
/// `service.name` is always one.
pub async fn labels(
    client: &tokio_postgres::Client,
    tenant: &str,
    name: &str,
) -> Result<Value, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT key, (array_agg(DISTINCT value ORDER BY value))[1:100] FROM (
                 SELECT e.key, e.value FROM metric_series s, jsonb_each_text(s.attributes) e
                  WHERE s.tenant = $1 AND s.name = $2
                 UNION ALL
                 SELECT 'service.name', s.service FROM metric_series s
                  WHERE s.tenant = $1 AND s.name = $2) l
              GROUP BY key ORDER BY key",
            &[&tenant, &name],
        )
        .await?;
    let labels: Vec<Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "key": r.get::<_, String>(0),
                "values": r.get::<_, Vec<String>>(1),
            })
        })
        .collect();
    Ok(serde_json::json!({ "name": name, "labels": labels }))
}

/// How points of a step and series of a group are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agg {
    /// Sum over the series.
    Sum,
    /// Mean over the series.
    Avg,
    /// Least.
    Min,
    /// Greatest.
    Max,
    /// Increase per second.
    Rate,
    /// Increase over the step.
    Increase,
    /// A quantile of a histogram.
    Quantile(f64),
}

impl Agg {
    fn parse(text: &str) -> Result<Agg, String> {
        Ok(match text {
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "rate" => Agg::Rate,
            "increase" => Agg::Increase,
            "p50" => Agg::Quantile(0.5),
            "p90" => Agg::Quantile(0.9),
            "p95" => Agg::Quantile(0.95),
            "p99" => Agg::Quantile(0.99),
            _ => return Err("sum, avg, min, max, rate, increase, p50, p90, p95 or p99".into()),
        })
    }
}

/// `GET /api/v1/metrics/query` parameters, checked.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    /// Metric name.
    pub name: String,
    /// label = value filters (`service.name` included).
    pub filters: Vec<(String, String)>,
    /// Labels that split the answer into series.
    pub group_by: Vec<String>,
    /// Window, aligned to the step.
    pub range: Range,
    /// Step.
    pub step: Duration,
    /// Aggregation.
    pub agg: Agg,
}

impl MetricQuery {
    /// Reads and checks the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<MetricQuery, Problem> {
        let name = p
            .one("name")?
            .filter(|n| !n.is_empty() && n.len() <= 256)
            .ok_or_else(|| Problem::bad_parameter("name", "the metric's name, 1 to 256 bytes"))?;
        let mut filters = Vec::new();
        for f in p.all("filter") {
            for part in f.split(',').filter(|s| !s.is_empty()) {
                let Some((k, v)) = part.split_once('=') else {
                    return Err(Problem::bad_parameter(
                        "filter",
                        "label=value, comma-separated",
                    ));
                };
                if k.trim().is_empty() || k.len() > 256 || v.len() > 1024 {
                    return Err(Problem::bad_parameter(
                        "filter",
                        "a label of 1 to 256 bytes and a value of at most 1024",
                    ));
                }
                filters.push((k.trim().to_owned(), v.to_owned()));
            }
        }
        if filters.len() > 16 {
            return Err(Problem::bad_parameter("filter", "at most 16 filters"));
        }
        let group_by: Vec<String> = p
            .one("group_by")?
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if group_by.len() > 8 || group_by.iter().any(|g| g.len() > 256) {
            return Err(Problem::bad_parameter(
                "group_by",
                "at most 8 labels of at most 256 bytes",
            ));
        }
        let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
        let span = range.to.duration_since(range.from).unwrap_or_default();
        let step = p
            .parsed("step", parse_duration)?
            .unwrap_or_else(|| Duration::from_secs((span.as_secs() / 120).max(60)));
        if step < Duration::from_secs(1) || step > MAX_RANGE {
            return Err(Problem::bad_parameter("step", "1s to 31 days"));
        }
        if span.as_secs() / step.as_secs() > MAX_BUCKETS {
            return Err(Problem::bad_parameter(
                "step",
                format!("more than {MAX_BUCKETS} steps in the window: take a longer step"),
            ));
        }
        let agg = p.parsed("agg", Agg::parse)?.unwrap_or(Agg::Sum);
        p.finish()?;
        Ok(MetricQuery {
            name,
            filters,
            group_by,
            range: range.aligned(step),
            step,
            agg,
        })
    }
}

/// One line of the answer.
#[derive(Debug, Serialize, PartialEq)]
pub struct Line {
    /// The group's label values.
    pub labels: BTreeMap<String, String>,
    /// (unix seconds of the step's start, value).
    pub points: Vec<(i64, f64)>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// Metric name.
    pub name: String,
    /// Its kind ("" when nothing is stored).
    pub kind: &'static str,
    /// Its unit.
    pub unit: String,
    /// Step, seconds.
    pub step_seconds: u64,
    /// One per group.
    pub series: Vec<Line>,
}

/// Why a query cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// PostgreSQL.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// The aggregation does not apply to the metric's kind.
    #[error("{0}")]
    Invalid(String),
}

struct SeriesInfo {
    id: i64,
    group: usize,
    cumulative: bool,
    bounds: Option<Vec<f64>>,
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Answers `q` for `tenant`.
pub async fn query(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &MetricQuery,
) -> Result<Answer, QueryError> {
    // Series, with their group's label values.
    let mut sql = crate::sql::Sql::default();
    let t = sql.bind(tenant.to_owned());
    let n = sql.bind(q.name.clone());
    let mut label_exprs = Vec::new();
    for key in &q.group_by {
        if key == "service.name" {
            label_exprs.push("service".to_owned());
        } else {
            let k = sql.bind(key.clone());
            label_exprs.push(format!("coalesce(attributes ->> {k}, '')"));
        }
    }
    let labels_sql = if label_exprs.is_empty() {
        "ARRAY[]::text[]".to_owned()
    } else {
        format!("ARRAY[{}]", label_exprs.join(", "))
    };
    sql.push(&format!(
        "SELECT series_id, kind, temporality, unit, bounds, {labels_sql} FROM metric_series
          WHERE tenant = {t} AND name = {n}"
    ));
    for (k, v) in &q.filters {
        let v = sql.bind(v.clone());
        if k == "service.name" {
            sql.push(&format!(" AND service = {v}"));
        } else {
            let k = sql.bind(k.clone());
            sql.push(&format!(" AND attributes ->> {k} = {v}"));
        }
    }
    sql.push(&format!(" ORDER BY series_id LIMIT {}", MAX_SERIES + 1));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    if rows.len() > MAX_SERIES {
        return Err(QueryError::Invalid(format!(
            "more than {MAX_SERIES} series match: add a filter"
        )));
    }
    let step = q.step.as_secs() as i64;
    let mut answer = Answer {
        name: q.name.clone(),
        kind: "",
        unit: String::new(),
        step_seconds: q.step.as_secs(),
        series: Vec::new(),
    };
    let Some(first) = rows.first() else {
        return Ok(answer);
    };
    let kind: i16 = first.get(1);
    answer.kind = kind_name(kind);
    answer.unit = first.get(3);
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut group_of: HashMap<Vec<String>, usize> = HashMap::new();
    let mut series = Vec::new();
    for r in &rows {
        if r.get::<_, i16>(1) != kind {
            continue; // one name, one kind: a second kind is another instrument's mistake
        }
        let values: Vec<String> = r.get(5);
        let group = *group_of.entry(values.clone()).or_insert_with(|| {
            groups.push(values);
            groups.len() - 1
        });
        series.push(SeriesInfo {
            id: r.get(0),
            group,
            cumulative: r.get::<_, i16>(2) == 2,
            bounds: r.get(4),
        });
    }
    let histogram = matches!(kind, 3 | 4);
    let by_group: BTreeMap<(usize, i64), f64> = match (q.agg, histogram) {
        (Agg::Quantile(_), false) => {
            return Err(QueryError::Invalid(format!(
                "{} is a {}: quantiles need a histogram",
                q.name,
                kind_name(kind)
            )))
        }
        (_, true) => histogram_steps(client, q, &series, kind).await?,
        (Agg::Rate | Agg::Increase, false) => {
            if kind != 2 {
                return Err(QueryError::Invalid(format!(
                    "{} is a {}: rate and increase need a sum (counter)",
                    q.name,
                    kind_name(kind)
                )));
            }
            increase_steps(client, q, &series).await?
        }
        (_, false) => value_steps(client, q, &series).await?,
    };
    let mut lines: BTreeMap<usize, Vec<(i64, f64)>> = BTreeMap::new();
    for ((g, b), v) in by_group {
        if v.is_finite() {
            lines.entry(g).or_default().push((b * step, v));
        }
    }
    answer.series = lines
        .into_iter()
        .map(|(g, points)| Line {
            labels: q
                .group_by
                .iter()
                .cloned()
                .zip(groups[g].iter().cloned())
                .collect(),
            points,
        })
        .collect();
    Ok(answer)
}

fn ids_and_groups(series: &[SeriesInfo]) -> (Vec<i64>, Vec<i32>, Vec<bool>) {
    (
        series.iter().map(|s| s.id).collect(),
        series.iter().map(|s| s.group as i32).collect(),
        series.iter().map(|s| s.cumulative).collect(),
    )
}

/// Gauges and sums: each series' last value per step, combined per group.
async fn value_steps(
    client: &tokio_postgres::Client,
    q: &MetricQuery,
    series: &[SeriesInfo],
) -> Result<BTreeMap<(usize, i64), f64>, tokio_postgres::Error> {
    let (ids, groups, _) = ids_and_groups(series);
    let combine = match q.agg {
        Agg::Avg => "avg",
        Agg::Min => "min",
        Agg::Max => "max",
        _ => "sum",
    };
    let step = q.step.as_secs_f64();
    let rows = client
        .query(
            &format!(
                "WITH s AS (SELECT * FROM unnest($1::int8[], $2::int4[]) AS s(series_id, g)),
                 last AS (
                     SELECT DISTINCT ON (p.series_id, b) p.series_id,
                            floor(extract(epoch FROM p.time)::float8 / $5::float8)::int8 AS b, p.value
                       FROM metric_points p
                      WHERE p.series_id = ANY($1) AND p.time >= $3 AND p.time < $4
                        AND p.value IS NOT NULL
                      ORDER BY p.series_id, b, p.time DESC)
                 SELECT s.g, last.b, {combine}(last.value)::float8
                   FROM last JOIN s USING (series_id) GROUP BY 1, 2"
            ),
            &[&ids, &groups, &q.range.from, &q.range.to, &step],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get::<_, i32>(0) as usize, r.get(1)), r.get(2)))
        .collect())
}

/// Sums: the increase of each series per step (restarts handled), summed
/// per group; per second for `rate`.
async fn increase_steps(
    client: &tokio_postgres::Client,
    q: &MetricQuery,
    series: &[SeriesInfo],
) -> Result<BTreeMap<(usize, i64), f64>, tokio_postgres::Error> {
    let (ids, groups, cumulative) = ids_and_groups(series);
    let step = q.step.as_secs_f64();
    let per = if q.agg == Agg::Rate { step } else { 1.0 };
    // One step before the window: the last point before it is the base of
    // the first increase.
    let before = q.range.from.checked_sub(q.step).unwrap_or(UNIX_EPOCH);
    let rows = client
        .query(
            "WITH s AS (SELECT * FROM unnest($1::int8[], $2::int4[], $3::bool[]) AS s(series_id, g, cumulative)),
             pts AS (
                 SELECT s.g, s.cumulative, p.time, p.start_time, p.value,
                        lag(p.value) OVER w AS prev, lag(p.start_time) OVER w AS prev_start
                   FROM metric_points p JOIN s USING (series_id)
                  WHERE p.series_id = ANY($1) AND p.time >= $4 AND p.time < $6 AND p.value IS NOT NULL
                 WINDOW w AS (PARTITION BY p.series_id ORDER BY p.time))
             SELECT g, floor(extract(epoch FROM time)::float8 / $7::float8)::int8 AS b,
                    sum(CASE WHEN NOT cumulative THEN value
                             WHEN prev IS NULL THEN CASE WHEN start_time >= $4 THEN value ELSE 0 END
                             WHEN start_time IS DISTINCT FROM prev_start OR value < prev THEN value
                             ELSE value - prev END)::float8 / $8::float8
               FROM pts WHERE time >= $5 GROUP BY 1, 2",
            &[
                &ids,
                &groups,
                &cumulative,
                &before,
                &q.range.from,
                &q.range.to,
                &step,
                &per,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ((r.get::<_, i32>(0) as usize, r.get(1)), r.get(2)))
        .collect())
}

/// A histogram's observations in one step of one group: count, sum, and
/// bucket counts by upper bound (explicit) or index (exponential).
#[derive(Debug, Default, Clone)]
struct Observed {
    count: f64,
    sum: f64,
    explicit: BTreeMap<usize, f64>,
    exponential: BTreeMap<i64, f64>,
    zero: f64,
}

/// One stored histogram point.
#[derive(Debug, Clone)]
struct HPoint {
    time: i64,
    start: Option<i64>,
    count: f64,
    sum: f64,
    buckets: Vec<f64>,
    scale: i32,
    offset: i32,
    zero: f64,
}

impl HPoint {
    /// This point less `before` (a cumulative stream's previous point), or
    /// itself after a restart.
    fn since(&self, before: Option<&HPoint>) -> HPoint {
        let Some(b) = before else {
            return self.clone();
        };
        let restarted = self.start != b.start
            || self.count < b.count
            || self.scale != b.scale
            || self.offset != b.offset
            || self.buckets.len() != b.buckets.len();
        if restarted {
            return self.clone();
        }
        HPoint {
            count: self.count - b.count,
            sum: self.sum - b.sum,
            buckets: self
                .buckets
                .iter()
                .zip(&b.buckets)
                .map(|(a, b)| (a - b).max(0.0))
                .collect(),
            zero: (self.zero - b.zero).max(0.0),
            ..self.clone()
        }
    }
}

/// Histograms: per step and group, the observations of the step, then
/// the asked statistic.
async fn histogram_steps(
    client: &tokio_postgres::Client,
    q: &MetricQuery,
    series: &[SeriesInfo],
    kind: i16,
) -> Result<BTreeMap<(usize, i64), f64>, tokio_postgres::Error> {
    let (ids, _, _) = ids_and_groups(series);
    let before = q.range.from.checked_sub(q.step).unwrap_or(UNIX_EPOCH);
    let rows = client
        .query(
            "SELECT series_id, extract(epoch FROM time)::float8, extract(epoch FROM start_time)::float8,
                    count, coalesce(sum, 0), coalesce(buckets, '{}'), coalesce(exp_scale, 0),
                    coalesce(exp_offset, 0), coalesce(exp_zero_count, 0)
               FROM metric_points
              WHERE series_id = ANY($1) AND time >= $2 AND time < $3 AND count IS NOT NULL
              ORDER BY series_id, time",
            &[&ids, &before, &q.range.to],
        )
        .await?;
    let info: HashMap<i64, &SeriesInfo> = series.iter().map(|s| (s.id, s)).collect();
    let from = epoch_secs(q.range.from);
    let step = q.step.as_secs() as i64;
    let mut steps: BTreeMap<(usize, i64), Observed> = BTreeMap::new();
    let mut previous: Option<(i64, HPoint)> = None;
    let min_scale = rows.iter().map(|r| r.get::<_, i32>(6)).min().unwrap_or(0);
    for r in &rows {
        let id: i64 = r.get(0);
        let s = info[&id];
        let time = r.get::<_, f64>(1) as i64;
        let point = HPoint {
            time,
            start: r.get::<_, Option<f64>>(2).map(|t| t as i64),
            count: r.get::<_, i64>(3) as f64,
            sum: r.get(4),
            buckets: r
                .get::<_, Vec<i64>>(5)
                .into_iter()
                .map(|c| c as f64)
                .collect(),
            scale: r.get(6),
            offset: r.get(7),
            zero: r.get::<_, i64>(8) as f64,
        };
        let prev = match &previous {
            Some((pid, p)) if *pid == id => Some(p.clone()),
            _ => None,
        };
        previous = Some((id, point.clone()));
        let delta = if s.cumulative {
            match prev {
                Some(p) => point.since(Some(&p)),
                // First point seen: counts only if the series started in the window.
                None if point.start.is_some_and(|t| t >= from - step) => point.clone(),
                None => continue,
            }
        } else {
            point.clone()
        };
        if delta.time < from {
            continue;
        }
        let o = steps.entry((s.group, delta.time / step)).or_default();
        o.count += delta.count;
        o.sum += delta.sum;
        if kind == 3 {
            for (i, c) in delta.buckets.iter().enumerate() {
                *o.explicit.entry(i).or_default() += c;
            }
        } else {
            // Down to the coarsest scale: 2^(scale - min) buckets become one.
            let shift = (delta.scale - min_scale).max(0);
            for (i, c) in delta.buckets.iter().enumerate() {
                let index = (i64::from(delta.offset) + i as i64) >> shift;
                *o.exponential.entry(index).or_default() += c;
            }
            o.zero += delta.zero;
        }
    }
    // The bounds of each group's explicit buckets (the first series').
    let mut bounds_of: HashMap<usize, &[f64]> = HashMap::new();
    for s in series {
        if let Some(b) = &s.bounds {
            bounds_of.entry(s.group).or_insert(b);
        }
    }
    let mut out = BTreeMap::new();
    for ((g, b), o) in steps {
        let value = match q.agg {
            Agg::Sum => o.sum,
            Agg::Avg => {
                if o.count > 0.0 {
                    o.sum / o.count
                } else {
                    continue;
                }
            }
            Agg::Rate => o.count / q.step.as_secs_f64(),
            Agg::Increase => o.count,
            Agg::Min | Agg::Max => continue,
            Agg::Quantile(p) => match kind {
                3 => match explicit_quantile(p, bounds_of.get(&g).copied().unwrap_or(&[]), &o) {
                    Some(v) => v,
                    None => continue,
                },
                _ => match exponential_quantile(p, min_scale, &o) {
                    Some(v) => v,
                    None => continue,
                },
            },
        };
        out.insert((g, b), value);
    }
    Ok(out)
}

/// Prometheus' `histogram_quantile` over explicit buckets: linear inside
/// the bucket that holds the rank; the last (unbounded) bucket answers its
/// lower bound.
fn explicit_quantile(q: f64, bounds: &[f64], o: &Observed) -> Option<f64> {
    let total: f64 = o.explicit.values().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut seen = 0.0;
    for (&i, &c) in &o.explicit {
        if seen + c >= rank && c > 0.0 {
            let lower = if i == 0 {
                0.0_f64.min(bounds.first().copied().unwrap_or(0.0))
            } else {
                bounds[i - 1]
            };
            let Some(&upper) = bounds.get(i) else {
                return Some(lower);
            };
            return Some(lower + (upper - lower) * (rank - seen) / c);
        }
        seen += c;
    }
    bounds.last().copied()
}

/// The quantile of exponential buckets at `scale`: bucket `i` holds
/// (base^i, base^(i+1)], base = 2^(2^-scale); interpolated linearly.
fn exponential_quantile(q: f64, scale: i32, o: &Observed) -> Option<f64> {
    let total = o.zero + o.exponential.values().sum::<f64>();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    if rank <= o.zero {
        return Some(0.0);
    }
    let base = 2f64.powf(2f64.powi(-scale));
    let mut seen = o.zero;
    for (&i, &c) in &o.exponential {
        if seen + c >= rank && c > 0.0 {
            let lower = base.powf(i as f64);
            let upper = base.powf(i as f64 + 1.0);
            return Some(lower + (upper - lower) * (rank - seen) / c);
        }
        seen += c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_quantiles_interpolate_inside_the_bucket() {
        let o = Observed {
            explicit: [(0, 10.0), (1, 10.0), (2, 0.0)].into_iter().collect(),
            ..Observed::default()
        };
        let bounds = [1.0, 2.0];
        assert_eq!(explicit_quantile(0.5, &bounds, &o), Some(1.0));
        assert_eq!(explicit_quantile(0.75, &bounds, &o), Some(1.5));
        let tail = Observed {
            explicit: [(2, 5.0)].into_iter().collect(),
            ..Observed::default()
        };
        assert_eq!(explicit_quantile(0.9, &bounds, &tail), Some(2.0));
    }

    #[test]
    fn exponential_quantiles_use_the_bucket_bounds() {
        // scale 0: base 2, bucket 1 is (2, 4].
        let o = Observed {
            exponential: [(1, 4.0)].into_iter().collect(),
            ..Observed::default()
        };
        assert_eq!(exponential_quantile(0.5, 0, &o), Some(3.0));
        let zero = Observed {
            zero: 10.0,
            exponential: [(1, 1.0)].into_iter().collect(),
            ..Observed::default()
        };
        assert_eq!(exponential_quantile(0.5, 0, &zero), Some(0.0));
    }

    #[test]
    fn a_cumulative_histogram_restart_starts_over() {
        let p = |start, count: f64| HPoint {
            time: 0,
            start: Some(start),
            count,
            sum: count,
            buckets: vec![count],
            scale: 0,
            offset: 0,
            zero: 0.0,
        };
        assert_eq!(p(1, 10.0).since(Some(&p(1, 4.0))).count, 6.0);
        assert_eq!(p(2, 3.0).since(Some(&p(1, 4.0))).count, 3.0, "new start");
        assert_eq!(p(1, 3.0).since(Some(&p(1, 4.0))).count, 3.0, "went down");
    }

    #[test]
    fn aggregations_parse() {
        assert_eq!(Agg::parse("p95").unwrap(), Agg::Quantile(0.95));
        assert!(Agg::parse("median").unwrap_err().contains("p99"));
    }
}
