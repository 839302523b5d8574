//! Turning one `otlp_metrics` message into series and points.
//!
//! Pure: no I/O. A message that can never be stored (undecodable, another
//! signal's, an invalid tenant header) is an error, for the DLQ. Single
//! points that cannot be stored are left out and counted by a fixed reason
//! ([`Drop`]), so one bad point never costs its neighbours:
//! - `non_finite`: a NaN or infinite value, sum, min or max (a point whose
//!   "no recorded value" flag is set is kept, without a value);
//! - `invalid_histogram`: bucket counts that do not match the bounds or do
//!   not add up to the count, bounds not increasing;
//! - `invalid_summary`: a quantile outside [0, 1];
//! - `missing_time`, `expired` (older than `RETENTION_METRICS_DAYS`),
//!   `future` (further ahead than `ACCEPT_SPANS_MAX_FUTURE`).
//!
//! A series' id ([`series_id`]) hashes everything that makes it one stream,
//! so a replay finds the same series and the same points.

use crate::source::InMessage;
use observatory_schemas::kafka::headers;
use observatory_schemas::otlp::common::KeyValue;
use observatory_schemas::otlp::metrics::{exemplar, metric, number_data_point, Exemplar, Metric};
use observatory_schemas::otlp::metrics_service::ExportMetricsServiceRequest;
use observatory_schemas::resource_key::{fnv1a, stored_resource_id, FNV_OFFSET};
use observatory_schemas::span::{attributes_json, string_attribute, UNKNOWN_SERVICE};
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The stored kinds of metric (column `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum Kind {
    /// Gauge.
    Gauge = 1,
    /// Sum.
    Sum = 2,
    /// Explicit-bucket histogram.
    Histogram = 3,
    /// Exponential histogram.
    ExponentialHistogram = 4,
    /// Summary.
    Summary = 5,
}

/// Why a point was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Drop {
    /// NaN or infinite.
    NonFinite,
    /// Inconsistent histogram.
    InvalidHistogram,
    /// Quantile outside [0, 1].
    InvalidSummary,
    /// No time.
    MissingTime,
    /// Older than the retention.
    Expired,
    /// Too far ahead.
    Future,
}

impl Drop {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::NonFinite => "non_finite",
            Drop::InvalidHistogram => "invalid_histogram",
            Drop::InvalidSummary => "invalid_summary",
            Drop::MissingTime => "missing_time",
            Drop::Expired => "expired",
            Drop::Future => "future",
        }
    }
}

/// One series, as `metric_series` stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its id.
    pub id: i64,
    /// Tenant.
    pub tenant: String,
    /// Metric name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// 0 unspecified, 1 delta, 2 cumulative.
    pub temporality: i16,
    /// Whether a sum only goes up.
    pub monotonic: bool,
    /// Unit.
    pub unit: String,
    /// Description.
    pub description: String,
    /// `service.name` of the resource.
    pub service: String,
    /// Instrumentation scope.
    pub scope_name: String,
    /// Resource id (`resources`).
    pub resource_id: i64,
    /// Resource attributes, JSON.
    pub resource: String,
    /// Point attributes, JSON, keys sorted.
    pub attributes: String,
    /// Explicit bucket bounds.
    pub bounds: Option<Vec<f64>>,
}

/// One point, as `metric_points` stores it; `series` indexes the
/// message's [`Prepared::series`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Index of its series in the message.
    pub series: usize,
    /// Time.
    pub time: i64,
    /// Start time (cumulative and delta streams).
    pub start_time: Option<i64>,
    /// Gauge or sum value.
    pub value: Option<f64>,
    /// Histogram or summary count.
    pub count: Option<i64>,
    /// Sum.
    pub sum: Option<f64>,
    /// Min.
    pub min: Option<f64>,
    /// Max.
    pub max: Option<f64>,
    /// Bucket counts (explicit; exponential: positive).
    pub buckets: Option<Vec<i64>>,
    /// Exponential: scale.
    pub exp_scale: Option<i32>,
    /// Exponential: zero bucket.
    pub exp_zero_count: Option<i64>,
    /// Exponential: offset of the positive buckets.
    pub exp_offset: Option<i32>,
    /// Exponential: offset of the negative buckets.
    pub exp_negative_offset: Option<i32>,
    /// Exponential: negative buckets.
    pub exp_negative: Option<Vec<i64>>,
    /// Summary: [q0, v0, q1, v1, ...].
    pub quantiles: Option<Vec<f64>>,
    /// OTLP data point flags.
    pub flags: i32,
    /// Exemplars, JSON.
    pub exemplars: Option<String>,
}

/// The series and points of one message.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Distinct series.
    pub series: Vec<Series>,
    /// Points.
    pub points: Vec<Point>,
    /// Points left out, by reason.
    pub dropped: Vec<(Drop, u64)>,
}

impl Prepared {
    fn drop(&mut self, why: Drop) {
        match self.dropped.iter_mut().find(|(d, _)| *d == why) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((why, 1)),
        }
    }
}

/// A series' id: FNV-1a 64 over tenant, name, kind, temporality,
/// monotonicity, unit, resource, scope, attributes and bounds, each
/// followed by a 0 byte.
pub fn series_id(s: &Series) -> i64 {
    id_of(
        [
            s.tenant.as_bytes(),
            s.name.as_bytes(),
            &[s.kind as u8, s.temporality as u8, u8::from(s.monotonic)],
            s.unit.as_bytes(),
            s.resource.as_bytes(),
            s.scope_name.as_bytes(),
            s.attributes.as_bytes(),
        ],
        s.bounds.as_deref(),
    )
}

fn id_of(parts: [&[u8]; 7], bounds: Option<&[f64]>) -> i64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        h = fnv1a(h, part);
        h = fnv1a(h, &[0]);
    }
    for b in bounds.unwrap_or_default() {
        h = fnv1a(h, &b.to_le_bytes());
    }
    h as i64
}

/// Attributes as JSON with keys in order: the same set gives the same text
/// whatever order the SDK sent it in.
fn sorted_json(attributes: &[KeyValue]) -> String {
    let mut out = String::new();
    if attributes.windows(2).all(|w| w[0].key <= w[1].key) {
        attributes_json(attributes, &mut out); // the common case: no copy
    } else {
        let mut sorted = attributes.to_vec();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        attributes_json(&sorted, &mut out);
    }
    out
}

fn exemplars_json(exemplars: &[Exemplar]) -> Option<String> {
    if exemplars.is_empty() {
        return None;
    }
    let mut out = String::from("[");
    for (i, e) in exemplars.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"time_unix_nano\":");
        out.push_str(&e.time_unix_nano.to_string());
        let value = match e.value {
            Some(exemplar::Value::AsDouble(d)) if d.is_finite() => d.to_string(),
            Some(exemplar::Value::AsInt(i)) => i.to_string(),
            _ => "null".into(),
        };
        out.push_str(",\"value\":");
        out.push_str(&value);
        for (key, id) in [("trace_id", &e.trace_id), ("span_id", &e.span_id)] {
            if !id.is_empty() {
                out.push_str(",\"");
                out.push_str(key);
                out.push_str("\":\"");
                observatory_schemas::kafka::push_hex(&mut out, id);
                out.push('"');
            }
        }
        if !e.filtered_attributes.is_empty() {
            out.push_str(",\"attributes\":");
            attributes_json(&e.filtered_attributes, &mut out);
        }
        out.push('}');
    }
    out.push(']');
    Some(out)
}

fn finite(v: Option<f64>) -> bool {
    v.is_none_or(f64::is_finite)
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counts(c: &[u64]) -> Vec<i64> {
    c.iter().map(|n| count(*n)).collect()
}

/// Makes series and points from messages.
#[derive(Debug, Clone)]
pub struct Preparer {
    /// Points older than this are not stored (the metrics retention).
    pub max_age: Duration,
    /// Points further ahead are not stored.
    pub max_future: Duration,
}

/// What every point of a stream shares, before its attributes.
struct Stream<'a> {
    tenant: &'a str,
    metric: &'a Metric,
    kind: Kind,
    temporality: i16,
    monotonic: bool,
    service: &'a str,
    scope: &'a str,
    resource: &'a str,
    resource_id: i64,
}

impl Stream<'_> {
    /// [`series_id`] of this stream's series with `attributes`, without
    /// building the series.
    fn series_id(&self, attributes: &str, bounds: Option<&[f64]>) -> i64 {
        id_of(
            [
                self.tenant.as_bytes(),
                self.metric.name.as_bytes(),
                &[
                    self.kind as u8,
                    self.temporality as u8,
                    u8::from(self.monotonic),
                ],
                self.metric.unit.as_bytes(),
                self.resource.as_bytes(),
                self.scope.as_bytes(),
                attributes.as_bytes(),
            ],
            bounds,
        )
    }

    fn series(&self, id: i64, attributes: String, bounds: Option<Vec<f64>>) -> Series {
        Series {
            id,
            tenant: self.tenant.to_owned(),
            name: self.metric.name.clone(),
            kind: self.kind,
            temporality: self.temporality,
            monotonic: self.monotonic,
            unit: self.metric.unit.clone(),
            description: self.metric.description.clone(),
            service: self.service.to_owned(),
            scope_name: self.scope.to_owned(),
            resource_id: self.resource_id,
            resource: self.resource.to_owned(),
            attributes,
            bounds,
        }
    }
}

/// The OTLP "no recorded value" flag.
const NO_RECORDED_VALUE: u32 = 1;

impl Preparer {
    /// The rows of one message, or why it can never be stored.
    pub fn prepare(&self, message: &InMessage) -> Result<Prepared, String> {
        if let Some(signal) = message.header(headers::OTLP_SIGNAL) {
            if signal != "metrics" {
                return Err(format!("a {signal} message on a metrics topic"));
            }
        }
        let tenant = message.tenant()?;
        let request = ExportMetricsServiceRequest::decode(&message.payload[..])
            .map_err(|e| format!("undecodable OTLP metrics protobuf: {e}"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let oldest = now.saturating_sub(self.max_age.as_nanos() as i64);
        let latest = now.saturating_add(self.max_future.as_nanos() as i64);
        let mut out = Prepared::default();
        let mut index: std::collections::HashMap<i64, usize> = Default::default();
        for rm in &request.resource_metrics {
            let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            let service = string_attribute(attrs, "service.name").unwrap_or(UNKNOWN_SERVICE);
            let resource = sorted_json(attrs);
            let resource_id = stored_resource_id(&resource);
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
                for m in &sm.metrics {
                    let (kind, temporality, monotonic) = match &m.data {
                        Some(metric::Data::Gauge(_)) => (Kind::Gauge, 0, false),
                        Some(metric::Data::Sum(s)) => {
                            (Kind::Sum, s.aggregation_temporality as i16, s.is_monotonic)
                        }
                        Some(metric::Data::Histogram(h)) => {
                            (Kind::Histogram, h.aggregation_temporality as i16, false)
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => (
                            Kind::ExponentialHistogram,
                            h.aggregation_temporality as i16,
                            false,
                        ),
                        Some(metric::Data::Summary(_)) => (Kind::Summary, 0, false),
                        None => continue,
                    };
                    let stream = Stream {
                        tenant,
                        metric: m,
                        kind,
                        temporality,
                        monotonic,
                        service,
                        scope,
                        resource: &resource,
                        resource_id,
                    };
                    let mut add = |out: &mut Prepared,
                                   attributes: &[KeyValue],
                                   bounds: Option<&[f64]>,
                                   time: u64,
                                   start: u64,
                                   point: Result<Point, Drop>| {
                        let time = time as i64;
                        let checked = point.and_then(|p| {
                            if time <= 0 {
                                Err(Drop::MissingTime)
                            } else if time < oldest {
                                Err(Drop::Expired)
                            } else if time > latest {
                                Err(Drop::Future)
                            } else {
                                Ok(p)
                            }
                        });
                        let mut point = match checked {
                            Ok(p) => p,
                            Err(why) => return out.drop(why),
                        };
                        let attributes = sorted_json(attributes);
                        let id = stream.series_id(&attributes, bounds);
                        // The series is built (its texts copied) once per message.
                        let at = *index.entry(id).or_insert_with(|| {
                            out.series.push(stream.series(
                                id,
                                attributes,
                                bounds.map(<[f64]>::to_vec),
                            ));
                            out.series.len() - 1
                        });
                        point.series = at;
                        point.time = time;
                        point.start_time = (start > 0).then_some(start as i64);
                        out.points.push(point);
                    };
                    match &m.data {
                        Some(metric::Data::Gauge(g)) => {
                            for p in &g.data_points {
                                add(
                                    &mut out,
                                    &p.attributes,
                                    None,
                                    p.time_unix_nano,
                                    0,
                                    number(p),
                                );
                            }
                        }
                        Some(metric::Data::Sum(s)) => {
                            for p in &s.data_points {
                                let start = p.start_time_unix_nano;
                                add(
                                    &mut out,
                                    &p.attributes,
                                    None,
                                    p.time_unix_nano,
                                    start,
                                    number(p),
                                );
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for p in &h.data_points {
                                let bounds = Some(&p.explicit_bounds[..]);
                                let point = histogram(p);
                                let (time, start) = (p.time_unix_nano, p.start_time_unix_nano);
                                add(&mut out, &p.attributes, bounds, time, start, point);
                            }
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                let point = exponential(p);
                                let (time, start) = (p.time_unix_nano, p.start_time_unix_nano);
                                add(&mut out, &p.attributes, None, time, start, point);
                            }
                        }
                        Some(metric::Data::Summary(s)) => {
                            for p in &s.data_points {
                                let point = summary(p);
                                let (time, start) = (p.time_unix_nano, p.start_time_unix_nano);
                                add(&mut out, &p.attributes, None, time, start, point);
                            }
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

fn number(p: &observatory_schemas::otlp::metrics::NumberDataPoint) -> Result<Point, Drop> {
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    };
    let no_value = p.flags & NO_RECORDED_VALUE != 0;
    if !no_value && !finite(value) {
        return Err(Drop::NonFinite);
    }
    Ok(Point {
        value: if no_value { None } else { value },
        flags: p.flags as i32,
        exemplars: exemplars_json(&p.exemplars),
        ..Point::default()
    })
}

fn histogram(p: &observatory_schemas::otlp::metrics::HistogramDataPoint) -> Result<Point, Drop> {
    if p.flags & NO_RECORDED_VALUE == 0 {
        if !finite(p.sum) || !finite(p.min) || !finite(p.max) {
            return Err(Drop::NonFinite);
        }
        let buckets_match =
            p.bucket_counts.is_empty() || p.bucket_counts.len() == p.explicit_bounds.len() + 1;
        let adds_up = p.bucket_counts.is_empty()
            || p.bucket_counts
                .iter()
                .try_fold(0u64, |a, b| a.checked_add(*b))
                == Some(p.count);
        let increasing = p.explicit_bounds.windows(2).all(|w| w[0] < w[1])
            && p.explicit_bounds.iter().all(|b| b.is_finite());
        if !buckets_match || !adds_up || !increasing {
            return Err(Drop::InvalidHistogram);
        }
    }
    Ok(Point {
        count: Some(count(p.count)),
        sum: p.sum,
        min: p.min,
        max: p.max,
        buckets: (!p.bucket_counts.is_empty()).then(|| counts(&p.bucket_counts)),
        flags: p.flags as i32,
        exemplars: exemplars_json(&p.exemplars),
        ..Point::default()
    })
}

fn exponential(
    p: &observatory_schemas::otlp::metrics::ExponentialHistogramDataPoint,
) -> Result<Point, Drop> {
    let positive = p.positive.as_ref();
    let negative = p.negative.as_ref();
    if p.flags & NO_RECORDED_VALUE == 0 {
        if !finite(p.sum) || !finite(p.min) || !finite(p.max) {
            return Err(Drop::NonFinite);
        }
        let total = [positive, negative]
            .into_iter()
            .flatten()
            .flat_map(|b| &b.bucket_counts)
            .try_fold(p.zero_count, |a, b| a.checked_add(*b));
        if total != Some(p.count) || !(-10..=20).contains(&p.scale) {
            return Err(Drop::InvalidHistogram);
        }
    }
    Ok(Point {
        count: Some(count(p.count)),
        sum: p.sum,
        min: p.min,
        max: p.max,
        buckets: positive.map(|b| counts(&b.bucket_counts)),
        exp_scale: Some(p.scale),
        exp_zero_count: Some(count(p.zero_count)),
        exp_offset: positive.map(|b| b.offset),
        exp_negative_offset: negative.map(|b| b.offset),
        exp_negative: negative.map(|b| counts(&b.bucket_counts)),
        flags: p.flags as i32,
        exemplars: exemplars_json(&p.exemplars),
        ..Point::default()
    })
}

fn summary(p: &observatory_schemas::otlp::metrics::SummaryDataPoint) -> Result<Point, Drop> {
    if p.flags & NO_RECORDED_VALUE == 0 {
        if !p.sum.is_finite() || p.quantile_values.iter().any(|q| !q.value.is_finite()) {
            return Err(Drop::NonFinite);
        }
        if p.quantile_values
            .iter()
            .any(|q| !(0.0..=1.0).contains(&q.quantile))
        {
            return Err(Drop::InvalidSummary);
        }
    }
    Ok(Point {
        count: Some(count(p.count)),
        sum: Some(p.sum),
        quantiles: Some(
            p.quantile_values
                .iter()
                .flat_map(|q| [q.quantile, q.value])
                .collect(),
        ),
        flags: p.flags as i32,
        ..Point::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_schemas::otlp::metrics::{
        exponential_histogram_data_point::Buckets, ExponentialHistogram,
        ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };
    use observatory_schemas::testing::kv_str;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn message(metrics: Vec<Metric>) -> InMessage {
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(observatory_schemas::otlp::resource::Resource {
                    attributes: vec![kv_str("service.name", "svc")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        InMessage {
            topic: "otlp_metrics".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: request.encode_to_vec().into(),
            headers: vec![],
        }
    }

    fn preparer() -> Preparer {
        Preparer {
            max_age: Duration::from_secs(86_400),
            max_future: Duration::from_secs(86_400),
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        }
    }

    fn number_point(value: f64, attrs: Vec<KeyValue>, t: u64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    #[test]
    fn attribute_order_does_not_make_another_series() {
        let t = now();
        let a = vec![kv_str("a", "1"), kv_str("b", "2")];
        let b = vec![kv_str("b", "2"), kv_str("a", "1")];
        let out = preparer()
            .prepare(&message(vec![gauge(
                "g",
                vec![number_point(1.0, a, t), number_point(2.0, b, t + 1)],
            )]))
            .unwrap();
        assert_eq!(out.series.len(), 1);
        assert_eq!(out.points.len(), 2);
        assert_eq!(out.series[0].service, "svc");
        assert_eq!(out.series[0].attributes, r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            series_id(&out.series[0]),
            out.series[0].id,
            "one hash, two ways in"
        );
    }

    #[test]
    fn bad_points_are_dropped_with_a_reason_and_the_rest_kept() {
        let t = now();
        let histogram = |counts: Vec<u64>, count: u64| HistogramDataPoint {
            time_unix_nano: t,
            count,
            bucket_counts: counts,
            explicit_bounds: vec![1.0, 2.0],
            sum: Some(3.0),
            ..Default::default()
        };
        let metrics = vec![
            gauge(
                "g",
                vec![
                    number_point(f64::NAN, vec![], t),
                    number_point(f64::INFINITY, vec![], t + 1),
                    number_point(1.0, vec![], 0),
                    number_point(1.0, vec![], t - 2 * 86_400 * 1_000_000_000),
                    number_point(1.0, vec![], t + 2 * 86_400 * 1_000_000_000),
                    number_point(4.0, vec![], t + 2),
                ],
            ),
            Metric {
                name: "h".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![
                        histogram(vec![1, 1], 2),    // one bucket short
                        histogram(vec![1, 1, 1], 5), // counts do not add up
                        histogram(vec![1, 1, 1], 3),
                    ],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: t,
                        count: 4,
                        zero_count: 1,
                        scale: 2,
                        positive: Some(Buckets {
                            offset: -1,
                            bucket_counts: vec![1, 2],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                })),
                ..Default::default()
            },
        ];
        let out = preparer().prepare(&message(metrics)).unwrap();
        let dropped: std::collections::HashMap<&str, u64> =
            out.dropped.iter().map(|(d, n)| (d.as_str(), *n)).collect();
        assert_eq!(dropped["non_finite"], 2);
        assert_eq!(dropped["missing_time"], 1);
        assert_eq!(dropped["expired"], 1);
        assert_eq!(dropped["future"], 1);
        assert_eq!(dropped["invalid_histogram"], 2);
        assert_eq!(out.points.len(), 3, "{:?}", out.points);
        let exp = out.points.iter().find(|p| p.exp_scale.is_some()).unwrap();
        assert_eq!(exp.buckets.as_deref(), Some(&[1, 2][..]));
        assert_eq!(exp.exp_offset, Some(-1));
    }

    #[test]
    fn temporality_and_monotonicity_make_the_series() {
        let t = now();
        let sum = |temporality, monotonic| Metric {
            name: "s".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![number_point(1.0, vec![], t)],
                aggregation_temporality: temporality,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        };
        let out = preparer()
            .prepare(&message(vec![sum(1, true), sum(2, true), sum(2, false)]))
            .unwrap();
        assert_eq!(out.series.len(), 3);
        assert_eq!(out.series[1].temporality, 2);
    }

    #[test]
    fn a_message_of_another_signal_is_refused() {
        let mut m = message(vec![]);
        m.headers
            .push((headers::OTLP_SIGNAL.into(), b"logs".to_vec()));
        assert!(preparer().prepare(&m).unwrap_err().contains("logs message"));
        let mut m = message(vec![]);
        m.payload = bytes::Bytes::from_static(b"\xff\xff");
        assert!(preparer().prepare(&m).unwrap_err().contains("undecodable"));
    }
}
