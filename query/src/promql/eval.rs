//! The evaluator: a parsed [`Expr`] over stored points already loaded
//! ([`Loaded`], one per selector, by [`super::store`]), at every step of a
//! range or at one instant. Pure: no I/O.
//!
//! Semantics, as Prometheus 3 computes them:
//! - an instant selector takes each series' newest sample in
//!   `(t - 5m, t]` ([`LOOKBACK_MS`]);
//! - `rate` and `increase` of a cumulative series (and of a gauge) read its
//!   samples in `(t - range, t]`, need two, count a value that goes down
//!   (or a new OpenTelemetry start time) as a counter reset, and
//!   extrapolate to the window's edges as Prometheus' `extrapolatedRate`
//!   does (not past half a sample interval, not below zero); `rate` is the
//!   increase per second of the range. A delta series' increase is the sum
//!   of its points in the window (each point is its own increase), without
//!   extrapolation; its instant value is the last delta;
//! - aggregations combine the series that have a value at the step, in
//!   groups of their `by` labels; `histogram_quantile` takes `le`-labelled
//!   buckets grouped by their other labels, sorted, made monotonic, and
//!   interpolates linearly inside the bucket holding the rank (the lowest
//!   bucket from 0; the `+Inf` bucket answers the highest finite bound);
//! - `rate`, `increase`, `histogram_quantile`, aggregations and arithmetic
//!   drop `__name__`; an instant selector keeps it.
//!
//! What it guarantees: the work is bounded: at most [`MAX_COMPUTED_POINTS`]
//! (series × steps) computed and [`MAX_HELD_POINTS`] held at once (groups
//! of an aggregation or a quantile, and the answer), else an
//! [`EvalError`] naming the limit; a window's rate or increase is O(1)
//! after a prefix sum, whatever its range.

use super::names::{self, format_float, get, parse_float, Labels, Part, LE, NAME, QUANTILE};
use super::parse::{AggregateOp, Expr, MatchOp, Matcher, Selector};
use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

/// How far back an instant selector looks for a sample (Prometheus'
/// default `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most points (series × steps) one query computes: beyond, it is refused
/// rather than run for minutes (about a second of work).
pub const MAX_COMPUTED_POINTS: usize = 50_000_000;

/// Most points one query holds at once (aggregation groups, quantile
/// buckets, the answer): 16 bytes each, so about 64 MB.
pub const MAX_HELD_POINTS: usize = 4_000_000;

/// Most `le` buckets an exponential histogram is shown with: past this,
/// the buckets are merged two by two (the scale lowered) until they fit.
pub const MAX_EXP_BUCKETS: i64 = 160;

/// Lowest scale OpenTelemetry defines: the layout never goes below it.
const MIN_SCALE: i32 = -10;

/// Prometheus' tolerance when it makes bucket counts monotonic.
const SMALL_DELTA: f64 = 1e-12;

/// Why a query cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// More than [`MAX_COMPUTED_POINTS`].
    #[error(
        "the query would compute more than {MAX_COMPUTED_POINTS} points (series × steps): take a \
         longer step, a shorter range, or select fewer series"
    )]
    TooMuchWork,
    /// More than [`MAX_HELD_POINTS`].
    #[error(
        "the query would hold more than {MAX_HELD_POINTS} points (series × steps) at once: take a \
         longer step, a shorter range, or aggregate into fewer groups"
    )]
    TooManyPoints,
}

/// How a series' samples add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// A value at each time (gauges, non-monotonic cumulative sums,
    /// summary quantiles).
    Gauge,
    /// A running total since a start time (Prometheus' counters).
    Cumulative,
    /// Each point is the increase since the previous one.
    Delta,
}

/// One stored point of a gauge or a sum (times in unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct ValuePoint {
    /// Time.
    pub t: i64,
    /// OpenTelemetry start time.
    pub start: Option<i64>,
    /// Value.
    pub value: f64,
}

/// One stored histogram point (explicit: `buckets` holds every bucket;
/// exponential: the positive ones from `offset` at `scale`, the zero and
/// negative buckets being `count` less their sum).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    /// Time.
    pub t: i64,
    /// OpenTelemetry start time.
    pub start: Option<i64>,
    /// Observations.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// Bucket counts.
    pub buckets: Vec<f64>,
    /// Exponential: scale.
    pub scale: i32,
    /// Exponential: index of `buckets[0]`.
    pub offset: i32,
}

/// One stored summary point.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryPoint {
    /// Time.
    pub t: i64,
    /// OpenTelemetry start time.
    pub start: Option<i64>,
    /// Observations.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// (quantile, value).
    pub quantiles: Vec<(f64, f64)>,
}

/// The `le` buckets a histogram's `_bucket` series are shown with.
#[derive(Debug, Clone, PartialEq)]
pub enum Buckets {
    /// The stored bounds (`+Inf` added).
    Explicit(Vec<f64>),
    /// Exponential buckets mapped to a common scale.
    Exponential(ExpLayout),
}

/// Exponential buckets at one `scale`: indices `first..=last` (empty when
/// `first > last`). Bucket `i` holds `(base^i, base^(i+1)]`,
/// `base = 2^(2^-scale)`; the `le` values are `base^first` (the zero and
/// negative observations), …, `base^(last+1)`, `+Inf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpLayout {
    /// Scale.
    pub scale: i32,
    /// Lowest index.
    pub first: i64,
    /// Highest index.
    pub last: i64,
}

impl ExpLayout {
    /// The layout that holds points at `(scale, lowest index, highest
    /// index)`: the lowest scale seen, lowered until at most
    /// [`MAX_EXP_BUCKETS`] buckets.
    ///
    /// ```
    /// use observatory_api::promql::eval::ExpLayout;
    /// // Scale 3 and scale 2: at scale 2, index 9 of scale 3 is 4.
    /// let l = ExpLayout::covering([(3, 9, 12), (2, 1, 2)]);
    /// assert_eq!((l.scale, l.first, l.last), (2, 1, 6));
    /// ```
    pub fn covering(ranges: impl IntoIterator<Item = (i32, i64, i64)>) -> ExpLayout {
        let ranges: Vec<(i32, i64, i64)> = ranges.into_iter().collect();
        let Some(scale) = ranges.iter().map(|r| r.0).min() else {
            return ExpLayout {
                scale: 0,
                first: 0,
                last: -1,
            };
        };
        let at = |(s, lo, hi): (i32, i64, i64)| {
            let shift = (s - scale).clamp(0, 62) as u32;
            (lo >> shift, hi >> shift)
        };
        let first = ranges.iter().map(|r| at(*r).0).min().unwrap_or(0);
        let last = ranges.iter().map(|r| at(*r).1).max().unwrap_or(-1);
        let mut l = ExpLayout { scale, first, last };
        while l.last - l.first + 1 > MAX_EXP_BUCKETS && l.scale > MIN_SCALE {
            l = ExpLayout {
                scale: l.scale - 1,
                first: l.first >> 1,
                last: l.last >> 1,
            };
        }
        l
    }

    /// The bound `base^index`.
    pub fn bound(&self, index: i64) -> f64 {
        (index as f64 * 2f64.powi(-self.scale)).exp2()
    }

    fn len(&self) -> usize {
        (self.last - self.first + 1).max(0) as usize
    }
}

impl Buckets {
    /// The `le` values, ascending, `+Inf` last.
    pub fn les(&self) -> Vec<f64> {
        let mut les: Vec<f64> = match self {
            Buckets::Explicit(bounds) => bounds.clone(),
            Buckets::Exponential(l) if l.len() == 0 => vec![0.0],
            Buckets::Exponential(l) => (0..=l.len() as i64).map(|j| l.bound(l.first + j)).collect(),
        };
        les.push(f64::INFINITY);
        les
    }

    /// The point's cumulative count at each of [`Buckets::les`], into `out`.
    fn cumulative(&self, p: &HistogramPoint, out: &mut Vec<f64>) {
        out.clear();
        match self {
            Buckets::Explicit(bounds) => {
                let mut seen = 0.0;
                for i in 0..bounds.len() {
                    seen += p.buckets.get(i).copied().unwrap_or(0.0);
                    out.push(seen);
                }
            }
            Buckets::Exponential(l) => {
                let n = l.len();
                let mut counts = vec![0.0; n];
                let positive: f64 = p.buckets.iter().sum();
                let mut below = (p.count - positive).max(0.0);
                let shift = (p.scale - l.scale).clamp(0, 62) as u32;
                for (i, c) in p.buckets.iter().enumerate() {
                    let index = (i64::from(p.offset) + i as i64) >> shift;
                    if index < l.first {
                        below += c;
                    } else if let Some(slot) = counts.get_mut((index - l.first) as usize) {
                        *slot += c;
                    }
                }
                out.push(below);
                let mut seen = below;
                for c in counts {
                    seen += c;
                    out.push(seen);
                }
            }
        }
        out.push(p.count);
    }
}

/// A stored series' points.
#[derive(Debug, Clone, PartialEq)]
pub enum Points {
    /// A gauge or a sum.
    Values(Vec<ValuePoint>),
    /// A histogram, shown with `buckets`.
    Histogram {
        /// Its `le` buckets.
        buckets: Buckets,
        /// Its points.
        points: Vec<HistogramPoint>,
    },
    /// A summary.
    Summary(Vec<SummaryPoint>),
}

/// One stored series, as a selector selected it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its labels, without `__name__`, `le` and `quantile`.
    pub labels: Labels,
    /// The Prometheus names of the parts selected, with their part.
    pub parts: Vec<(String, Part)>,
    /// How its values (a gauge's or sum's) or its counts and sums (a
    /// histogram's or summary's) add up.
    pub temporality: Temporality,
    /// Its points in the window read, by time.
    pub points: Points,
}

/// What one selector selected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The series.
    pub series: Vec<Stored>,
    /// The selector's matchers on `le` and `quantile`, which only the
    /// parts' series have.
    pub late: Vec<LabelMatcher>,
}

/// A label matcher, its label name as Prometheus spells it and its regular
/// expression compiled and anchored.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// The label ([`names::label_name`] of the matcher's).
    pub label: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value.
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.label, self.op, &self.value) == (&other.label, other.op, &other.value)
    }
}

impl LabelMatcher {
    /// Compiles `m`; the error says why its regular expression does not
    /// compile once anchored.
    pub fn new(m: &Matcher) -> Result<LabelMatcher, String> {
        let re = match m.op {
            MatchOp::Re | MatchOp::Nre => Some(
                regex::RegexBuilder::new(&format!("^(?s:{})$", m.value))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("the regular expression {:?}: {e}", m.value))?,
            ),
            _ => None,
        };
        let label = if m.label == NAME {
            m.label.clone()
        } else {
            names::label_name(&m.label)
        };
        Ok(LabelMatcher {
            label,
            op: m.op,
            value: m.value.clone(),
            re,
        })
    }

    /// Whether a series whose label has `value` ("" when absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }

    /// Whether `labels` match.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(get(labels, &self.label))
    }

    /// Whether it is about a label only the parts' series have.
    pub fn is_late(&self) -> bool {
        self.label == LE || self.label == QUANTILE
    }
}

/// A selector of the query, in evaluation order, with the window it reads
/// before each step: its range inside `rate`/`increase`, else the lookback.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// The selector.
    pub selector: &'a Selector,
    /// Its window, in milliseconds.
    pub window_ms: i64,
}

/// Every selector of `e`, in the order [`evaluate`] reads their
/// [`Loaded`].
pub fn selectors(e: &Expr) -> Vec<Use<'_>> {
    fn walk<'a>(e: &'a Expr, out: &mut Vec<Use<'a>>) {
        match e {
            Expr::Selector(s) => out.push(Use {
                selector: s,
                window_ms: LOOKBACK_MS,
            }),
            Expr::Rate { selector, range } | Expr::Increase { selector, range } => out.push(Use {
                selector,
                window_ms: millis(*range),
            }),
            Expr::Aggregate { expr, .. } | Expr::HistogramQuantile { expr, .. } => walk(expr, out),
            Expr::Binary { lhs, rhs, .. } => {
                walk(lhs, out);
                walk(rhs, out);
            }
            Expr::Number(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(e, &mut out);
    out
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The evaluation times: `count` steps of `step` ms from `start` (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// First time.
    pub start: i64,
    /// Between two times (≥ 1).
    pub step: i64,
    /// How many (≥ 1).
    pub count: usize,
}

impl Steps {
    /// The `i`th time.
    pub fn at(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }

    /// The last time.
    pub fn last(&self) -> i64 {
        self.at(self.count.saturating_sub(1))
    }
}

/// A series of the answer: its labels and a value at each step (`None`
/// where it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Labels.
    pub labels: Labels,
    /// One per step.
    pub values: Vec<Option<f64>>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (the same at every step).
    Scalar(f64),
    /// Series, sorted by labels.
    Vector(Vec<Row>),
}

/// Evaluates `e` at `steps`, `data` holding what each of
/// [`selectors`]`(e)` selected, in that order.
pub fn evaluate(e: &Expr, data: &[Loaded], steps: &Steps) -> Result<Value, EvalError> {
    if let Expr::Number(n) = e {
        return Ok(Value::Scalar(*n));
    }
    let ev = Eval {
        data,
        steps: *steps,
        next: Cell::new(0),
        computed: Cell::new(0),
        held: Cell::new(0),
    };
    let mut rows = Vec::new();
    ev.stream(e, &mut |row| {
        ev.hold(steps.count)?;
        rows.push(row);
        Ok(())
    })?;
    rows.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(Value::Vector(rows))
}

struct Eval<'a> {
    data: &'a [Loaded],
    steps: Steps,
    /// The next selector's index in `data`.
    next: Cell<usize>,
    /// Points computed so far.
    computed: Cell<usize>,
    /// Points held now.
    held: Cell<usize>,
}

/// One sample of a series (times in unix ms); `reset`: a new start time
/// or, for a histogram's parts, a count that went down.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    t: i64,
    v: f64,
    reset: bool,
}

type Sink<'s> = dyn FnMut(Row) -> Result<(), EvalError> + 's;

/// What receives each series of a selector: labels, temporality, samples.
type EachSeries<'s> = dyn FnMut(Labels, Temporality, &[Sample]) -> Result<(), EvalError> + 's;

/// One `le` bucket series of a quantile's group: its bound and values.
type Bucket = (f64, Vec<Option<f64>>);

impl Eval<'_> {
    fn hold(&self, points: usize) -> Result<(), EvalError> {
        let held = self.held.get() + points;
        if held > MAX_HELD_POINTS {
            return Err(EvalError::TooManyPoints);
        }
        self.held.set(held);
        Ok(())
    }

    fn release(&self, points: usize) {
        self.held.set(self.held.get().saturating_sub(points));
    }

    fn compute(&self) -> Result<(), EvalError> {
        let computed = self.computed.get() + self.steps.count;
        if computed > MAX_COMPUTED_POINTS {
            return Err(EvalError::TooMuchWork);
        }
        self.computed.set(computed);
        Ok(())
    }

    fn take(&self) -> &Loaded {
        let i = self.next.get();
        self.next.set(i + 1);
        static EMPTY: Loaded = Loaded {
            series: Vec::new(),
            late: Vec::new(),
        };
        self.data.get(i).unwrap_or(&EMPTY)
    }

    /// Every series of `e`, one at a time, into `sink`.
    fn stream(&self, e: &Expr, sink: &mut Sink<'_>) -> Result<(), EvalError> {
        match e {
            Expr::Number(_) => Ok(()),
            Expr::Selector(_) => {
                let loaded = self.take();
                self.series(loaded, &mut |mut labels, _, samples| {
                    self.compute()?;
                    let values = instant(samples, &self.steps);
                    if values.iter().any(Option::is_some) {
                        labels.sort();
                        sink(Row { labels, values })?;
                    }
                    Ok(())
                })
            }
            Expr::Rate { range, .. } | Expr::Increase { range, .. } => {
                let loaded = self.take();
                let rate = matches!(e, Expr::Rate { .. });
                let range = millis(*range);
                self.series(loaded, &mut |mut labels, temporality, samples| {
                    self.compute()?;
                    let values = windowed(samples, temporality, &self.steps, range, rate);
                    if values.iter().any(Option::is_some) {
                        labels.retain(|(k, _)| k != NAME);
                        labels.sort();
                        sink(Row { labels, values })?;
                    }
                    Ok(())
                })
            }
            Expr::Binary { op, lhs, rhs } => {
                let (vector, number, number_left) = match (&**lhs, &**rhs) {
                    (Expr::Number(n), v) => (v, *n, true),
                    (v, Expr::Number(n)) => (v, *n, false),
                    // The parser folds two numbers and refuses two vectors.
                    (v, _) => (v, f64::NAN, false),
                };
                self.stream(vector, &mut |mut row: Row| {
                    row.labels.retain(|(k, _)| k != NAME);
                    for v in row.values.iter_mut().flatten() {
                        *v = if number_left {
                            op.apply(number, *v)
                        } else {
                            op.apply(*v, number)
                        };
                    }
                    sink(row)
                })
            }
            Expr::Aggregate { op, by, expr } => self.aggregate(*op, by, expr, sink),
            Expr::HistogramQuantile { q, expr } => self.quantile(*q, expr, sink),
        }
    }

    fn aggregate(
        &self,
        op: AggregateOp,
        by: &[String],
        e: &Expr,
        sink: &mut Sink<'_>,
    ) -> Result<(), EvalError> {
        #[derive(Clone, Copy, Default)]
        struct Acc {
            n: u32,
            sum: f64,
            min: f64,
            max: f64,
        }
        let by: Vec<String> = by
            .iter()
            .map(|l| {
                if l == NAME {
                    l.clone()
                } else {
                    names::label_name(l)
                }
            })
            .collect();
        let n = self.steps.count;
        let mut groups: HashMap<Vec<String>, Vec<Acc>> = HashMap::new();
        self.stream(e, &mut |row: Row| {
            let key: Vec<String> = by.iter().map(|l| get(&row.labels, l).to_owned()).collect();
            let accs = match groups.get_mut(&key) {
                Some(accs) => accs,
                None => {
                    self.hold(n)?;
                    groups.entry(key).or_insert_with(|| vec![Acc::default(); n])
                }
            };
            for (acc, v) in accs.iter_mut().zip(&row.values) {
                let Some(v) = *v else { continue };
                if acc.n == 0 {
                    acc.min = v;
                    acc.max = v;
                } else {
                    acc.min = acc.min.min(v);
                    acc.max = acc.max.max(v);
                }
                acc.n += 1;
                acc.sum += v;
            }
            Ok(())
        })?;
        for (key, accs) in groups {
            let mut labels: Labels = by
                .iter()
                .cloned()
                .zip(key)
                .filter(|(_, v)| !v.is_empty())
                .collect();
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            let values = accs
                .iter()
                .map(|a| {
                    (a.n > 0).then(|| match op {
                        AggregateOp::Sum => a.sum,
                        AggregateOp::Avg => a.sum / f64::from(a.n),
                        AggregateOp::Min => a.min,
                        AggregateOp::Max => a.max,
                        AggregateOp::Count => f64::from(a.n),
                    })
                })
                .collect();
            self.release(n);
            sink(Row { labels, values })?;
        }
        Ok(())
    }

    fn quantile(&self, q: f64, e: &Expr, sink: &mut Sink<'_>) -> Result<(), EvalError> {
        let n = self.steps.count;
        let mut groups: HashMap<Labels, Vec<Bucket>> = HashMap::new();
        self.stream(e, &mut |row: Row| {
            let Some(le) = parse_float(get(&row.labels, LE)) else {
                return Ok(()); // not a bucket: Prometheus ignores it
            };
            let mut labels = row.labels;
            labels.retain(|(k, _)| k != LE && k != NAME);
            self.hold(n)?;
            groups.entry(labels).or_default().push((le, row.values));
            Ok(())
        })?;
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for (labels, rows) in groups {
            let values = (0..n)
                .map(|i| {
                    buckets.clear();
                    buckets.extend(rows.iter().filter_map(|(le, v)| v[i].map(|v| (*le, v))));
                    (!buckets.is_empty()).then(|| bucket_quantile(q, &mut buckets))
                })
                .collect();
            self.release(n * rows.len());
            sink(Row { labels, values })?;
        }
        Ok(())
    }

    /// Every series of the selector's parts: labels (with `__name__`, and
    /// `le` or `quantile`), how it adds up, and its samples by time.
    fn series(&self, loaded: &Loaded, each: &mut EachSeries<'_>) -> Result<(), EvalError> {
        let mut samples: Vec<Sample> = Vec::new();
        for s in &loaded.series {
            for (name, part) in &s.parts {
                let mut labels = s.labels.clone();
                names::set(&mut labels, NAME, name);
                let keep = |labels: &Labels| loaded.late.iter().all(|m| m.matches_labels(labels));
                match (&s.points, part) {
                    (Points::Values(points), _) => {
                        if !keep(&labels) {
                            continue;
                        }
                        samples.clear();
                        let mut start = None;
                        for p in points {
                            let reset = start.is_some() && p.start.is_some() && p.start != start;
                            start = p.start.or(start);
                            push(&mut samples, p.t, p.value, reset);
                        }
                        each(labels, s.temporality, &samples)?;
                    }
                    (Points::Histogram { points, .. }, Part::Sum | Part::Count)
                        if keep(&labels) =>
                    {
                        samples.clear();
                        let resets = histogram_resets(points);
                        for (p, reset) in points.iter().zip(resets) {
                            let v = if *part == Part::Sum { p.sum } else { p.count };
                            push(&mut samples, p.t, v, reset);
                        }
                        each(labels, s.temporality, &samples)?;
                    }
                    (Points::Histogram { buckets, points }, Part::Bucket) => {
                        let les = buckets.les();
                        let mut per_le: Vec<Vec<Sample>> = vec![Vec::new(); les.len()];
                        let wanted: Vec<bool> = les
                            .iter()
                            .map(|le| {
                                let mut l = labels.clone();
                                names::set(&mut l, LE, &format_float(*le));
                                keep(&l)
                            })
                            .collect();
                        if !wanted.contains(&true) {
                            continue;
                        }
                        let resets = histogram_resets(points);
                        let mut counts = Vec::with_capacity(les.len());
                        for (p, reset) in points.iter().zip(resets) {
                            buckets.cumulative(p, &mut counts);
                            for (j, c) in counts.iter().enumerate() {
                                if wanted[j] {
                                    push(&mut per_le[j], p.t, *c, reset);
                                }
                            }
                        }
                        for ((le, samples), wanted) in les.iter().zip(&per_le).zip(&wanted) {
                            if *wanted {
                                let mut l = labels.clone();
                                names::set(&mut l, LE, &format_float(*le));
                                each(l, s.temporality, samples)?;
                            }
                        }
                    }
                    (Points::Summary(points), Part::Sum | Part::Count) if keep(&labels) => {
                        samples.clear();
                        let mut prev: Option<&SummaryPoint> = None;
                        for p in points {
                            let reset = prev.is_some_and(|b| {
                                (b.start.is_some() && p.start.is_some() && b.start != p.start)
                                    || p.count < b.count
                            });
                            prev = Some(p);
                            let v = if *part == Part::Sum { p.sum } else { p.count };
                            push(&mut samples, p.t, v, reset);
                        }
                        each(labels, s.temporality, &samples)?;
                    }
                    (Points::Summary(points), Part::Value) => {
                        let mut qs: Vec<f64> = points
                            .iter()
                            .flat_map(|p| p.quantiles.iter().map(|q| q.0))
                            .collect();
                        qs.sort_by(f64::total_cmp);
                        qs.dedup();
                        for q in qs {
                            let mut l = labels.clone();
                            names::set(&mut l, QUANTILE, &format_float(q));
                            if !keep(&l) {
                                continue;
                            }
                            samples.clear();
                            for p in points {
                                if let Some(v) = p.quantiles.iter().find(|x| x.0 == q) {
                                    push(&mut samples, p.t, v.1, false);
                                }
                            }
                            each(l, Temporality::Gauge, &samples)?;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Appends a sample; two at the same millisecond keep the later one.
fn push(samples: &mut Vec<Sample>, t: i64, v: f64, reset: bool) {
    match samples.last_mut() {
        Some(last) if last.t >= t => {
            if last.t == t {
                *last = Sample {
                    t,
                    v,
                    reset: last.reset || reset,
                };
            }
        }
        _ => samples.push(Sample { t, v, reset }),
    }
}

/// Whether each histogram point restarts its stream: a new start time, or
/// fewer observations than the point before.
fn histogram_resets(points: &[HistogramPoint]) -> Vec<bool> {
    let mut out = Vec::with_capacity(points.len());
    let mut prev: Option<&HistogramPoint> = None;
    for p in points {
        out.push(prev.is_some_and(|b| {
            (b.start.is_some() && p.start.is_some() && b.start != p.start) || p.count < b.count
        }));
        prev = Some(p);
    }
    out
}

/// The newest sample in `(t - lookback, t]` at each step.
fn instant(samples: &[Sample], steps: &Steps) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(steps.count);
    let mut i = 0;
    for k in 0..steps.count {
        let t = steps.at(k);
        while i < samples.len() && samples[i].t <= t {
            i += 1;
        }
        out.push((i > 0 && samples[i - 1].t > t - LOOKBACK_MS).then(|| samples[i - 1].v));
    }
    out
}

/// `rate` (`per_second`) or `increase` over `(t - range, t]` at each step.
fn windowed(
    samples: &[Sample],
    temporality: Temporality,
    steps: &Steps,
    range: i64,
    per_second: bool,
) -> Vec<Option<f64>> {
    // prefix[i]: the increase up to sample i (a delta's own value; a
    // counter's rise since the sample before, or its value after a reset).
    let mut prefix = Vec::with_capacity(samples.len() + 1);
    prefix.push(0.0);
    let mut total = 0.0;
    for (i, s) in samples.iter().enumerate() {
        total += match temporality {
            Temporality::Delta => s.v,
            _ if i == 0 => 0.0,
            _ if s.reset || s.v < samples[i - 1].v => s.v,
            _ => s.v - samples[i - 1].v,
        };
        prefix.push(total);
    }
    let range_s = range as f64 / 1000.0;
    let mut out = Vec::with_capacity(steps.count);
    let (mut lo, mut hi) = (0, 0);
    for k in 0..steps.count {
        let t = steps.at(k);
        while hi < samples.len() && samples[hi].t <= t {
            hi += 1;
        }
        while lo < hi && samples[lo].t <= t - range {
            lo += 1;
        }
        let window = &samples[lo..hi];
        let value = match temporality {
            Temporality::Delta if window.is_empty() => None,
            Temporality::Delta => {
                let sum = prefix[hi] - prefix[lo];
                Some(if per_second { sum / range_s } else { sum })
            }
            _ => {
                // The rises between the window's samples: prefix from lo + 1.
                let rise = prefix[hi] - prefix[lo + 1.min(hi - lo)];
                extrapolate(window, rise, t - range, t, range_s, per_second)
            }
        };
        out.push(value);
    }
    out
}

/// Prometheus' `extrapolatedRate` for a counter: `rise` between the first
/// and last samples of `window`, extended towards the window's edges.
fn extrapolate(
    window: &[Sample],
    rise: f64,
    range_start: i64,
    range_end: i64,
    range_s: f64,
    per_second: bool,
) -> Option<f64> {
    let (first, last) = match window {
        [first, .., last] => (first, last),
        _ => return None,
    };
    let sampled = (last.t - first.t) as f64 / 1000.0;
    if sampled <= 0.0 {
        return None;
    }
    let average = sampled / (window.len() - 1) as f64;
    let threshold = average * 1.1;
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    if to_start >= threshold {
        to_start = average / 2.0;
    }
    if rise > 0.0 && first.v >= 0.0 {
        // A counter starts at zero: do not extrapolate below it.
        let to_zero = sampled * (first.v / rise);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = average / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= range_s;
    }
    Some(rise * factor)
}

/// Prometheus' `bucketQuantile`: `buckets` are (upper bound, cumulative
/// count) in any order.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets of the same bound (several series) add up.
    buckets.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    // Monotonic, ignoring differences of float precision.
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        if b.1 == prev {
            continue;
        }
        let close = (b.1 - prev).abs() <= SMALL_DELTA * b.1.abs().max(prev.abs());
        if close || b.1 < prev {
            b.1 = prev;
        } else {
            prev = b.1;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1]
        .iter()
        .position(|x| x.1 >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::parse;

    const MIN: i64 = 60_000;

    fn steps(start: i64, step: i64, count: usize) -> Steps {
        Steps { start, step, count }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        l
    }

    fn values(name: &str, pairs: &[(&str, &str)], t: Temporality, pts: &[(i64, f64)]) -> Stored {
        Stored {
            labels: labels(pairs),
            parts: vec![(name.into(), Part::Value)],
            temporality: t,
            points: Points::Values(
                pts.iter()
                    .map(|&(t, value)| ValuePoint {
                        t,
                        start: Some(0),
                        value,
                    })
                    .collect(),
            ),
        }
    }

    fn run(q: &str, data: Vec<Loaded>, s: Steps) -> Value {
        let e = parse(q).unwrap();
        assert_eq!(selectors(&e).len(), data.len(), "{q}");
        evaluate(&e, &data, &s).unwrap()
    }

    fn rows(v: Value) -> Vec<Row> {
        match v {
            Value::Vector(rows) => rows,
            Value::Scalar(n) => panic!("a scalar {n}"),
        }
    }

    fn loaded(series: Vec<Stored>) -> Loaded {
        Loaded {
            series,
            late: Vec::new(),
        }
    }

    /// A counter rising 60 a minute from 1000, one point a minute.
    fn counter(job: &str, per_minute: f64) -> Stored {
        let pts: Vec<(i64, f64)> = (0..=20)
            .map(|i| (i * MIN, 1000.0 + per_minute * i as f64))
            .collect();
        values(
            "requests_total",
            &[("job", job)],
            Temporality::Cumulative,
            &pts,
        )
    }

    #[test]
    fn numbers_are_scalars() {
        assert_eq!(run("1+1", vec![], steps(0, 1000, 1)), Value::Scalar(2.0));
    }

    #[test]
    fn instant_selectors_look_back_five_minutes() {
        let data = vec![loaded(vec![values(
            "g",
            &[("job", "a")],
            Temporality::Gauge,
            &[(0, 1.0), (MIN, 2.0)],
        )])];
        let r = rows(run("g", data, steps(0, MIN, 8)));
        assert_eq!(r.len(), 1);
        assert_eq!(get(&r[0].labels, NAME), "g");
        assert_eq!(
            r[0].values,
            vec![
                Some(1.0),
                Some(2.0),
                Some(2.0),
                Some(2.0),
                Some(2.0),
                Some(2.0),
                None,
                None
            ]
        );
    }

    #[test]
    fn rate_of_a_steady_counter_is_its_slope() {
        let data = vec![loaded(vec![counter("a", 60.0)])];
        let r = rows(run(
            "rate(requests_total[5m])",
            data,
            steps(10 * MIN, MIN, 3),
        ));
        assert_eq!(r[0].labels, labels(&[("job", "a")]));
        for v in &r[0].values {
            assert!((v.unwrap() - 1.0).abs() < 1e-9, "{v:?}");
        }
        let data = vec![loaded(vec![counter("a", 60.0)])];
        let r = rows(run(
            "increase(requests_total[5m])",
            data,
            steps(10 * MIN, MIN, 1),
        ));
        assert!((r[0].values[0].unwrap() - 300.0).abs() < 1e-9);
    }

    #[test]
    fn rate_extrapolates_as_prometheus() {
        // Samples at 0, 60, 120 s of 10, 20, 30; window (t-300, t] at t=150 s:
        // sampled 120 s, rise 20, average 60 s. To the start: 150 s ≥ 66 s,
        // so 30 s; to zero: 120 × 10/20 = 60 s; to the end: 30 s.
        // increase = 20 × (120 + 30 + 30) / 120 = 30.
        let s = values(
            "c",
            &[],
            Temporality::Cumulative,
            &[(0, 10.0), (MIN, 20.0), (2 * MIN, 30.0)],
        );
        let r = rows(run(
            "increase(c[5m])",
            vec![loaded(vec![s])],
            steps(150_000, 1, 1),
        ));
        assert!((r[0].values[0].unwrap() - 30.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn counter_resets_and_new_start_times_count_from_zero() {
        let mut s = values(
            "c",
            &[],
            Temporality::Cumulative,
            &[
                (0, 100.0),
                (MIN, 160.0),
                (2 * MIN, 30.0),
                (3 * MIN, 90.0),
                (4 * MIN, 150.0),
            ],
        );
        // Increase: 60 + 30 (reset) + 60 + 60 = 210 over 4 minutes, window
        // edges at the samples (to the start 60 s ≥ 66 s? no: extrapolated 60 s).
        let r = rows(run(
            "increase(c[5m])",
            vec![loaded(vec![s.clone()])],
            steps(4 * MIN, 1, 1),
        ));
        // to_start: 60 s (< 66 s threshold), to_zero 240 × 100/210 > 60; factor 300/240.
        assert!((r[0].values[0].unwrap() - 210.0 * 300.0 / 240.0).abs() < 1e-9);
        // A new start time without a lower value is a reset too.
        if let Points::Values(p) = &mut s.points {
            *p = vec![
                ValuePoint {
                    t: 0,
                    start: Some(0),
                    value: 100.0,
                },
                ValuePoint {
                    t: MIN,
                    start: Some(0),
                    value: 160.0,
                },
                ValuePoint {
                    t: 2 * MIN,
                    start: Some(90_000),
                    value: 200.0,
                },
            ];
        }
        let r = rows(run(
            "increase(c[3m])",
            vec![loaded(vec![s])],
            steps(2 * MIN, 1, 1),
        ));
        // rise 60 + 200 over 120 s, to_start 60 s (< 66) but to_zero 120 × 100/260 ≈ 46 s.
        let to_zero = 120.0 * 100.0 / 260.0;
        let want = 260.0 * (120.0 + to_zero) / 120.0;
        assert!((r[0].values[0].unwrap() - want).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn delta_series_add_their_points_in_the_window() {
        let s = values(
            "d",
            &[],
            Temporality::Delta,
            &[(MIN, 5.0), (2 * MIN, 7.0), (3 * MIN, 1.0), (9 * MIN, 4.0)],
        );
        let r = rows(run(
            "increase(d[2m])",
            vec![loaded(vec![s.clone()])],
            steps(2 * MIN, MIN, 2),
        ));
        assert_eq!(r[0].values, vec![Some(12.0), Some(8.0)]);
        let r = rows(run(
            "rate(d[2m])",
            vec![loaded(vec![s.clone()])],
            steps(3 * MIN, MIN, 1),
        ));
        assert_eq!(r[0].values, vec![Some(8.0 / 120.0)]);
        // No point in the window: no value.
        let r = rows(run(
            "increase(d[1m])",
            vec![loaded(vec![s])],
            steps(5 * MIN, MIN, 2),
        ));
        assert!(r.is_empty());
    }

    #[test]
    fn sum_and_avg_by_a_label() {
        let data = || {
            vec![loaded(vec![
                values(
                    "g",
                    &[("job", "a"), ("k", "x")],
                    Temporality::Gauge,
                    &[(0, 1.0)],
                ),
                values(
                    "g",
                    &[("job", "a"), ("k", "y")],
                    Temporality::Gauge,
                    &[(0, 3.0)],
                ),
                values(
                    "g",
                    &[("job", "b"), ("k", "x")],
                    Temporality::Gauge,
                    &[(0, 10.0)],
                ),
            ])]
        };
        let r = rows(run("sum by (job) (g)", data(), steps(0, 1, 1)));
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].labels.clone(), r[0].values[0]),
            (labels(&[("job", "a")]), Some(4.0))
        );
        assert_eq!(
            (r[1].labels.clone(), r[1].values[0]),
            (labels(&[("job", "b")]), Some(10.0))
        );
        let r = rows(run("avg(g)", data(), steps(0, 1, 1)));
        assert_eq!(
            (r[0].labels.is_empty(), r[0].values[0]),
            (true, Some(14.0 / 3.0))
        );
        let r = rows(run("count by (k) (g)", data(), steps(0, 1, 1)));
        assert_eq!(r[0].values[0], Some(2.0));
        let r = rows(run("max(g) - 1", data(), steps(0, 1, 1)));
        assert_eq!(r[0].values[0], Some(9.0));
        let r = rows(run("min by (\"k\") (g) * 2", data(), steps(0, 1, 1)));
        assert_eq!(r[0].values[0], Some(2.0));
        let r = rows(run("2 / g", data(), steps(0, 1, 1)));
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|row| get(&row.labels, NAME).is_empty()));
        assert_eq!(r[0].values[0], Some(2.0));
    }

    /// A histogram's `_bucket` series, or with `parts` its other ones.
    fn histogram(buckets: Buckets, pts: Vec<HistogramPoint>) -> Stored {
        histogram_parts(buckets, pts, &[("h_bucket", Part::Bucket)])
    }

    fn histogram_parts(
        buckets: Buckets,
        pts: Vec<HistogramPoint>,
        parts: &[(&str, Part)],
    ) -> Stored {
        Stored {
            labels: labels(&[("job", "a")]),
            parts: parts.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            temporality: Temporality::Cumulative,
            points: Points::Histogram {
                buckets,
                points: pts,
            },
        }
    }

    fn hp(t: i64, buckets: &[f64], scale: i32, offset: i32) -> HistogramPoint {
        HistogramPoint {
            t,
            start: Some(0),
            count: buckets.iter().sum(),
            sum: 0.0,
            buckets: buckets.to_vec(),
            scale,
            offset,
        }
    }

    #[test]
    fn explicit_histograms_as_buckets_and_their_quantile() {
        // Bounds 1, 2, 4: in 5 minutes 10 observations ≤ 1, 20 in (1, 2],
        // 10 in (2, 4], none above.
        let h = histogram(
            Buckets::Explicit(vec![1.0, 2.0, 4.0]),
            vec![
                hp(0, &[0.0, 0.0, 0.0, 0.0], 0, 0),
                hp(5 * MIN, &[10.0, 20.0, 10.0, 0.0], 0, 0),
            ],
        );
        let r = rows(run(
            "h_bucket",
            vec![loaded(vec![h.clone()])],
            steps(5 * MIN, 1, 1),
        ));
        let got: Vec<(String, f64)> = r
            .iter()
            .map(|row| (get(&row.labels, LE).to_owned(), row.values[0].unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("+Inf".into(), 40.0),
                ("1".into(), 10.0),
                ("2".into(), 30.0),
                ("4".into(), 40.0)
            ]
        );
        // Rank 0.5 × 40 = 20: in (1, 2], 10 of 20 in: 1.5. Rank 0.95 × 40 =
        // 38: in (2, 4], 8 of 10: 3.6.
        for (q, want) in [(0.5, 1.5), (0.95, 3.6), (0.1, 0.4)] {
            let query = format!("histogram_quantile({q}, sum by (le) (rate(h_bucket[10m])))");
            let r = rows(run(
                &query,
                vec![loaded(vec![h.clone()])],
                steps(5 * MIN, 1, 1),
            ));
            assert_eq!(r.len(), 1);
            assert!(r[0].labels.is_empty(), "{:?}", r[0].labels);
            assert!((r[0].values[0].unwrap() - want).abs() < 1e-9, "{q}: {r:?}");
        }
        let r = rows(run(
            "histogram_quantile(0.5, h_bucket{le=~\"1|\\\\+Inf\"})",
            vec![Loaded {
                series: vec![h.clone()],
                late: vec![LabelMatcher::new(&Matcher {
                    label: "le".into(),
                    op: MatchOp::Re,
                    value: "1|\\+Inf".into(),
                })
                .unwrap()],
            }],
            steps(5 * MIN, 1, 1),
        ));
        // Only le=1 (10) and +Inf (40): rank 20 is past le=1: the answer is 1.
        assert_eq!(r[0].values[0], Some(1.0));
        assert_eq!(r[0].labels, labels(&[("job", "a")]));
    }

    #[test]
    fn exponential_histograms_as_buckets() {
        // Scale 0 (base 2): 4 observations in (2, 4], 4 in (4, 8], and a
        // point at scale 1 whose index 4 (in (4, 5.66]) maps to index 2.
        let points = [
            hp(0, &[0.0], 0, 1),
            hp(MIN, &[4.0, 4.0], 0, 1),
            hp(2 * MIN, &[4.0, 4.0, 0.0, 0.0], 1, 2),
        ];
        let layout = ExpLayout::covering([(0, 1, 1), (0, 1, 2), (1, 2, 5)]);
        assert_eq!(
            layout,
            ExpLayout {
                scale: 0,
                first: 1,
                last: 2
            }
        );
        let buckets = Buckets::Exponential(layout);
        assert_eq!(buckets.les(), vec![2.0, 4.0, 8.0, f64::INFINITY]);
        let h = histogram(buckets, points[..2].to_vec());
        // Rank 0.5 × 8 = 4: the top of (2, 4].
        let r = rows(run(
            "histogram_quantile(0.5, rate(h_bucket[5m]))",
            vec![loaded(vec![h.clone()])],
            steps(MIN, 1, 1),
        ));
        assert!((r[0].values[0].unwrap() - 4.0).abs() < 1e-9, "{r:?}");
        let r = rows(run(
            "histogram_quantile(0.75, rate(h_bucket[5m]))",
            vec![loaded(vec![h])],
            steps(MIN, 1, 1),
        ));
        assert!((r[0].values[0].unwrap() - 6.0).abs() < 1e-9, "{r:?}");
        // A finer point is counted in the coarser bucket.
        let mut counts = Vec::new();
        Buckets::Exponential(layout).cumulative(&points[2], &mut counts);
        // Scale 1 indices 2, 3 → scale 0 index 1 (both in (2, 4]).
        assert_eq!(counts, vec![0.0, 8.0, 8.0, 8.0]);
        // Zero and negative observations are below the first bound.
        let mut p = hp(0, &[1.0], 0, 1);
        p.count = 3.0;
        Buckets::Exponential(layout).cumulative(&p, &mut counts);
        assert_eq!(counts, vec![2.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn wide_exponential_layouts_are_merged_to_fit() {
        let l = ExpLayout::covering([(8, 0, 1000)]);
        assert!(l.last - l.first < MAX_EXP_BUCKETS, "{l:?}");
        assert_eq!(l.scale, 5);
        assert_eq!(ExpLayout::covering([]).len(), 0);
        assert_eq!(
            Buckets::Exponential(ExpLayout::covering([])).les(),
            vec![0.0, f64::INFINITY]
        );
    }

    #[test]
    fn histogram_sum_and_count_are_counters() {
        let mut pts = vec![hp(0, &[1.0, 0.0], 0, 0), hp(MIN, &[3.0, 1.0], 0, 0)];
        pts[0].sum = 0.5;
        pts[1].sum = 2.5;
        let h = histogram_parts(
            Buckets::Explicit(vec![1.0]),
            pts.clone(),
            &[("h_count", Part::Count)],
        );
        let r = rows(run("h_count", vec![loaded(vec![h])], steps(MIN, 1, 1)));
        assert_eq!(r[0].values[0], Some(4.0));
        assert_eq!(get(&r[0].labels, NAME), "h_count");
        let h = histogram_parts(Buckets::Explicit(vec![1.0]), pts, &[("h_sum", Part::Sum)]);
        let r = rows(run(
            "increase(h_sum[5m])",
            vec![loaded(vec![h])],
            steps(MIN, 1, 1),
        ));
        // Rise 2 between the two samples, extrapolated to zero at the start
        // (60 s × 0.5 / 2 = 15 s before the first), not past the end.
        assert!(
            (r[0].values[0].unwrap() - 2.0 * 75.0 / 60.0).abs() < 1e-9,
            "{r:?}"
        );
    }

    #[test]
    fn bucket_quantile_edge_cases() {
        let q = |q: f64, b: &[(f64, f64)]| bucket_quantile(q, &mut b.to_vec());
        assert!(q(0.5, &[(1.0, 1.0)]).is_nan(), "no +Inf bucket");
        assert!(
            q(0.5, &[(f64::INFINITY, 0.0), (1.0, 0.0)]).is_nan(),
            "no observation"
        );
        assert_eq!(
            q(0.99, &[(1.0, 1.0), (f64::INFINITY, 10.0)]),
            1.0,
            "in +Inf"
        );
        assert_eq!(q(0.5, &[(-1.0, 5.0), (f64::INFINITY, 10.0)]), -1.0);
        // Not monotonic: made so.
        assert_eq!(
            q(0.5, &[(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0)]),
            0.5
        );
        // The same bound twice adds up.
        assert_eq!(
            q(
                0.5,
                &[(1.0, 1.0), (1.0, 1.0), (2.0, 4.0), (f64::INFINITY, 4.0)]
            ),
            1.0
        );
    }

    #[test]
    fn summaries_as_quantile_series() {
        let s = Stored {
            labels: labels(&[("job", "a")]),
            parts: vec![
                ("rpc".into(), Part::Value),
                ("rpc_count".into(), Part::Count),
            ],
            temporality: Temporality::Cumulative,
            points: Points::Summary(vec![SummaryPoint {
                t: 0,
                start: None,
                count: 7.0,
                sum: 1.0,
                quantiles: vec![(0.5, 0.1), (0.99, 0.9)],
            }]),
        };
        let r = rows(run("rpc", vec![loaded(vec![s])], steps(0, 1, 1)));
        let got: Vec<(&str, &str, Option<f64>)> = r
            .iter()
            .map(|row| {
                (
                    get(&row.labels, NAME),
                    get(&row.labels, QUANTILE),
                    row.values[0],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("rpc", "0.5", Some(0.1)),
                ("rpc", "0.99", Some(0.9)),
                ("rpc_count", "", Some(7.0))
            ]
        );
    }

    #[test]
    fn work_is_bounded() {
        let many: Vec<Stored> = (0..1000)
            .map(|i| {
                values(
                    "g",
                    &[("i", &i.to_string())],
                    Temporality::Gauge,
                    &[(0, 1.0)],
                )
            })
            .collect();
        let e = parse("g").unwrap();
        let s = steps(0, 1, 11_000);
        assert_eq!(
            evaluate(&e, &[loaded(many.clone())], &s),
            Err(EvalError::TooManyPoints)
        );
        let e = parse("sum(g)").unwrap();
        assert!(evaluate(&e, &[loaded(many.clone())], &s).is_ok());
        let more: Vec<Stored> = (0..5).flat_map(|_| many.clone()).collect();
        assert_eq!(
            evaluate(&e, &[loaded(more)], &s),
            Err(EvalError::TooMuchWork)
        );
    }

    #[test]
    fn matchers_are_anchored_and_name_labels_as_prometheus() {
        let m = |label: &str, op, value: &str| {
            LabelMatcher::new(&Matcher {
                label: label.into(),
                op,
                value: value.into(),
            })
            .unwrap()
        };
        assert!(m("a", MatchOp::Re, "ab").matches("ab"));
        assert!(!m("a", MatchOp::Re, "ab").matches("xab"));
        assert!(m("a", MatchOp::Re, "a.c").matches("a\nc"));
        assert!(m("a", MatchOp::Nre, "x|y").matches("xy"));
        assert!(m("a", MatchOp::Ne, "").matches("v"));
        assert_eq!(
            m("gen_ai.token.type", MatchOp::Eq, "x").label,
            "gen_ai_token_type"
        );
        assert_eq!(m("__name__", MatchOp::Eq, "x").label, "__name__");
        assert!(m("le", MatchOp::Eq, "1").is_late());
    }
}
