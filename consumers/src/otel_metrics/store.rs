//! Writing a batch of series and points in one transaction.
//!
//! Order inside the transaction, the same in every writer so that two
//! never wait on each other in a cycle: resources, then the per-metric
//! series counts of the metrics that get new series (locked in key order),
//! then the new series, then the points. Points are COPYed each at most
//! once ([`copy_once`]: their key is (series, time)), so re-delivery and
//! replays store nothing twice. New series beyond `METRICS_MAX_SERIES` per
//! metric and tenant are not created, and their points are left out
//! (counted as `cardinality_limit`): a client that puts a request id in an
//! attribute cannot fill the database with series.

use super::rows::{Point, Series};
use crate::timescale::copy::{copy_once, CopyError, Encoded};
use postgres_types::Type;
use std::collections::{BTreeMap, HashMap, HashSet};
use tokio_postgres::Transaction;

const POINT_COLUMNS: &str =
    "series_id, time, start_time, value, count, sum, min, max, buckets, exp_scale, \
    exp_zero_count, exp_offset, exp_negative_offset, exp_negative, quantiles, flags, exemplars";
const POINT_TYPES: [Type; 17] = [
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::FLOAT8,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::INT8_ARRAY,
    Type::INT4,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::INT8_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::INT4,
    Type::JSONB,
];

/// A time in ns since the epoch, as PostgreSQL's `timestamptz`.
pub fn timestamp(ns: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64)
}

/// What one transaction did.
#[derive(Debug, Default)]
pub struct Stored {
    /// Points inserted.
    pub points: u64,
    /// Points already stored.
    pub duplicates: u64,
    /// Series created.
    pub series: u64,
    /// Points left out by the cardinality limit.
    pub over_limit: u64,
    /// Series left out by the cardinality limit: not stored, so never to
    /// be taken as known.
    pub refused: HashSet<i64>,
}

/// Writes `series` (each once) and `points` (indexes into `series`);
/// `known` holds series ids stored already (committed), not sent again.
/// Returns what was stored and the series ids created.
pub async fn write(
    tx: &mut Transaction<'_>,
    series: &[&Series],
    points: &[(usize, &Point)],
    known: &HashMap<i64, i64, crate::timescale::FastHash>,
    max_series: i64,
    direct: &mut bool,
) -> Result<(Stored, Vec<i64>), CopyError> {
    let mut stored = Stored::default();
    let unknown: Vec<&Series> = series
        .iter()
        .copied()
        .filter(|s| !known.contains_key(&s.id))
        .collect();
    let mut allowed: HashSet<i64> = series.iter().map(|s| s.id).collect();
    let mut created = Vec::new();
    if !unknown.is_empty() {
        let ids: Vec<i64> = unknown.iter().map(|s| s.id).collect();
        let existing: HashSet<i64> = tx
            .query(
                "SELECT series_id FROM metric_series WHERE series_id = ANY($1)",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Stored before this process knew them: seen now.
        let seen: Vec<i64> = existing.iter().copied().collect();
        touch(tx, &seen, std::time::SystemTime::now()).await?;
        // New series by metric, in key order.
        let mut new: BTreeMap<(&str, &str), Vec<&Series>> = BTreeMap::new();
        for s in unknown.iter().filter(|s| !existing.contains(&s.id)) {
            new.entry((s.tenant.as_str(), s.name.as_str()))
                .or_default()
                .push(s);
        }
        if !new.is_empty() {
            let resources: BTreeMap<(&str, i64), &str> = new
                .values()
                .flatten()
                .map(|s| ((s.tenant.as_str(), s.resource_id), s.resource.as_str()))
                .collect();
            let resources: Vec<(&str, i64, &str)> =
                resources.iter().map(|((t, i), a)| (*t, *i, *a)).collect();
            crate::timescale::writer::insert_resources(tx, &resources).await?;
            let tenants: Vec<&str> = new.keys().map(|k| k.0).collect();
            let names: Vec<&str> = new.keys().map(|k| k.1).collect();
            tx.execute(
                "INSERT INTO metric_names (tenant, name, series)
                 SELECT t, n, 0 FROM unnest($1::text[], $2::text[]) AS m(t, n)
                 ON CONFLICT DO NOTHING",
                &[&tenants, &names],
            )
            .await?;
            let counts: HashMap<(String, String), i64> = tx
                .query(
                    "SELECT m.tenant, m.name, m.series FROM metric_names m
                       JOIN unnest($1::text[], $2::text[]) AS k(t, n) ON m.tenant = k.t AND m.name = k.n
                      ORDER BY m.tenant, m.name
                        FOR UPDATE OF m",
                    &[&tenants, &names],
                )
                .await?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
            let mut admitted: Vec<&Series> = Vec::new();
            for ((tenant, name), mut list) in new {
                let have = counts
                    .get(&(tenant.to_owned(), name.to_owned()))
                    .copied()
                    .unwrap_or(0);
                let room = usize::try_from((max_series - have).max(0)).unwrap_or(0);
                list.sort_unstable_by_key(|s| s.id);
                if list.len() > room {
                    for s in &list[room..] {
                        allowed.remove(&s.id);
                        stored.refused.insert(s.id);
                    }
                    list.truncate(room);
                }
                admitted.extend(list);
            }
            created = insert_series(tx, &admitted).await?;
            let mut added: BTreeMap<(&str, &str), i64> = BTreeMap::new();
            let created_set: HashSet<i64> = created.iter().copied().collect();
            for s in admitted.iter().filter(|s| created_set.contains(&s.id)) {
                *added
                    .entry((s.tenant.as_str(), s.name.as_str()))
                    .or_default() += 1;
            }
            if !added.is_empty() {
                let tenants: Vec<&str> = added.keys().map(|k| k.0).collect();
                let names: Vec<&str> = added.keys().map(|k| k.1).collect();
                let counts: Vec<i64> = added.values().copied().collect();
                tx.execute(
                    "UPDATE metric_names m SET series = m.series + k.c
                       FROM unnest($1::text[], $2::text[], $3::int8[]) AS k(t, n, c)
                      WHERE m.tenant = k.t AND m.name = k.n",
                    &[&tenants, &names, &counts],
                )
                .await?;
            }
            stored.series = created.len() as u64;
        }
    }
    let mut rows = Encoded::new(&POINT_TYPES);
    for (index, p) in points {
        let s = series[*index];
        if !allowed.contains(&s.id) {
            stored.over_limit += 1;
            continue;
        }
        rows.push(&[
            &s.id,
            &timestamp(p.time),
            &p.start_time.map(timestamp),
            &p.value,
            &p.count,
            &p.sum,
            &p.min,
            &p.max,
            &p.buckets,
            &p.exp_scale,
            &p.exp_zero_count,
            &p.exp_offset,
            &p.exp_negative_offset,
            &p.exp_negative,
            &p.quantiles,
            &p.flags,
            &p.exemplars.as_deref().map(crate::timescale::copy::Jsonb),
        ])?;
    }
    stored.points = copy_once(tx, "metric_points", POINT_COLUMNS, &rows, direct).await?;
    stored.duplicates = rows.len() as u64 - stored.points;
    Ok((stored, created))
}

/// Inserts series in id order; returns the ids inserted (not stored before).
async fn insert_series(
    tx: &Transaction<'_>,
    series: &[&Series],
) -> Result<Vec<i64>, tokio_postgres::Error> {
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted = series.to_vec();
    sorted.sort_unstable_by_key(|s| s.id);
    let now = std::time::SystemTime::now();
    let ids: Vec<i64> = sorted.iter().map(|s| s.id).collect();
    let tenants: Vec<&str> = sorted.iter().map(|s| s.tenant.as_str()).collect();
    let names: Vec<&str> = sorted.iter().map(|s| s.name.as_str()).collect();
    let kinds: Vec<i16> = sorted.iter().map(|s| s.kind as i16).collect();
    let temporalities: Vec<i16> = sorted.iter().map(|s| s.temporality).collect();
    let monotonic: Vec<bool> = sorted.iter().map(|s| s.monotonic).collect();
    let units: Vec<&str> = sorted.iter().map(|s| s.unit.as_str()).collect();
    let descriptions: Vec<&str> = sorted.iter().map(|s| s.description.as_str()).collect();
    let services: Vec<&str> = sorted.iter().map(|s| s.service.as_str()).collect();
    let scopes: Vec<&str> = sorted.iter().map(|s| s.scope_name.as_str()).collect();
    let resources: Vec<i64> = sorted.iter().map(|s| s.resource_id).collect();
    let attributes: Vec<&str> = sorted.iter().map(|s| s.attributes.as_str()).collect();
    // Bounds as JSON text: unnest cannot take an array of arrays of
    // different lengths.
    let bounds: Vec<Option<String>> = sorted
        .iter()
        .map(|s| {
            s.bounds
                .as_ref()
                .map(|b| serde_json::to_string(b).expect("finite bounds serialize"))
        })
        .collect();
    let rows = tx
        .query(
            "INSERT INTO metric_series (series_id, tenant, name, kind, temporality, monotonic, unit,
                 description, service, scope_name, resource_id, attributes, bounds, first_seen, last_seen)
             SELECT i, t, n, k, tp, m, u, d, s, sc, r, a::jsonb,
                    CASE WHEN b IS NULL THEN NULL
                         ELSE ARRAY(SELECT jsonb_array_elements_text(b::jsonb)::float8) END,
                    $14, $14
               FROM unnest($1::int8[], $2::text[], $3::text[], $4::int2[], $5::int2[], $6::bool[],
                           $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[], $13::text[])
                    AS x(i, t, n, k, tp, m, u, d, s, sc, r, a, b)
             ON CONFLICT DO NOTHING
             RETURNING series_id",
            &[
                &ids,
                &tenants,
                &names,
                &kinds,
                &temporalities,
                &monotonic,
                &units,
                &descriptions,
                &services,
                &scopes,
                &resources,
                &attributes,
                &bounds,
                &now,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Moves the `last_seen` of `ids` to `now` (retention deletes series not
/// seen for `RETENTION_METRICS_DAYS`); the caller does it once a day per
/// series.
pub async fn touch(
    tx: &Transaction<'_>,
    ids: &[i64],
    now: std::time::SystemTime,
) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    tx.execute(
        "UPDATE metric_series SET last_seen = $2
          WHERE series_id IN (SELECT unnest($1::int8[]) ORDER BY 1) AND last_seen < $2",
        &[&sorted, &now],
    )
    .await?;
    Ok(())
}
