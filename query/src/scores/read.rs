//! Reading scores: `GET /api/v1/scores` (newest first, keyset pages) and
//! `GET /api/v1/scores/summary` (per name: count, mean, label
//! distribution, over time buckets and by group).
//!
//! What it guarantees: every read is the token's tenant's, deleted scores
//! are never returned, and each list condition is bound, never spliced.
//! The list walks `scores_time` (or the trace, session or name index when
//! the request names one) and stops at `limit`.

use crate::filters::{format_time, parse_duration, parse_in, Params, Range};
use crate::keyset;
use crate::problem::Problem;
use crate::sql::Sql;
use crate::summaries::micros;
use crate::traces::hex;
use observatory_schemas::kafka::parse_hex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The columns [`ScoreView::of`] reads, in its order.
pub const COLUMNS: &str =
    "id, trace_id, span_id, session_id, name, data_type, value, label, comment, \
    source, author, time_ns, metadata::text, time";

/// One stored score.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreView {
    /// Id.
    pub id: String,
    /// Target trace, hex.
    pub trace_id: Option<String>,
    /// Target span, hex.
    pub span_id: Option<String>,
    /// Target session.
    pub session_id: Option<String>,
    /// Name.
    pub name: String,
    /// numeric, categorical, boolean or text.
    pub data_type: String,
    /// The number.
    pub value: Option<f64>,
    /// The label or text.
    pub label: Option<String>,
    /// Why.
    pub comment: Option<String>,
    /// api, annotation, eval or otlp.
    pub source: String,
    /// Who.
    pub author: Option<String>,
    /// When, RFC 3339.
    pub time: String,
    /// Anything else.
    pub metadata: serde_json::Value,
}

impl ScoreView {
    /// The view of a row of [`COLUMNS`].
    pub fn of(row: &tokio_postgres::Row) -> ScoreView {
        let bytes = |i: usize| row.get::<_, Option<Vec<u8>>>(i).as_deref().map(hex);
        let time_ns: i64 = row.get(11);
        ScoreView {
            id: row.get(0),
            trace_id: bytes(1),
            span_id: bytes(2),
            session_id: row.get(3),
            name: row.get(4),
            data_type: row.get(5),
            value: row.get(6),
            label: row.get(7),
            comment: row.get(8),
            source: row.get(9),
            author: row.get(10),
            time: observatory_schemas::civil::rfc3339_nanos(time_ns),
            metadata: serde_json::from_str(row.get::<_, &str>(12)).unwrap_or_default(),
        }
    }
}

/// The longest window a scores read covers.
const MAX_RANGE: Duration = Duration::from_secs(90 * 86_400);
/// The window when none is given.
const DEFAULT_RANGE: Duration = Duration::from_secs(7 * 86_400);

/// `GET /api/v1/scores`, parsed.
#[derive(Debug)]
pub struct ListQuery {
    range: Range,
    name: Option<String>,
    source: Option<String>,
    data_type: Option<String>,
    trace_id: Option<Vec<u8>>,
    span_id: Option<Vec<u8>>,
    session_id: Option<String>,
    author: Option<String>,
    min_value: Option<f64>,
    max_value: Option<f64>,
    limit: i64,
    after: Option<(SystemTime, String)>,
}

fn hex_param(len: usize) -> impl Fn(&str) -> Result<Vec<u8>, String> {
    move |text| {
        parse_hex(text)
            .filter(|b| b.len() == len)
            .ok_or_else(|| format!("{} hex characters", len * 2))
    }
}

fn one_of(allowed: &'static [&'static str]) -> impl Fn(&str) -> Result<String, String> {
    move |text| {
        allowed
            .iter()
            .find(|a| **a == text)
            .map(|a| (*a).to_owned())
            .ok_or_else(|| format!("one of {}", allowed.join(", ")))
    }
}

fn number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| "a finite number".to_owned())
}

impl ListQuery {
    /// Parses the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<ListQuery, Problem> {
        let range = Range::take(p, now, DEFAULT_RANGE, MAX_RANGE)?;
        let q = ListQuery {
            range,
            name: p.one("name")?,
            source: p.parsed("source", one_of(&["api", "annotation", "eval", "otlp"]))?,
            data_type: p.parsed(
                "data_type",
                one_of(&["numeric", "categorical", "boolean", "text"]),
            )?,
            trace_id: p.parsed("trace_id", hex_param(16))?,
            span_id: p.parsed("span_id", hex_param(8))?,
            session_id: p.one("session_id")?,
            author: p.one("author")?,
            min_value: p.parsed("min_value", number)?,
            max_value: p.parsed("max_value", number)?,
            limit: p.parsed("limit", |t| parse_in(t, 1..=500))?.unwrap_or(50),
            after: p.parsed("cursor", |t| {
                let parts = keyset::decode(t, 2)?;
                let us: u64 = parts[0].parse().map_err(|_| "not a cursor this API gave")?;
                Ok((UNIX_EPOCH + Duration::from_micros(us), parts[1].clone()))
            })?,
        };
        p.finish()?;
        Ok(q)
    }
}

/// A page of scores.
#[derive(Debug, Serialize)]
pub struct ScorePage {
    /// Newest first.
    pub scores: Vec<ScoreView>,
    /// The next page's `cursor`, when there is one.
    pub next_cursor: Option<String>,
}

/// Appends `AND column = $n` when `value` is given.
fn and_eq<T>(sql: &mut Sql, column: &str, value: &Option<T>)
where
    T: tokio_postgres::types::ToSql + Sync + Send + Clone + 'static,
{
    if let Some(v) = value {
        let p = sql.bind(v.clone());
        sql.push(&format!(" AND {column} = {p}"));
    }
}

/// Runs a [`ListQuery`].
pub async fn list(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &ListQuery,
) -> Result<ScorePage, tokio_postgres::Error> {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let from = sql.bind(q.range.from);
    let to = sql.bind(q.range.to);
    sql.push(&format!(
        "SELECT {COLUMNS} FROM scores WHERE tenant = {t} AND NOT deleted AND time >= {from} AND time < {to}"
    ));
    and_eq(&mut sql, "name", &q.name);
    and_eq(&mut sql, "source", &q.source);
    and_eq(&mut sql, "data_type", &q.data_type);
    and_eq(&mut sql, "trace_id", &q.trace_id);
    and_eq(&mut sql, "span_id", &q.span_id);
    and_eq(&mut sql, "session_key", &q.session_id);
    and_eq(&mut sql, "author", &q.author);
    if let Some(v) = q.min_value {
        let p = sql.bind(v);
        sql.push(&format!(" AND value >= {p}"));
    }
    if let Some(v) = q.max_value {
        let p = sql.bind(v);
        sql.push(&format!(" AND value <= {p}"));
    }
    if let Some((time, id)) = &q.after {
        let (time, id) = (sql.bind(*time), sql.bind(id.clone()));
        sql.push(&format!(" AND (time, id) < ({time}, {id})"));
    }
    let limit = sql.bind(q.limit + 1);
    sql.push(&format!(" ORDER BY time DESC, id DESC LIMIT {limit}"));
    let rows = client.query(&sql.text, &sql.refs()).await?;
    let more = rows.len() as i64 > q.limit;
    let scores: Vec<ScoreView> = rows
        .iter()
        .take(q.limit as usize)
        .map(ScoreView::of)
        .collect();
    let next_cursor = more.then(|| {
        let last = &rows[q.limit as usize - 1];
        let time: SystemTime = last.get(13);
        keyset::encode(&[micros(time).to_string(), last.get::<_, String>(0)])
    });
    Ok(ScorePage {
        scores,
        next_cursor,
    })
}

/// What a summary groups by.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// The target trace's model (the first, when it used several).
    Model,
    /// The target trace's root service.
    Service,
    /// The target trace's end user.
    User,
    /// A key of the scores' metadata (`metadata.prompt_version`).
    Metadata(String),
}

/// `GET /api/v1/scores/summary`, parsed.
#[derive(Debug)]
pub struct SummaryQuery {
    range: Range,
    names: Vec<String>,
    source: Option<String>,
    bucket: Option<Duration>,
    group_by: Option<GroupBy>,
}

/// Most time buckets a summary has.
const MAX_BUCKETS: u64 = 1_000;

impl SummaryQuery {
    /// Parses the parameters.
    pub fn parse(p: &mut Params, now: SystemTime) -> Result<SummaryQuery, Problem> {
        let range = Range::take(p, now, Duration::from_secs(86_400), MAX_RANGE)?;
        let names = p.all("name");
        if names.len() > 20 || names.iter().any(|n| n.is_empty()) {
            return Err(Problem::bad_parameter("name", "1 to 20 names, none empty"));
        }
        let source = p.parsed("source", one_of(&["api", "annotation", "eval", "otlp"]))?;
        let bucket = p.parsed("bucket", parse_duration)?;
        if let Some(b) = bucket {
            let span = range.to.duration_since(range.from).unwrap_or_default();
            if b < Duration::from_secs(60) || span.as_secs() / b.as_secs().max(1) > MAX_BUCKETS {
                return Err(Problem::bad_parameter(
                    "bucket",
                    format!("at least 1m and at most {MAX_BUCKETS} buckets in the range"),
                ));
            }
        }
        let group_by = p.parsed("group_by", |t| match t {
            "model" => Ok(GroupBy::Model),
            "service" => Ok(GroupBy::Service),
            "user" => Ok(GroupBy::User),
            other => match other.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() && key.len() <= 128 => {
                    Ok(GroupBy::Metadata(key.to_owned()))
                }
                _ => Err("model, service, user or metadata.<key>".to_owned()),
            },
        })?;
        p.finish()?;
        Ok(SummaryQuery {
            range,
            names,
            source,
            bucket,
            group_by,
        })
    }
}

/// Count, mean and labels of a set of scores.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Scores.
    pub count: i64,
    /// Mean of their values (`null` when none has one).
    pub mean: Option<f64>,
    /// Scores per label (categorical and boolean scores).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, i64>,
    #[serde(skip)]
    sum: f64,
    #[serde(skip)]
    valued: i64,
}

impl Stats {
    fn add(&mut self, count: i64, sum: Option<f64>, valued: i64, label: Option<&str>) {
        self.count += count;
        self.sum += sum.unwrap_or(0.0);
        self.valued += valued;
        self.mean = (self.valued > 0).then(|| self.sum / self.valued as f64);
        if let Some(l) = label {
            *self.labels.entry(l.to_owned()).or_default() += count;
        }
    }
}

/// One time bucket of a name.
#[derive(Debug, Serialize)]
pub struct Point {
    /// The bucket's start, RFC 3339.
    pub time: String,
    /// Its scores.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One group of a name.
#[derive(Debug, Serialize)]
pub struct Group {
    /// The group's value (`""`: unknown).
    pub group: String,
    /// Its scores.
    #[serde(flatten)]
    pub stats: Stats,
}

/// One score name.
#[derive(Debug, Serialize)]
pub struct NameSummary {
    /// The name.
    pub name: String,
    /// Its data type.
    pub data_type: String,
    /// All its scores in the window.
    #[serde(flatten)]
    pub stats: Stats,
    /// By group, most scores first (with `group_by`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// By time bucket, oldest first (with `bucket`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<Point>,
}

/// The summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Window start.
    pub from: String,
    /// Window end.
    pub to: String,
    /// Per name, by name.
    pub names: Vec<NameSummary>,
}

/// One name's stats: all, by group, by time bucket.
type Aggregate = (Stats, BTreeMap<String, Stats>, BTreeMap<i64, Stats>);

/// Runs a [`SummaryQuery`].
pub async fn summary(
    client: &tokio_postgres::Client,
    tenant: &str,
    q: &SummaryQuery,
) -> Result<Summary, tokio_postgres::Error> {
    let mut sql = Sql::default();
    let t = sql.bind(tenant.to_owned());
    let from = sql.bind(q.range.from);
    let to = sql.bind(q.range.to);
    let (group, join) = match &q.group_by {
        None => ("''".to_owned(), ""),
        Some(GroupBy::Model) => (
            "coalesce(ts.models[1], '')".to_owned(),
            " LEFT JOIN trace_summaries ts ON ts.tenant = s.tenant AND ts.trace_id = s.trace_id",
        ),
        Some(GroupBy::Service) => (
            "coalesce(ts.root_service, '')".to_owned(),
            " LEFT JOIN trace_summaries ts ON ts.tenant = s.tenant AND ts.trace_id = s.trace_id",
        ),
        Some(GroupBy::User) => ("coalesce(s.trace_user, '')".to_owned(), ""),
        Some(GroupBy::Metadata(key)) => {
            let k = sql.bind(key.clone());
            (format!("coalesce(s.metadata ->> {k}, '')"), "")
        }
    };
    let bucket = match q.bucket {
        None => "0::int8".to_owned(),
        Some(b) => {
            let step = sql.bind(b.as_secs() as f64);
            format!("floor(extract(epoch FROM s.time)::float8 / {step}::float8)::int8")
        }
    };
    sql.push(&format!(
        "SELECT s.name, s.data_type, {group}, {bucket},
                CASE WHEN s.data_type IN ('categorical', 'boolean') THEN s.label END,
                count(*), sum(s.value), count(s.value)
           FROM scores s{join}
          WHERE s.tenant = {t} AND NOT s.deleted AND s.time >= {from} AND s.time < {to}"
    ));
    if !q.names.is_empty() {
        let names = sql.bind(q.names.clone());
        sql.push(&format!(" AND s.name = ANY({names})"));
    }
    if let Some(source) = &q.source {
        let source = sql.bind(source.clone());
        sql.push(&format!(" AND s.source = {source}"));
    }
    sql.push(" GROUP BY 1, 2, 3, 4, 5");
    let rows = client.query(&sql.text, &sql.refs()).await?;
    let mut names: BTreeMap<(String, String), Aggregate> = BTreeMap::new();
    for row in &rows {
        let (name, data_type, group, bucket): (String, String, String, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let label: Option<String> = row.get(4);
        let (count, sum, valued): (i64, Option<f64>, i64) = (row.get(5), row.get(6), row.get(7));
        let entry = names.entry((name, data_type)).or_default();
        entry.0.add(count, sum, valued, label.as_deref());
        if q.group_by.is_some() {
            entry
                .1
                .entry(group)
                .or_default()
                .add(count, sum, valued, label.as_deref());
        }
        if q.bucket.is_some() {
            entry
                .2
                .entry(bucket)
                .or_default()
                .add(count, sum, valued, label.as_deref());
        }
    }
    let step = q.bucket.map_or(0, |b| b.as_secs());
    Ok(Summary {
        from: format_time(q.range.from),
        to: format_time(q.range.to),
        names: names
            .into_iter()
            .map(|((name, data_type), (stats, groups, series))| {
                let mut groups: Vec<Group> = groups
                    .into_iter()
                    .map(|(group, stats)| Group { group, stats })
                    .collect();
                groups.sort_by_key(|g| std::cmp::Reverse(g.stats.count));
                NameSummary {
                    name,
                    data_type,
                    stats,
                    groups,
                    series: series
                        .into_iter()
                        .map(|(b, stats)| Point {
                            time: format_time(UNIX_EPOCH + Duration::from_secs(b as u64 * step)),
                            stats,
                        })
                        .collect(),
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn list_parameters_are_checked() {
        let now = SystemTime::now();
        let field = |pairs: &[(&str, &str)]| {
            ListQuery::parse(&mut params(pairs), now)
                .unwrap_err()
                .parameter
                .unwrap()
        };
        assert_eq!(field(&[("trace_id", "abc")]), "trace_id");
        assert_eq!(field(&[("source", "robot")]), "source");
        assert_eq!(field(&[("min_value", "NaN")]), "min_value");
        assert_eq!(field(&[("limit", "0")]), "limit");
        assert_eq!(field(&[("cursor", "zzz")]), "cursor");
        assert_eq!(field(&[("colour", "red")]), "colour");
        let q = ListQuery::parse(
            &mut params(&[
                ("name", "q"),
                ("cursor", &keyset::encode(&["5".into(), "a".into()])),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            q.after,
            Some((UNIX_EPOCH + Duration::from_micros(5), "a".into()))
        );
    }

    #[test]
    fn summary_parameters_are_checked() {
        let now = SystemTime::now();
        let field = |pairs: &[(&str, &str)]| {
            SummaryQuery::parse(&mut params(pairs), now)
                .unwrap_err()
                .parameter
                .unwrap()
        };
        assert_eq!(field(&[("bucket", "1s")]), "bucket");
        assert_eq!(field(&[("group_by", "colour")]), "group_by");
        assert_eq!(field(&[("group_by", "metadata.")]), "group_by");
        let q = SummaryQuery::parse(
            &mut params(&[("group_by", "metadata.prompt_version"), ("bucket", "1h")]),
            now,
        )
        .unwrap();
        assert_eq!(q.group_by, Some(GroupBy::Metadata("prompt_version".into())));
    }

    #[test]
    fn stats_mean_only_valued_scores_and_count_labels() {
        let mut s = Stats::default();
        s.add(2, Some(1.0), 2, Some("good"));
        s.add(1, None, 0, Some("bad"));
        assert_eq!(s.count, 3);
        assert_eq!(s.mean, Some(0.5));
        assert_eq!(s.labels["good"], 2);
    }
}
