//! OpenTelemetry names as Prometheus names, both ways. Pure: no I/O.
//!
//! The translation is the one of Prometheus' OTLP receiver and of the
//! OpenTelemetry Prometheus exporter with suffixes on
//! (`prometheus/otlptranslator`, "UnderscoreEscapingWithSuffixes"):
//!
//! - **Metric names** ([`base_name`]): the name is split at every
//!   character outside `[a-zA-Z0-9:]` and the pieces joined with `_`
//!   (so `gen_ai.client.token.usage` is `gen_ai_client_token_usage`, and
//!   runs of `_` collapse); then the unit is appended ([`unit_suffix`]:
//!   `s` → `_seconds`, `ms` → `_milliseconds`, `By` → `_bytes`, `1` →
//!   nothing, `%` → `_percent`, `By/s` → `_bytes_per_second`, a unit in
//!   braces such as `{token}` → nothing, any other unit as is, cleaned),
//!   unless the name already holds it as a piece; monotonic sums (counters)
//!   end in `_total` and gauges of unit `1` in `_ratio`; a name starting
//!   with a digit gets a leading `_`.
//! - **Parts** ([`Part`]): a gauge or sum is one series under that name;
//!   a histogram (explicit or exponential) is `<name>_bucket` (cumulative
//!   counts with an `le` label, `+Inf` included), `<name>_sum` and
//!   `<name>_count`; a summary is `<name>` (with a `quantile` label),
//!   `<name>_sum` and `<name>_count`.
//! - **Labels** ([`label_name`]): every character outside `[a-zA-Z0-9_]`
//!   becomes `_` (`gen_ai.token.type` → `gen_ai_token_type`), a leading
//!   digit gets `key_` and a single leading `_` gets `key`; two attributes
//!   that become the same label have their values joined with `;` in the
//!   order of their keys. The resource gives `job` (`service.name`, or
//!   `service.namespace/service.name`), `instance` (`service.instance.id`)
//!   and `service_name` (`service.name`). Labels with an empty value are
//!   left out, as Prometheus does.
//!
//! Queries may name a metric by its Prometheus name or by its OpenTelemetry
//! name as stored (Prometheus 3's quoted names, `{"gen_ai.client.token.usage"}`,
//! with `_bucket`, `_sum` or `_count` appended for a histogram's parts), and
//! a label by its Prometheus name or its attribute key (`{"gen_ai.token.type"="input"}`,
//! `by ("gen_ai.token.type")`): a label name in a query goes through
//! [`label_name`] too. Answers always use the Prometheus names.

use std::collections::BTreeMap;

/// The stored kinds (`metric_series.kind`).
pub const GAUGE: i16 = 1;
/// Sum.
pub const SUM: i16 = 2;
/// Explicit-bucket histogram.
pub const HISTOGRAM: i16 = 3;
/// Exponential histogram.
pub const EXP_HISTOGRAM: i16 = 4;
/// Summary.
pub const SUMMARY: i16 = 5;

/// `metric_series.temporality` of a delta stream.
pub const DELTA: i16 = 1;

/// The label of a histogram bucket's upper bound.
pub const LE: &str = "le";
/// The label of a summary's quantile.
pub const QUANTILE: &str = "quantile";
/// The metric name label.
pub const NAME: &str = "__name__";

/// What makes one stored metric (`metric_series` rows that share these are
/// one metric of Prometheus' families).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// The OpenTelemetry name.
    pub name: String,
    /// The stored kind ([`GAUGE`] … [`SUMMARY`]).
    pub kind: i16,
    /// 0 unspecified, 1 delta, 2 cumulative.
    pub temporality: i16,
    /// Whether a sum only goes up.
    pub monotonic: bool,
    /// The unit (UCUM).
    pub unit: String,
}

/// Which series of a family a Prometheus name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// A gauge's or sum's value; a summary's quantiles.
    Value,
    /// A histogram's cumulative buckets (`_bucket`, with `le`).
    Bucket,
    /// A histogram's or summary's sum of observations (`_sum`).
    Sum,
    /// A histogram's or summary's count of observations (`_count`).
    Count,
}

impl Family {
    /// Whether it is a histogram (explicit or exponential).
    pub fn is_histogram(&self) -> bool {
        matches!(self.kind, HISTOGRAM | EXP_HISTOGRAM)
    }

    /// Its Prometheus names, each with its part.
    pub fn exposed(&self) -> Vec<(String, Part)> {
        let base = base_name(self);
        parts(self.kind)
            .iter()
            .map(|&(suffix, part)| (format!("{base}{suffix}"), part))
            .collect()
    }

    /// The names a query may also use for it: its OpenTelemetry name, with
    /// the same part suffixes.
    pub fn raw_names(&self) -> Vec<(String, Part)> {
        parts(self.kind)
            .iter()
            .map(|&(suffix, part)| (format!("{}{suffix}", self.name), part))
            .collect()
    }
}

fn parts(kind: i16) -> &'static [(&'static str, Part)] {
    match kind {
        HISTOGRAM | EXP_HISTOGRAM => &[
            ("_bucket", Part::Bucket),
            ("_sum", Part::Sum),
            ("_count", Part::Count),
        ],
        SUMMARY => &[
            ("", Part::Value),
            ("_sum", Part::Sum),
            ("_count", Part::Count),
        ],
        _ => &[("", Part::Value)],
    }
}

/// The pieces of a name: split at every character outside `[a-zA-Z0-9:]`.
fn tokens(name: &str) -> Vec<String> {
    name.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A unit's Prometheus word: UCUM's common units spelled out, anything
/// else as is.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The word after `per_`: `s` → `second`, …
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "meter",
        "min" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// A unit word as name pieces: characters outside `[a-zA-Z0-9:]` become
/// `_`, runs of `_` collapse, no `_` at either end.
fn clean(word: &str) -> String {
    tokens(word).join("_")
}

/// The unit's pieces appended to a name of `name_tokens` (empty: none).
///
/// ```
/// use observatory_api::promql::names::unit_suffix;
/// let none: Vec<String> = vec![];
/// assert_eq!(unit_suffix("s", &none), vec!["seconds"]);
/// assert_eq!(unit_suffix("By/s", &none), vec!["bytes", "per", "second"]);
/// assert!(unit_suffix("{token}", &none).is_empty());
/// assert!(unit_suffix("1", &none).is_empty());
/// assert!(unit_suffix("s", &["latency".into(), "seconds".into()]).is_empty());
/// ```
pub fn unit_suffix(unit: &str, name_tokens: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit.trim(), None),
    };
    if !main.is_empty() && !main.contains(['{', '}']) {
        let word = clean(unit_word(main));
        if !word.is_empty() && !name_tokens.contains(&word) {
            out.push(word);
        }
    }
    if let Some(per) = per.filter(|p| !p.is_empty() && !p.contains(['{', '}'])) {
        let word = clean(per_unit_word(per));
        if !word.is_empty() && !name_tokens.contains(&word) {
            out.push("per".to_owned());
            out.push(word);
        }
    }
    out
}

/// A family's Prometheus name, before its part's suffix.
///
/// ```
/// use observatory_api::promql::names::{base_name, Family, GAUGE, HISTOGRAM, SUM};
/// let f = |name: &str, kind, monotonic, unit: &str| Family {
///     name: name.into(), kind, temporality: 2, monotonic, unit: unit.into(),
/// };
/// assert_eq!(base_name(&f("gen_ai.client.token.usage", HISTOGRAM, false, "{token}")),
///            "gen_ai_client_token_usage");
/// assert_eq!(base_name(&f("gen_ai.client.operation.duration", HISTOGRAM, false, "s")),
///            "gen_ai_client_operation_duration_seconds");
/// assert_eq!(base_name(&f("http.server.requests", SUM, true, "1")), "http_server_requests_total");
/// assert_eq!(base_name(&f("system.cpu.utilization", GAUGE, false, "1")), "system_cpu_utilization_ratio");
/// ```
pub fn base_name(f: &Family) -> String {
    let mut pieces = tokens(&f.name);
    let unit = unit_suffix(&f.unit, &pieces);
    pieces.extend(unit);
    if f.kind == SUM && f.monotonic {
        pieces.retain(|p| p != "total");
        pieces.push("total".to_owned());
    }
    if f.kind == GAUGE && f.unit == "1" {
        pieces.retain(|p| p != "ratio");
        pieces.push("ratio".to_owned());
    }
    let name = pieces.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// A label name as Prometheus spells it: every character outside
/// `[a-zA-Z0-9_]` becomes `_`; a leading digit gets `key_`, a single
/// leading `_` gets `key`.
///
/// ```
/// use observatory_api::promql::names::label_name;
/// assert_eq!(label_name("gen_ai.token.type"), "gen_ai_token_type");
/// assert_eq!(label_name("2xx"), "key_2xx");
/// assert_eq!(label_name("_private"), "key_private");
/// assert_eq!(label_name("__name__"), "__name__");
/// assert_eq!(label_name("job"), "job");
/// ```
pub fn label_name(key: &str) -> String {
    let sanitized: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitized.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{sanitized}")
    } else if sanitized.starts_with('_') && !sanitized.starts_with("__") {
        format!("key{sanitized}")
    } else {
        sanitized
    }
}

/// Labels of a series, sorted by name, no empty value.
pub type Labels = Vec<(String, String)>;

/// The value of `name` in `labels` ("" when absent, as PromQL reads it).
pub fn get<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
        .map_or("", |i| labels[i].1.as_str())
}

/// `labels` with `name` set to `value` (removed when `value` is empty).
pub fn set(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_owned(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_owned(), value.to_owned())),
    }
}

/// The labels Prometheus reserves for the resource and the parts; an
/// attribute of the same name gives way.
const RESERVED: [&str; 6] = [NAME, "job", "instance", "service_name", LE, QUANTILE];

/// What the resource gives a series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// `service.name`.
    pub service: String,
    /// `service.namespace` ("" when absent).
    pub namespace: String,
    /// `service.instance.id` ("" when absent).
    pub instance: String,
}

/// A stored series' labels (without `__name__`, `le` and `quantile`): the
/// resource's, then the attributes' (`keys` and `values` in key order).
///
/// ```
/// use observatory_api::promql::names::{series_labels, Resource};
/// let r = Resource { service: "chat".into(), namespace: "shop".into(), instance: String::new() };
/// let labels = series_labels(&r, &["gen_ai.token.type".into(), "gen_ai_token.type".into()],
///                            &["input".into(), "x".into()]);
/// assert_eq!(labels, vec![
///     ("gen_ai_token_type".to_owned(), "input;x".to_owned()),
///     ("job".to_owned(), "shop/chat".to_owned()),
///     ("service_name".to_owned(), "chat".to_owned()),
/// ]);
/// ```
pub fn series_labels(resource: &Resource, keys: &[String], values: &[String]) -> Labels {
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let mut pairs: Vec<(&String, &String)> = keys.iter().zip(values).collect();
    pairs.sort();
    for (key, value) in pairs {
        if value.is_empty() {
            continue;
        }
        let label = label_name(key);
        if RESERVED.contains(&label.as_str()) {
            continue;
        }
        merged
            .entry(label)
            .and_modify(|v| {
                v.push(';');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let job = if resource.namespace.is_empty() {
        resource.service.clone()
    } else {
        format!("{}/{}", resource.namespace, resource.service)
    };
    for (label, value) in [
        ("job", job),
        ("instance", resource.instance.clone()),
        ("service_name", resource.service.clone()),
    ] {
        if !value.is_empty() {
            merged.insert(label.to_owned(), value);
        }
    }
    merged.into_iter().collect()
}

/// A float as Prometheus writes it (Go's `FormatFloat(f, 'f', -1, 64)`):
/// the shortest decimal that reads back the same, no exponent; `+Inf`,
/// `-Inf`, `NaN`.
///
/// ```
/// use observatory_api::promql::names::format_float;
/// assert_eq!(format_float(0.005), "0.005");
/// assert_eq!(format_float(1.0), "1");
/// assert_eq!(format_float(f64::INFINITY), "+Inf");
/// assert_eq!(format_float(1e-7), "0.0000001");
/// ```
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// An `le` or `quantile` value read back: a float, `+Inf` and `-Inf`
/// included.
pub fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(name: &str, kind: i16, monotonic: bool, unit: &str) -> Family {
        Family {
            name: name.into(),
            kind,
            temporality: 2,
            monotonic,
            unit: unit.into(),
        }
    }

    #[test]
    fn metric_names_as_prometheus_otlp_receiver_writes_them() {
        for (f, want) in [
            (
                family("gen_ai.client.token.usage", HISTOGRAM, false, "{token}"),
                "gen_ai_client_token_usage",
            ),
            (
                family(
                    "gen_ai.client.operation.duration",
                    EXP_HISTOGRAM,
                    false,
                    "s",
                ),
                "gen_ai_client_operation_duration_seconds",
            ),
            (
                family("http.server.request.duration", HISTOGRAM, false, "ms"),
                "http_server_request_duration_milliseconds",
            ),
            (family("requests", SUM, true, ""), "requests_total"),
            (family("requests.total", SUM, true, ""), "requests_total"),
            (family("total.requests", SUM, true, ""), "requests_total"),
            (family("queue.depth", GAUGE, false, ""), "queue_depth"),
            (family("queue.depth", SUM, false, "{item}"), "queue_depth"),
            (
                family("cpu.utilization", GAUGE, false, "1"),
                "cpu_utilization_ratio",
            ),
            (
                family("cpu.utilization", SUM, false, "1"),
                "cpu_utilization",
            ),
            (
                family("latency_seconds", GAUGE, false, "s"),
                "latency_seconds",
            ),
            (
                family("net.io", SUM, true, "By/s"),
                "net_io_bytes_per_second_total",
            ),
            (family("net.io", SUM, true, "/s"), "net_io_per_second_total"),
            (family("mem", GAUGE, false, "MiBy"), "mem_mebibytes"),
            (family("temp", GAUGE, false, "Cel"), "temp_celsius"),
            (
                family("weird..name__x", GAUGE, false, "tokens"),
                "weird_name_x_tokens",
            ),
            (family("job:rate5m", GAUGE, false, ""), "job:rate5m"),
            (family("2xx.count", SUM, true, ""), "_2xx_count_total"),
            (family("é.x", GAUGE, false, ""), "x"),
        ] {
            assert_eq!(base_name(&f), want, "{f:?}");
        }
    }

    #[test]
    fn parts_of_each_kind() {
        let h = family("d", HISTOGRAM, false, "s");
        assert_eq!(
            h.exposed(),
            vec![
                ("d_seconds_bucket".to_owned(), Part::Bucket),
                ("d_seconds_sum".to_owned(), Part::Sum),
                ("d_seconds_count".to_owned(), Part::Count),
            ]
        );
        assert_eq!(h.raw_names()[0], ("d_bucket".to_owned(), Part::Bucket));
        let s = family("rpc", SUMMARY, false, "");
        assert_eq!(s.exposed()[0], ("rpc".to_owned(), Part::Value));
        assert_eq!(s.exposed()[2], ("rpc_count".to_owned(), Part::Count));
        assert_eq!(
            family("c", SUM, true, "").exposed(),
            vec![("c_total".to_owned(), Part::Value)]
        );
        assert_eq!(
            family("gen_ai.x", SUM, true, "").raw_names(),
            vec![("gen_ai.x".to_owned(), Part::Value)]
        );
    }

    #[test]
    fn labels_of_a_series() {
        let r = Resource {
            service: "api".into(),
            namespace: String::new(),
            instance: "pod-1".into(),
        };
        let labels = series_labels(
            &r,
            &[
                "job".into(),
                "le".into(),
                "http.route".into(),
                "empty".into(),
                "1st".into(),
            ],
            &[
                "x".into(),
                "y".into(),
                "/v1".into(),
                String::new(),
                "a".into(),
            ],
        );
        assert_eq!(
            labels,
            vec![
                ("http_route".to_owned(), "/v1".to_owned()),
                ("instance".to_owned(), "pod-1".to_owned()),
                ("job".to_owned(), "api".to_owned()),
                ("key_1st".to_owned(), "a".to_owned()),
                ("service_name".to_owned(), "api".to_owned()),
            ]
        );
        assert_eq!(get(&labels, "job"), "api");
        assert_eq!(get(&labels, "nope"), "");
        let mut l = labels.clone();
        set(&mut l, "le", "0.5");
        assert_eq!(get(&l, "le"), "0.5");
        set(&mut l, "le", "");
        assert_eq!(l, labels);
        assert_eq!(label_name("service.name"), "service_name");
        assert_eq!(label_name("gen_ai.système"), "gen_ai_syst_me");
    }

    #[test]
    fn floats_as_prometheus_writes_them() {
        assert_eq!(format_float(2.0), "2");
        assert_eq!(format_float(-0.25), "-0.25");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("0.25"), Some(0.25));
        assert_eq!(parse_float("x"), None);
    }
}
