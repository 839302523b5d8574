//! PostgreSQL reads of the Prometheus API: the tenant's metric families,
//! the series a selector selects ([`select`]), their points ([`load`]),
//! and label names and values.
//!
//! What it guarantees: every read is of one tenant's rows, and every value
//! from a request is a bound parameter. The work is bounded: at most
//! [`MAX_FAMILIES`] metrics are known, a selector looks at most at
//! [`MAX_SCANNED_SERIES`] stored series and selects at most
//! [`MAX_SERIES`], and a query reads at most [`MAX_LOADED_VALUES`] values
//! (a point of a gauge or sum is one, a histogram point two and one per
//! bucket), else a [`StoreError::Limit`] saying which. Points are streamed
//! from PostgreSQL, never held as rows.
//!
//! Series are narrowed in SQL where a matcher allows it (`job` and
//! `service_name` by the `service` column, other `=` matchers by an
//! attribute holding the value) and matched exactly here, on the labels
//! [`super::names`] gives them. A series whose `last_seen` is more than
//! [`LAST_SEEN_SLACK`] before the window has no point in it (the sink moves
//! `last_seen` once a day) and is not read.

use super::eval::{
    Buckets, ExpLayout, HistogramPoint, LabelMatcher, Loaded, Points, Stored, SummaryPoint,
    Temporality, ValuePoint,
};
use super::names::{self, Family, Labels, Part, Resource, NAME};
use super::parse::{MatchOp, Selector};
use futures::{pin_mut, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

pub use crate::metric_queries::MAX_SERIES;

/// Most metrics (name, kind, temporality, monotonicity, unit) of a tenant
/// the API knows; more are left out of names and queries.
pub const MAX_FAMILIES: i64 = 10_000;

/// Most stored series a selector looks at before its label matchers.
pub const MAX_SCANNED_SERIES: usize = 100_000;

/// Most values one query reads from PostgreSQL (about 32 bytes each).
pub const MAX_LOADED_VALUES: usize = 4_000_000;

/// Most values a label values answer holds.
pub const MAX_LABEL_VALUES: usize = 10_000;

/// How long before a window a series' `last_seen` may be and still have
/// points in it: the sink moves `last_seen` once a day, to the time it
/// stores a point (points may be ahead of it by `ACCEPT_SPANS_MAX_FUTURE`).
pub const LAST_SEEN_SLACK: Duration = Duration::from_secs(2 * 86_400);

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    /// A bound of this module.
    #[error("{0}")]
    Limit(String),
    /// A matcher's regular expression does not compile once anchored.
    #[error("{0}")]
    Matcher(String),
}

/// The tenant's metrics, by name (at most [`MAX_FAMILIES`]); with `since`,
/// those with a series seen since then.
pub async fn catalog(
    client: &Client,
    tenant: &str,
    since: Option<SystemTime>,
) -> Result<Vec<Family>, StoreError> {
    let rows = client
        .query(
            "SELECT name, kind, temporality, monotonic, unit FROM metric_series
              WHERE tenant = $1 AND ($2::timestamptz IS NULL OR last_seen >= $2)
              GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 LIMIT $3",
            &[&tenant, &since, &MAX_FAMILIES],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Family {
            name: r.get(0),
            kind: r.get(1),
            temporality: r.get(2),
            monotonic: r.get(3),
            unit: r.get(4),
        })
        .collect())
}

/// A selector's matchers, compiled and sorted by when they apply.
#[derive(Debug, Default)]
pub struct Matchers {
    /// On `__name__` (the selector's name included, as `=`).
    pub names: Vec<LabelMatcher>,
    /// On the series' labels.
    pub series: Vec<LabelMatcher>,
    /// On `le` and `quantile`.
    pub late: Vec<LabelMatcher>,
}

impl Matchers {
    /// Compiles the selector's matchers.
    pub fn of(selector: &Selector) -> Result<Matchers, StoreError> {
        let mut out = Matchers::default();
        if let Some(name) = &selector.name {
            out.names.push(compile(NAME, MatchOp::Eq, name)?);
        }
        for m in &selector.matchers {
            let m = LabelMatcher::new(m).map_err(StoreError::Matcher)?;
            if m.label == NAME {
                out.names.push(m);
            } else if m.is_late() {
                out.late.push(m);
            } else {
                out.series.push(m);
            }
        }
        Ok(out)
    }
}

fn compile(label: &str, op: MatchOp, value: &str) -> Result<LabelMatcher, StoreError> {
    LabelMatcher::new(&super::parse::Matcher {
        label: label.to_owned(),
        op,
        value: value.to_owned(),
    })
    .map_err(StoreError::Matcher)
}

/// The parts of each family that the name matchers select, by family
/// index: a part is selected when its Prometheus name or its OpenTelemetry
/// name (with the part's suffix) matches every name matcher; it is always
/// answered under its Prometheus name.
pub fn targets(catalog: &[Family], names: &[LabelMatcher]) -> BTreeMap<usize, Vec<(String, Part)>> {
    let mut out = BTreeMap::new();
    for (i, f) in catalog.iter().enumerate() {
        let raw = f.raw_names();
        let parts: Vec<(String, Part)> = f
            .exposed()
            .into_iter()
            .filter(|(name, part)| {
                let raw_name = raw.iter().find(|(_, p)| p == part).map(|(n, _)| n.as_str());
                [Some(name.as_str()), raw_name]
                    .into_iter()
                    .flatten()
                    .any(|n| names.iter().all(|m| m.matches(n)))
            })
            .collect();
        if !parts.is_empty() {
            out.insert(i, parts);
        }
    }
    out
}

/// A stored series a selector selected.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Its id.
    pub id: i64,
    /// Its family's index in the catalog.
    pub family: usize,
    /// The parts selected, with their Prometheus names.
    pub parts: Vec<(String, Part)>,
    /// Its labels (without `__name__`, `le`, `quantile`).
    pub labels: Labels,
    /// Explicit bucket bounds.
    pub bounds: Option<Vec<f64>>,
}

/// Conditions a matcher lets SQL apply before the exact match: the
/// services a series may have, and attribute values it must hold.
fn narrowing(series: &[LabelMatcher]) -> (Option<Vec<String>>, Vec<String>) {
    let mut services: Option<BTreeSet<String>> = None;
    let mut values = Vec::new();
    for m in series
        .iter()
        .filter(|m| m.op == MatchOp::Eq && !m.value.is_empty())
    {
        match m.label.as_str() {
            "service_name" => {
                let one = BTreeSet::from([m.value.clone()]);
                services = Some(match services {
                    Some(s) => s.intersection(&one).cloned().collect(),
                    None => one,
                });
            }
            "job" => {
                // job is the service, or namespace/service.
                let mut candidates = BTreeSet::from([m.value.clone()]);
                for (i, _) in m.value.match_indices('/') {
                    candidates.insert(m.value[i + 1..].to_owned());
                }
                services = Some(match services {
                    Some(s) => s.intersection(&candidates).cloned().collect(),
                    None => candidates,
                });
            }
            "instance" => {}
            // Two attributes that become one label hold `a;b`.
            _ if !m.value.contains(';') => values.push(m.value.clone()),
            _ => {}
        }
    }
    (services.map(|s| s.into_iter().collect()), values)
}

/// The series of `catalog`'s families that `matchers` select, with labels
/// (at most [`MAX_SERIES`]), seen since `since` when given.
pub async fn select(
    client: &Client,
    tenant: &str,
    catalog: &[Family],
    matchers: &Matchers,
    since: Option<SystemTime>,
) -> Result<Vec<Selected>, StoreError> {
    let targets = targets(catalog, &matchers.names);
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let family_of: HashMap<&Family, usize> =
        catalog.iter().enumerate().map(|(i, f)| (f, i)).collect();
    let metric_names: Vec<String> = targets
        .keys()
        .map(|&i| catalog[i].name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (services, values) = narrowing(&matchers.series);
    let mut sql = crate::sql::Sql::default();
    let t = sql.bind(tenant.to_owned());
    let n = sql.bind(metric_names);
    sql.push(&format!(
        "SELECT s.series_id, s.name, s.kind, s.temporality, s.monotonic, s.unit, s.service,
                coalesce(r.attributes ->> 'service.namespace', ''),
                coalesce(r.attributes ->> 'service.instance.id', ''),
                ARRAY(SELECT e.key FROM jsonb_each_text(s.attributes) e ORDER BY e.key),
                ARRAY(SELECT coalesce(e.value, '') FROM jsonb_each_text(s.attributes) e ORDER BY e.key),
                s.bounds
           FROM metric_series s
           LEFT JOIN resources r ON r.tenant = s.tenant AND r.id = s.resource_id
          WHERE s.tenant = {t} AND s.name = ANY({n})"
    ));
    if let Some(since) = since {
        let p = sql.bind(since);
        sql.push(&format!(" AND s.last_seen >= {p}"));
    }
    if let Some(services) = services {
        let p = sql.bind(services);
        sql.push(&format!(" AND s.service = ANY({p})"));
    }
    for v in values {
        let p = sql.bind(v);
        sql.push(&format!(
            " AND EXISTS (SELECT 1 FROM jsonb_each_text(s.attributes) e WHERE e.value = {p})"
        ));
    }
    sql.push(&format!(
        " ORDER BY s.series_id LIMIT {}",
        MAX_SCANNED_SERIES + 1
    ));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    if rows.len() > MAX_SCANNED_SERIES {
        return Err(StoreError::Limit(format!(
            "the selector's metrics have more than {MAX_SCANNED_SERIES} series: name a metric or \
             add a job or label matcher"
        )));
    }
    let mut out = Vec::new();
    for r in &rows {
        let family = Family {
            name: r.get(1),
            kind: r.get(2),
            temporality: r.get(3),
            monotonic: r.get(4),
            unit: r.get(5),
        };
        let Some(&index) = family_of.get(&family) else {
            continue;
        };
        let Some(parts) = targets.get(&index) else {
            continue;
        };
        let resource = Resource {
            service: r.get(6),
            namespace: r.get(7),
            instance: r.get(8),
        };
        let keys: Vec<String> = r.get(9);
        let vals: Vec<String> = r.get(10);
        let labels = names::series_labels(&resource, &keys, &vals);
        if !matchers.series.iter().all(|m| m.matches_labels(&labels)) {
            continue;
        }
        if out.len() == MAX_SERIES {
            return Err(StoreError::Limit(format!(
                "more than {MAX_SERIES} series match the selector: add a label matcher"
            )));
        }
        out.push(Selected {
            id: r.get(0),
            family: index,
            parts: parts.clone(),
            labels,
            bounds: r.get(11),
        });
    }
    Ok(out)
}

fn slice_iter<'a>(
    params: &'a [&'a (dyn ToSql + Sync)],
) -> impl ExactSizeIterator<Item = &'a dyn ToSql> + 'a {
    params.iter().map(|p| *p as &dyn ToSql)
}

/// Unix milliseconds as a time.
pub fn time_of(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    }
}

/// Counts values read against [`MAX_LOADED_VALUES`].
#[derive(Debug, Default)]
pub struct Budget {
    loaded: usize,
}

impl Budget {
    fn spend(&mut self, values: usize) -> Result<(), StoreError> {
        self.loaded += values;
        if self.loaded > MAX_LOADED_VALUES {
            return Err(StoreError::Limit(format!(
                "the query would read more than {MAX_LOADED_VALUES} stored values: take a shorter \
                 range or select fewer series"
            )));
        }
        Ok(())
    }
}

/// The points in `(from, to]` (unix ms) of `selected`, as the evaluator
/// reads them.
pub async fn load(
    client: &Client,
    catalog: &[Family],
    selected: Vec<Selected>,
    late: Vec<LabelMatcher>,
    from: i64,
    to: i64,
    budget: &mut Budget,
) -> Result<Loaded, StoreError> {
    let (from_t, to_t) = (time_of(from), time_of(to));
    let kind_of = |s: &Selected| catalog[s.family].kind;
    let ids_of = |want: &dyn Fn(i16) -> bool| -> Vec<i64> {
        selected
            .iter()
            .filter(|s| want(kind_of(s)))
            .map(|s| s.id)
            .collect()
    };
    let mut values: HashMap<i64, Vec<ValuePoint>> = HashMap::new();
    let mut histograms: HashMap<i64, Vec<HistogramPoint>> = HashMap::new();
    let mut summaries: HashMap<i64, Vec<SummaryPoint>> = HashMap::new();
    const TIME: &str = "floor(extract(epoch FROM time) * 1000)::int8, \
                        floor(extract(epoch FROM start_time) * 1000)::int8";
    let ids = ids_of(&|k| matches!(k, names::GAUGE | names::SUM));
    if !ids.is_empty() {
        let sql = format!(
            "SELECT series_id, {TIME}, value FROM metric_points
              WHERE series_id = ANY($1) AND time > $2 AND time <= $3 AND value IS NOT NULL
              ORDER BY series_id, time"
        );
        let params: [&(dyn ToSql + Sync); 3] = [&ids, &from_t, &to_t];
        let rows = client.query_raw(sql.as_str(), slice_iter(&params)).await?;
        pin_mut!(rows);
        while let Some(r) = rows.try_next().await? {
            budget.spend(1)?;
            values.entry(r.get(0)).or_default().push(ValuePoint {
                t: r.get(1),
                start: r.get(2),
                value: r.get(3),
            });
        }
    }
    let ids = ids_of(&|k| matches!(k, names::HISTOGRAM | names::EXP_HISTOGRAM));
    if !ids.is_empty() {
        let sql = format!(
            "SELECT series_id, {TIME}, count, coalesce(sum, 0), coalesce(buckets, '{{}}'),
                    coalesce(exp_scale, 0), coalesce(exp_offset, 0)
               FROM metric_points
              WHERE series_id = ANY($1) AND time > $2 AND time <= $3 AND count IS NOT NULL
              ORDER BY series_id, time"
        );
        let params: [&(dyn ToSql + Sync); 3] = [&ids, &from_t, &to_t];
        let rows = client.query_raw(sql.as_str(), slice_iter(&params)).await?;
        pin_mut!(rows);
        while let Some(r) = rows.try_next().await? {
            let buckets: Vec<i64> = r.get(5);
            budget.spend(2 + buckets.len())?;
            histograms
                .entry(r.get(0))
                .or_default()
                .push(HistogramPoint {
                    t: r.get(1),
                    start: r.get(2),
                    count: r.get::<_, i64>(3) as f64,
                    sum: r.get(4),
                    buckets: buckets.into_iter().map(|c| c as f64).collect(),
                    scale: r.get(6),
                    offset: r.get(7),
                });
        }
    }
    let ids = ids_of(&|k| k == names::SUMMARY);
    if !ids.is_empty() {
        let sql = format!(
            "SELECT series_id, {TIME}, count, coalesce(sum, 0), coalesce(quantiles, '{{}}')
               FROM metric_points
              WHERE series_id = ANY($1) AND time > $2 AND time <= $3 AND count IS NOT NULL
              ORDER BY series_id, time"
        );
        let params: [&(dyn ToSql + Sync); 3] = [&ids, &from_t, &to_t];
        let rows = client.query_raw(sql.as_str(), slice_iter(&params)).await?;
        pin_mut!(rows);
        while let Some(r) = rows.try_next().await? {
            let q: Vec<f64> = r.get(5);
            budget.spend(2 + q.len())?;
            summaries.entry(r.get(0)).or_default().push(SummaryPoint {
                t: r.get(1),
                start: r.get(2),
                count: r.get::<_, i64>(3) as f64,
                sum: r.get(4),
                quantiles: q.chunks_exact(2).map(|c| (c[0], c[1])).collect(),
            });
        }
    }
    // Each exponential family's buckets, common to its series.
    let mut layouts: HashMap<usize, ExpLayout> = HashMap::new();
    for s in &selected {
        if kind_of(s) != names::EXP_HISTOGRAM || layouts.contains_key(&s.family) {
            continue;
        }
        let ranges = selected
            .iter()
            .filter(|o| o.family == s.family)
            .flat_map(|o| histograms.get(&o.id).into_iter().flatten())
            .filter(|p| !p.buckets.is_empty())
            .map(|p| {
                let lo = i64::from(p.offset);
                (p.scale, lo, lo + p.buckets.len() as i64 - 1)
            });
        layouts.insert(s.family, ExpLayout::covering(ranges));
    }
    let mut series = Vec::with_capacity(selected.len());
    for s in selected {
        let f = &catalog[s.family];
        let counters = if f.temporality == names::DELTA {
            Temporality::Delta
        } else {
            Temporality::Cumulative
        };
        let (temporality, points) = match f.kind {
            names::HISTOGRAM | names::EXP_HISTOGRAM => {
                let buckets = match layouts.get(&s.family) {
                    Some(l) => Buckets::Exponential(*l),
                    None => Buckets::Explicit(s.bounds.clone().unwrap_or_default()),
                };
                let points = histograms.remove(&s.id).unwrap_or_default();
                (counters, Points::Histogram { buckets, points })
            }
            names::SUMMARY => (
                Temporality::Cumulative,
                Points::Summary(summaries.remove(&s.id).unwrap_or_default()),
            ),
            kind => {
                let temporality = match (kind, f.temporality, f.monotonic) {
                    (names::SUM, names::DELTA, _) => Temporality::Delta,
                    (names::SUM, _, true) => Temporality::Cumulative,
                    _ => Temporality::Gauge,
                };
                (
                    temporality,
                    Points::Values(values.remove(&s.id).unwrap_or_default()),
                )
            }
        };
        series.push(Stored {
            labels: s.labels,
            parts: s.parts,
            temporality,
            points,
        });
    }
    Ok(Loaded { series, late })
}

/// The `le` values of `selected`'s `_bucket` series as `/series` lists
/// them: explicit bounds, or an exponential family's layout over its points
/// in `(from, to]`; by family.
pub async fn bucket_layouts(
    client: &Client,
    catalog: &[Family],
    selected: &[Selected],
    from: i64,
    to: i64,
) -> Result<HashMap<usize, Buckets>, StoreError> {
    let ids: Vec<i64> = selected
        .iter()
        .filter(|s| catalog[s.family].kind == names::EXP_HISTOGRAM)
        .filter(|s| s.parts.iter().any(|p| p.1 == Part::Bucket))
        .map(|s| s.id)
        .collect();
    let mut ranges: HashMap<usize, Vec<(i32, i64, i64)>> = HashMap::new();
    if !ids.is_empty() {
        let rows = client
            .query(
                "SELECT series_id, exp_scale, min(exp_offset)::int8,
                        max(exp_offset + cardinality(buckets) - 1)::int8
                   FROM metric_points
                  WHERE series_id = ANY($1) AND time > $2 AND time <= $3
                    AND cardinality(buckets) > 0 AND exp_scale IS NOT NULL
                  GROUP BY 1, 2",
                &[&ids, &time_of(from), &time_of(to)],
            )
            .await?;
        let family: HashMap<i64, usize> = selected.iter().map(|s| (s.id, s.family)).collect();
        for r in rows {
            if let Some(f) = family.get(&r.get::<_, i64>(0)) {
                ranges
                    .entry(*f)
                    .or_default()
                    .push((r.get(1), r.get(2), r.get(3)));
            }
        }
    }
    let mut out = HashMap::new();
    for s in selected {
        if out.contains_key(&s.family) {
            continue;
        }
        let buckets = match catalog[s.family].kind {
            names::EXP_HISTOGRAM => Buckets::Exponential(ExpLayout::covering(
                ranges.remove(&s.family).unwrap_or_default(),
            )),
            names::HISTOGRAM => Buckets::Explicit(s.bounds.clone().unwrap_or_default()),
            _ => continue,
        };
        out.insert(s.family, buckets);
    }
    Ok(out)
}

/// The attribute keys of the tenant's series (seen since `since`).
async fn attribute_keys(
    client: &Client,
    tenant: &str,
    since: Option<SystemTime>,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT k FROM metric_series s, jsonb_object_keys(s.attributes) k
              WHERE s.tenant = $1 AND ($2::timestamptz IS NULL OR s.last_seen >= $2)
              LIMIT 100000",
            &[&tenant, &since],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every label name of the tenant's series (seen since `since`), sorted.
pub async fn label_names(
    client: &Client,
    tenant: &str,
    since: Option<SystemTime>,
) -> Result<Vec<String>, StoreError> {
    let mut out: BTreeSet<String> = attribute_keys(client, tenant, since)
        .await?
        .iter()
        .map(|k| names::label_name(k))
        .collect();
    let row = client
        .query_one(
            "SELECT count(*) > 0, coalesce(bool_or(s.kind IN (3, 4)), false),
                    coalesce(bool_or(s.kind = 5), false),
                    coalesce(bool_or(r.attributes ? 'service.instance.id'), false)
               FROM metric_series s
               LEFT JOIN resources r ON r.tenant = s.tenant AND r.id = s.resource_id
              WHERE s.tenant = $1 AND ($2::timestamptz IS NULL OR s.last_seen >= $2)",
            &[&tenant, &since],
        )
        .await?;
    let (any, histograms, summaries, instances): (bool, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if any {
        out.extend([NAME.to_owned(), "job".to_owned(), "service_name".to_owned()]);
    }
    for (has, label) in [
        (histograms, names::LE),
        (summaries, names::QUANTILE),
        (instances, "instance"),
    ] {
        if has {
            out.insert(label.to_owned());
        }
    }
    Ok(out.into_iter().collect())
}

/// The values of label `label` over the tenant's series (seen since
/// `since`), sorted, at most [`MAX_LABEL_VALUES`]. `__name__`'s are the
/// Prometheus names of `catalog`.
pub async fn label_values(
    client: &Client,
    tenant: &str,
    catalog: &[Family],
    label: &str,
    since: Option<SystemTime>,
) -> Result<Vec<String>, StoreError> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    match label {
        NAME => {
            for f in catalog {
                out.extend(f.exposed().into_iter().map(|(n, _)| n));
            }
        }
        "job" | "service_name" | "instance" => {
            let rows = client
                .query(
                    "SELECT DISTINCT s.service, coalesce(r.attributes ->> 'service.namespace', ''),
                            coalesce(r.attributes ->> 'service.instance.id', '')
                       FROM metric_series s
                       LEFT JOIN resources r ON r.tenant = s.tenant AND r.id = s.resource_id
                      WHERE s.tenant = $1 AND ($2::timestamptz IS NULL OR s.last_seen >= $2)
                      LIMIT 100000",
                    &[&tenant, &since],
                )
                .await?;
            for r in rows {
                let resource = Resource {
                    service: r.get(0),
                    namespace: r.get(1),
                    instance: r.get(2),
                };
                let labels = names::series_labels(&resource, &[], &[]);
                out.insert(names::get(&labels, label).to_owned());
            }
        }
        names::LE => {
            let rows = client
                .query(
                    "SELECT DISTINCT b FROM metric_series s, unnest(s.bounds) b
                      WHERE s.tenant = $1 AND s.kind = 3
                        AND ($2::timestamptz IS NULL OR s.last_seen >= $2)
                      LIMIT 100000",
                    &[&tenant, &since],
                )
                .await?;
            out.extend(rows.iter().map(|r| names::format_float(r.get(0))));
            if catalog.iter().any(Family::is_histogram) {
                out.insert("+Inf".to_owned());
            }
        }
        names::QUANTILE => {}
        _ => {
            let keys: Vec<String> = attribute_keys(client, tenant, since)
                .await?
                .into_iter()
                .filter(|k| names::label_name(k) == label)
                .collect();
            if !keys.is_empty() {
                let rows = client
                    .query(
                        "SELECT DISTINCT e.value FROM metric_series s, jsonb_each_text(s.attributes) e
                          WHERE s.tenant = $1 AND e.key = ANY($2) AND e.value <> ''
                            AND ($3::timestamptz IS NULL OR s.last_seen >= $3)
                          LIMIT $4",
                        &[&tenant, &keys, &since, &(MAX_LABEL_VALUES as i64 + 1)],
                    )
                    .await?;
                out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            }
        }
    }
    out.remove("");
    Ok(out.into_iter().take(MAX_LABEL_VALUES).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::parse;

    fn family(name: &str, kind: i16, monotonic: bool, unit: &str) -> Family {
        Family {
            name: name.into(),
            kind,
            temporality: 2,
            monotonic,
            unit: unit.into(),
        }
    }

    fn matchers(q: &str) -> Matchers {
        match parse(q).unwrap() {
            crate::promql::Expr::Selector(s) => Matchers::of(&s).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn catalog() -> Vec<Family> {
        vec![
            family(
                "gen_ai.client.token.usage",
                names::HISTOGRAM,
                false,
                "{token}",
            ),
            family(
                "gen_ai.client.operation.duration",
                names::EXP_HISTOGRAM,
                false,
                "s",
            ),
            family("requests", names::SUM, true, ""),
            family("queue.depth", names::GAUGE, false, ""),
        ]
    }

    fn selected(q: &str) -> Vec<(usize, Vec<String>)> {
        targets(&catalog(), &matchers(q).names)
            .into_iter()
            .map(|(i, parts)| (i, parts.into_iter().map(|p| p.0).collect()))
            .collect()
    }

    #[test]
    fn names_resolve_to_their_families_and_parts() {
        assert_eq!(
            selected("gen_ai_client_token_usage_bucket"),
            vec![(0, vec!["gen_ai_client_token_usage_bucket".to_owned()])]
        );
        assert_eq!(
            selected(r#"{"gen_ai.client.token.usage_count"}"#),
            vec![(0, vec!["gen_ai_client_token_usage_count".to_owned()])]
        );
        assert_eq!(
            selected("gen_ai_client_operation_duration_seconds_sum"),
            vec![(
                1,
                vec!["gen_ai_client_operation_duration_seconds_sum".to_owned()]
            )]
        );
        assert_eq!(
            selected("requests_total"),
            vec![(2, vec!["requests_total".to_owned()])]
        );
        assert_eq!(
            selected(r#"{"requests"}"#),
            vec![(2, vec!["requests_total".to_owned()])]
        );
        // An OpenTelemetry name is accepted as is.
        assert_eq!(
            selected("requests"),
            vec![(2, vec!["requests_total".to_owned()])]
        );
        assert!(selected("gen_ai_client_token_usage").is_empty());
        let all = selected(r#"{__name__=~"gen_ai_.*_count"}"#);
        assert_eq!(all.len(), 2);
        let unnamed = targets(&catalog(), &matchers(r#"{job="x"}"#).names);
        assert_eq!(unnamed.len(), 4);
        assert_eq!(unnamed[&0].len(), 3);
        let not = selected(r#"{__name__!~"gen_ai.*", __name__=~".+"}"#);
        assert_eq!(not.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn matchers_are_sorted_by_when_they_apply() {
        let m = matchers(r#"h_bucket{le="0.5", "gen_ai.system"="openai", job!="x"}"#);
        assert_eq!(m.names.len(), 1);
        assert_eq!(
            m.series
                .iter()
                .map(|m| m.label.as_str())
                .collect::<Vec<_>>(),
            vec!["gen_ai_system", "job"]
        );
        assert_eq!(m.late.len(), 1);
    }

    #[test]
    fn sql_narrows_by_service_and_values() {
        let m = matchers(r#"x{job="shop/api", service_name="api", a="1", b=~"2", c="x;y", d=""}"#);
        let (services, values) = narrowing(&m.series);
        assert_eq!(services, Some(vec!["api".to_owned()]));
        assert_eq!(values, vec!["1".to_owned()]);
        let m = matchers(r#"x{job="a/b/c"}"#);
        assert_eq!(
            narrowing(&m.series).0,
            Some(vec!["a/b/c".to_owned(), "b/c".to_owned(), "c".to_owned()])
        );
        assert_eq!(narrowing(&matchers("x").series), (None, vec![]));
    }
}
