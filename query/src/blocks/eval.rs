//! Which traces of a block's row group meet a search's conditions, and
//! what the answer says of them, from decoded column chunks
//! ([`super::scan`]). Pure code: the search fetches, this decides.
//!
//! A [`Plan`] is made once per search: the leaf columns to read to decide
//! ([`Plan::filter_leaves`]) and to describe the matches
//! ([`Plan::output_leaves`]), and what a row group must hold for any trace
//! of it to match ([`Plan::may_match`] from the footer's statistics,
//! [`Plan::dictionary_checks`] from dictionary pages).
//!
//! What it guarantees: the semantics of the PostgreSQL searches
//! ([`crate::span_filter`]): one span meets a span filter's conditions at
//! once; text tests read a number or boolean as JSON spells it; number
//! tests read numbers and strings spelling one; boolean tests booleans
//! only; a test on an attribute the span lacks is never true, negated ones
//! included. Attributes are read back as `tempo::read` reads them: the
//! well-known columns (`http.method`, `http.url`, `http.status_code`, the
//! resource's `service.name`, `cluster`, `k8s.*`, ...) are attributes
//! again. Pruning never skips a row group that could hold a match.

use super::scan::{self, leaf, Chunk, Place};
use super::search::{BlockHit, MatchedSpan, TraceFilter, Whose};
use crate::span_filter::{Attributes, Cmp, Column, Filter, Number, Subject, Test, TextOp};
use crate::tempo_api::traceql::{Cond, Field, Literal, Op};
use observatory_schemas::span::UNKNOWN_SERVICE;
use observatory_schemas::tempo::schema::RESOURCE_WELL_KNOWN;
use parquet::file::metadata::RowGroupMetaData;
use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

/// Span attributes vParquet4 keeps in columns of their own (string,
/// string, integer), with their leaves.
const SPAN_WELL_KNOWN: [(&str, usize); 3] = [
    ("http.method", leaf::SPAN_HTTP_METHOD),
    ("http.url", leaf::SPAN_HTTP_URL),
    ("http.status_code", leaf::SPAN_HTTP_STATUS),
];

/// Lists above a leaf: resource spans (1), scope spans (2), spans (3),
/// span attributes (4), their values (5); resource attributes (2), their
/// values (3); service stats (1).
fn lists(leaf_index: usize) -> usize {
    use leaf::*;
    match leaf_index {
        0..=6 => 0,
        STATS_KEY..=STATS_ERRORS => 1,
        l if (RES_ATTRS..RES_ATTRS + attr::LEAVES).contains(&l) => {
            if matches!(
                l - RES_ATTRS,
                attr::KEY | attr::IS_ARRAY | attr::UNSUPPORTED
            ) {
                2
            } else {
                3
            }
        }
        RES_DROPPED..=36 => 1,
        SCOPE_NAME | SCOPE_VERSION | SCOPE_DROPPED => 2,
        l if (SPAN_ATTRS..SPAN_ATTRS + attr::LEAVES).contains(&l) => {
            if matches!(
                l - SPAN_ATTRS,
                attr::KEY | attr::IS_ARRAY | attr::UNSUPPORTED
            ) {
                4
            } else {
                5
            }
        }
        _ => 3,
    }
}

/// An attribute value read back from a block.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// A homogeneous array.
    Array(Vec<AttrValue>),
}

impl AttrValue {
    /// The text PostgreSQL's `->>` gives of the value as the sink stores it.
    fn text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Array(_) => self.json_text(),
        }
    }

    /// jsonb's text of the value (arrays as `[1, "a"]`).
    fn json_text(&self) -> String {
        match self {
            AttrValue::Str(s) => serde_json::Value::String(s.clone()).to_string(),
            AttrValue::Array(items) => {
                let inner: Vec<String> = items.iter().map(AttrValue::json_text).collect();
                format!("[{}]", inner.join(", "))
            }
            other => other.text(),
        }
    }

    /// The value as a number, as the number tests read it.
    fn number(&self) -> Option<Number> {
        match self {
            AttrValue::Int(i) => Some(Number::Int(*i)),
            AttrValue::Double(d) if d.is_finite() => Some(Number::Float(*d)),
            AttrValue::Str(s) if spells_number(s) => s.trim().parse().ok().map(Number::Float),
            _ => None,
        }
    }

    /// As JSON (span sets of Tempo's search).
    pub(super) fn json(&self) -> serde_json::Value {
        match self {
            AttrValue::Str(s) => serde_json::Value::String(s.clone()),
            AttrValue::Int(i) => serde_json::Value::from(*i),
            AttrValue::Double(d) => serde_json::Number::from_f64(*d)
                .map_or_else(|| serde_json::Value::String(d.to_string()), Into::into),
            AttrValue::Bool(b) => serde_json::Value::Bool(*b),
            AttrValue::Array(items) => items.iter().map(AttrValue::json).collect(),
        }
    }
}

/// `^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$`, the strings the
/// number tests read as numbers.
fn spells_number(s: &str) -> bool {
    let b = s.trim().as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// Whether no value but a string can have `text` as its text: then a text
/// equality can require `text` in the string values column.
fn only_a_string_spells(text: &str) -> bool {
    text.parse::<f64>().is_err()
        && !spells_number(text)
        && text != "true"
        && text != "false"
        && !text.starts_with(['[', '{'])
}

fn cmp_holds<T: PartialOrd>(have: T, cmp: Cmp, want: T) -> bool {
    match cmp {
        Cmp::Eq => have == want,
        Cmp::Ne => have != want,
        Cmp::Lt => have < want,
        Cmp::Le => have <= want,
        Cmp::Gt => have > want,
        Cmp::Ge => have >= want,
    }
}

fn number_holds(have: Number, cmp: Cmp, want: Number) -> bool {
    match (have, want) {
        (Number::Int(a), Number::Int(b)) => cmp_holds(a, cmp, b),
        (a, b) => {
            let f = |n| match n {
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            };
            cmp_holds(f(a), cmp, f(b))
        }
    }
}

/// A text test, its regular expression compiled once.
#[derive(Debug)]
enum TextTest {
    Op(TextOp, String, Option<regex::Regex>),
    OneOf(Vec<String>, bool),
}

impl TextTest {
    fn holds(&self, have: &str) -> bool {
        match self {
            TextTest::Op(op, want, re) => match op {
                TextOp::Cmp(cmp) => cmp_holds(have, *cmp, want.as_str()),
                TextOp::Contains => have.contains(want.as_str()),
                TextOp::NotContains => !have.contains(want.as_str()),
                TextOp::StartsWith => have.starts_with(want.as_str()),
                TextOp::EndsWith => have.ends_with(want.as_str()),
                TextOp::Matches => re.as_ref().is_some_and(|re| re.is_match(have)),
                TextOp::NotMatches => re.as_ref().is_some_and(|re| !re.is_match(have)),
            },
            TextTest::OneOf(values, negated) => values.iter().any(|v| v == have) != *negated,
        }
    }
}

#[derive(Debug)]
enum CTest {
    Text(TextTest),
    Number(Cmp, Number),
    Bool(bool, bool),
}

#[derive(Debug)]
enum CSubject {
    Column(Column),
    /// Whose attribute, and the key's index in [`Plan::keys`].
    Attr(Whose, usize),
}

/// A span filter, compiled.
#[derive(Debug)]
enum CFilter {
    All(Vec<CFilter>),
    Any(Vec<CFilter>),
    Test(CSubject, CTest),
}

/// Which value leaves of an attribute list a search reads.
#[derive(Debug, Default, Clone, Copy)]
struct ValueKinds {
    string: bool,
    int: bool,
    double: bool,
    boolean: bool,
}

impl ValueKinds {
    fn of(test: &Test) -> ValueKinds {
        match test {
            Test::Text(..) | Test::OneOf { .. } => ValueKinds {
                string: true,
                int: true,
                double: true,
                boolean: true,
            },
            Test::Number(..) => ValueKinds {
                string: true,
                int: true,
                double: true,
                boolean: false,
            },
            Test::Bool { .. } => ValueKinds {
                boolean: true,
                ..ValueKinds::default()
            },
        }
    }

    fn add(&mut self, other: ValueKinds) {
        self.string |= other.string;
        self.int |= other.int;
        self.double |= other.double;
        self.boolean |= other.boolean;
    }

    fn leaves(self, first: usize) -> Vec<usize> {
        use leaf::attr::*;
        let mut out = vec![first + KEY, first + IS_ARRAY];
        for (on, offset) in [
            (self.string, VALUE),
            (self.int, INT),
            (self.double, DOUBLE),
            (self.boolean, BOOL),
        ] {
            if on {
                out.push(first + offset);
            }
        }
        out
    }
}

/// A byte string a row group must hold in a leaf for a trace of it to match.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Needs {
    /// The leaf.
    pub(super) leaf: usize,
    /// The value.
    pub(super) value: Vec<u8>,
}

/// What one search reads and checks, made once per search.
#[derive(Debug)]
pub(super) struct Plan {
    /// Leaves read to decide which traces match.
    pub(super) filter_leaves: Vec<usize>,
    /// Leaves read to describe the matches (not already read).
    pub(super) output_leaves: Vec<usize>,
    /// Strings a row group must hold.
    needs: Vec<Needs>,
    /// Integer bounds a row group must allow.
    needs_ints: Vec<(usize, Cmp, i64)>,
    /// Attribute keys the search reads, and whether of spans / resources.
    keys: Vec<(String, bool, bool)>,
    spans: Option<CFilter>,
    filter: TraceFilter,
    /// Attributes shown on matched spans (Tempo's span sets).
    selected: Vec<(usize, Whose)>,
    /// Whether matched spans are described (Tempo), or only counted.
    span_sets: bool,
    /// Whether the span filter needs the spans at all.
    needs_spans: bool,
}

impl Plan {
    /// The plan of a search for `filter`; `selected` attributes are shown
    /// on matched spans when `span_sets`.
    pub(super) fn new(filter: &TraceFilter, selected: &[(String, Whose)], span_sets: bool) -> Plan {
        let mut keys: Vec<(String, bool, bool)> = Vec::new();
        let mut key = |name: &str, whose: Whose| -> usize {
            let (span, resource) = match whose {
                Whose::Span => (true, false),
                Whose::Resource => (false, true),
                Whose::Either => (true, true),
            };
            match keys.iter().position(|(k, _, _)| k == name) {
                Some(i) => {
                    keys[i].1 |= span;
                    keys[i].2 |= resource;
                    i
                }
                None => {
                    keys.push((name.to_owned(), span, resource));
                    keys.len() - 1
                }
            }
        };
        let mut leaves: BTreeSet<usize> = [leaf::START, leaf::END].into_iter().collect();
        let (mut span_kinds, mut resource_kinds) = (ValueKinds::default(), ValueKinds::default());
        let spans = filter.spans.as_ref().map(|f| {
            compile(f, &mut |name, whose, test| {
                let kinds = ValueKinds::of(test);
                if whose != Whose::Resource {
                    span_kinds.add(kinds);
                }
                if whose != Whose::Span {
                    resource_kinds.add(kinds);
                }
                key(name, whose)
            })
        });
        let selected: Vec<(usize, Whose)> = if span_sets {
            selected
                .iter()
                .map(|(name, whose)| {
                    let all = ValueKinds::of(&Test::Bool {
                        equal: true,
                        value: true,
                    });
                    let mut kinds = ValueKinds::of(&Test::Text(TextOp::Contains, String::new()));
                    kinds.add(all);
                    if *whose != Whose::Resource {
                        span_kinds.add(kinds);
                    }
                    if *whose != Whose::Span {
                        resource_kinds.add(kinds);
                    }
                    (key(name, *whose), *whose)
                })
                .collect()
        } else {
            Vec::new()
        };
        let needs_spans = spans.is_some() || span_sets;
        if let Some(f) = &spans {
            columns_of(f, &mut |c| {
                leaves.insert(column_leaf(c));
            });
        }
        if needs_spans {
            // Spans are enumerated by a cheap span column.
            leaves.insert(leaf::SPAN_STATUS_CODE);
        }
        for (name, span, resource) in &keys {
            if *span {
                leaves.extend(span_kinds.leaves(leaf::SPAN_ATTRS));
                if let Some((_, l)) = SPAN_WELL_KNOWN.iter().find(|(k, _)| k == name) {
                    leaves.insert(*l);
                }
            }
            if *resource {
                leaves.extend(resource_kinds.leaves(leaf::RES_ATTRS));
                if name == "service.name" {
                    leaves.insert(leaf::RES_SERVICE);
                }
                if let Some(i) = RESOURCE_WELL_KNOWN.iter().position(|k| k == name) {
                    leaves.insert(leaf::RES_WELL_KNOWN + i);
                }
            }
        }
        if filter.service.is_some() {
            leaves.insert(leaf::STATS_KEY);
        }
        match filter.status {
            Some(2) => {
                leaves.insert(leaf::STATS_ERRORS);
            }
            Some(_) => {
                leaves.insert(leaf::SPAN_STATUS_CODE);
            }
            None => {}
        }
        for c in filter.trace_level.iter().flatten() {
            match c.field {
                Field::RootName => leaves.insert(leaf::ROOT_SPAN),
                Field::RootServiceName => leaves.insert(leaf::ROOT_SERVICE),
                _ => false,
            };
        }
        let mut output: BTreeSet<usize> = [leaf::TRACE_ID, leaf::ROOT_SERVICE, leaf::ROOT_SPAN]
            .into_iter()
            .collect();
        if span_sets {
            output.extend([
                leaf::SPAN_ID,
                leaf::SPAN_NAME,
                leaf::SPAN_START,
                leaf::SPAN_DURATION,
            ]);
        } else {
            output.extend([leaf::STATS_KEY, leaf::STATS_SPANS, leaf::STATS_ERRORS]);
        }
        let output_leaves = output.difference(&leaves).copied().collect();
        let mut plan = Plan {
            filter_leaves: leaves.into_iter().collect(),
            output_leaves,
            needs: Vec::new(),
            needs_ints: Vec::new(),
            keys,
            spans,
            filter: filter.clone(),
            selected,
            span_sets,
            needs_spans,
        };
        plan.needs();
        plan
    }

    /// What a row group must hold: from the conditions every match meets.
    fn needs(&mut self) {
        let mut needs = Vec::new();
        let mut ints = Vec::new();
        if let Some(service) = self
            .filter
            .service
            .as_ref()
            .filter(|s| *s != UNKNOWN_SERVICE)
        {
            needs.push((leaf::STATS_KEY, service.clone()));
        }
        match self.filter.status {
            Some(2) => ints.push((leaf::STATS_ERRORS, Cmp::Gt, 0)),
            Some(code) => ints.push((leaf::SPAN_STATUS_CODE, Cmp::Eq, code)),
            None => {}
        }
        if let Some(f) = &self.filter.spans {
            span_needs(f, &mut needs, &mut ints);
        }
        for group in &self.filter.trace_level {
            if let [Cond {
                field,
                op: Op::Eq,
                value: Literal::Str(v),
            }] = &group[..]
            {
                match field {
                    Field::RootServiceName => needs.push((leaf::ROOT_SERVICE, v.clone())),
                    Field::RootName => needs.push((leaf::ROOT_SPAN, v.clone())),
                    _ => {}
                }
            }
        }
        self.needs = needs
            .into_iter()
            .map(|(leaf, value)| Needs {
                leaf,
                value: value.into_bytes(),
            })
            .collect();
        self.needs_ints = ints;
    }

    /// Whether the row group's statistics leave room for a match that
    /// starts in `[from, to)`.
    pub(super) fn may_match(&self, rg: &RowGroupMetaData, from: i64, to: i64) -> bool {
        if let Some((min, max)) = scan::int_bounds(rg, leaf::START) {
            if max < from || min >= to {
                return false;
            }
            if let (Some(need), Some((_, end_max))) =
                (self.filter.min_duration_ns, scan::int_bounds(rg, leaf::END))
            {
                if end_max.saturating_sub(min) < need {
                    return false;
                }
            }
        }
        for n in &self.needs {
            if !scan::may_hold_bytes(rg, n.leaf, &n.value) {
                return false;
            }
        }
        for &(l, cmp, v) in &self.needs_ints {
            if scan::is_empty(rg, l) {
                return false;
            }
            if let Some((min, max)) = scan::int_bounds(rg, l) {
                let possible = match cmp {
                    Cmp::Eq => min <= v && v <= max,
                    Cmp::Ne => !(min == v && max == v),
                    Cmp::Lt => min < v,
                    Cmp::Le => min <= v,
                    Cmp::Gt => max > v,
                    Cmp::Ge => max >= v,
                };
                if !possible {
                    return false;
                }
            }
        }
        true
    }

    /// The strings of the row group's needs that a dictionary page can
    /// rule out, with the page's byte range.
    pub(super) fn dictionary_checks(&self, rg: &RowGroupMetaData) -> Vec<(Needs, Range<u64>)> {
        self.needs
            .iter()
            .filter_map(|n| Some((n.clone(), scan::dictionary_range(rg, n.leaf)?)))
            .collect()
    }

    /// Whether any condition reads the spans.
    pub(super) fn reads_spans(&self) -> bool {
        self.needs_spans
    }
}

/// Compiles a span filter; `key` interns an attribute key (and learns
/// which value leaves its test reads).
fn compile(f: &Filter, key: &mut dyn FnMut(&str, Whose, &Test) -> usize) -> CFilter {
    match f {
        Filter::All(v) => CFilter::All(v.iter().map(|f| compile(f, key)).collect()),
        Filter::Any(v) => CFilter::Any(v.iter().map(|f| compile(f, key)).collect()),
        Filter::Test(subject, test) => {
            let subject = match subject {
                Subject::Column(c) => CSubject::Column(*c),
                Subject::Attribute(whose, name) => {
                    let whose = match whose {
                        Attributes::Span => Whose::Span,
                        Attributes::Resource => Whose::Resource,
                        Attributes::Either => Whose::Either,
                    };
                    CSubject::Attr(whose, key(name, whose, test))
                }
            };
            let test = match test {
                Test::Text(op, want) => {
                    let re = matches!(op, TextOp::Matches | TextOp::NotMatches)
                        .then(|| regex::Regex::new(want).ok())
                        .flatten();
                    CTest::Text(TextTest::Op(*op, want.clone(), re))
                }
                Test::OneOf { values, negated } => {
                    CTest::Text(TextTest::OneOf(values.clone(), *negated))
                }
                Test::Number(cmp, n) => CTest::Number(*cmp, *n),
                Test::Bool { equal, value } => CTest::Bool(*equal, *value),
            };
            CFilter::Test(subject, test)
        }
    }
}

fn columns_of(f: &CFilter, out: &mut dyn FnMut(Column)) {
    match f {
        CFilter::All(v) | CFilter::Any(v) => v.iter().for_each(|f| columns_of(f, out)),
        CFilter::Test(CSubject::Column(c), _) => out(*c),
        CFilter::Test(..) => {}
    }
}

fn column_leaf(c: Column) -> usize {
    match c {
        Column::Name => leaf::SPAN_NAME,
        Column::Service => leaf::RES_SERVICE,
        Column::ScopeName => leaf::SCOPE_NAME,
        Column::StatusMessage => leaf::SPAN_STATUS_MESSAGE,
        Column::SpanId => leaf::SPAN_ID,
        Column::ParentSpanId => leaf::SPAN_PARENT_SPAN_ID,
        Column::TraceId => leaf::TRACE_ID,
        Column::Status => leaf::SPAN_STATUS_CODE,
        Column::Kind => leaf::SPAN_KIND,
        Column::DurationNs => leaf::SPAN_DURATION,
    }
}

/// What a row group must hold for one span of it to meet `f`: the
/// conditions of its top-level conjunction that name one value.
fn span_needs(f: &Filter, needs: &mut Vec<(usize, String)>, ints: &mut Vec<(usize, Cmp, i64)>) {
    match f {
        Filter::All(v) => v.iter().for_each(|f| span_needs(f, needs, ints)),
        Filter::Any(_) => {}
        Filter::Test(Subject::Column(c), test) => {
            let text_column = matches!(
                c,
                Column::Name | Column::Service | Column::ScopeName | Column::StatusMessage
            );
            match test {
                Test::Text(TextOp::Cmp(Cmp::Eq), v)
                    if text_column && !(*c == Column::Service && v == UNKNOWN_SERVICE) =>
                {
                    needs.push((column_leaf(*c), v.clone()));
                }
                Test::Number(cmp, Number::Int(v))
                    if matches!(c, Column::Status | Column::Kind | Column::DurationNs) =>
                {
                    ints.push((column_leaf(*c), *cmp, *v));
                }
                _ => {}
            }
        }
        Filter::Test(Subject::Attribute(whose, key), test) => {
            let equal = match test {
                Test::Text(TextOp::Cmp(Cmp::Eq), v) if only_a_string_spells(v) => Some(v),
                _ => None,
            };
            match whose {
                Attributes::Span => {
                    if SPAN_WELL_KNOWN.iter().any(|(k, _)| k == key) {
                        return;
                    }
                    needs.push((leaf::SPAN_ATTRS + leaf::attr::KEY, key.clone()));
                    if let Some(v) = equal {
                        needs.push((leaf::SPAN_ATTRS + leaf::attr::VALUE, v.clone()));
                    }
                }
                Attributes::Resource => {
                    if key == "service.name" {
                        if let Some(v) = equal {
                            needs.push((leaf::RES_SERVICE, v.clone()));
                        }
                    } else if let Some(i) = RESOURCE_WELL_KNOWN.iter().position(|k| k == key) {
                        if let Some(v) = equal {
                            needs.push((leaf::RES_WELL_KNOWN + i, v.clone()));
                        }
                    } else {
                        needs.push((leaf::RES_ATTRS + leaf::attr::KEY, key.clone()));
                        if let Some(v) = equal {
                            needs.push((leaf::RES_ATTRS + leaf::attr::VALUE, v.clone()));
                        }
                    }
                }
                Attributes::Either => {}
            }
        }
    }
}

/// Where a span sits.
#[derive(Debug, Clone, Copy)]
struct SpanAt {
    row: u32,
    resource: u32,
    scope: u32,
}

/// A row group's decoded chunks, by leaf.
pub(super) struct Group {
    rows: usize,
    chunks: HashMap<usize, Chunk>,
    /// Spans in order, once enumerated.
    spans: Vec<SpanAt>,
}

/// A trace of a row group that meets the conditions.
#[derive(Debug)]
pub(super) struct RowMatch {
    /// Its row.
    pub(super) row: u32,
    /// Its start, ns.
    pub(super) start_ns: i64,
    /// Its end, ns.
    pub(super) end_ns: i64,
    /// Its matching spans (when the plan reads spans).
    spans: Vec<u32>,
    /// How many spans match (every span when no span condition).
    pub(super) matched: u32,
}

/// A value's slot per element of one list level, from a chunk.
fn per_element(chunk: &Chunk, level: usize, elements: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; elements];
    chunk.walk(lists(chunk.leaf), |p: &Place| {
        if p.depth >= level {
            if let (Some(slot), Some(v)) = (out.get_mut(p.ids[level] as usize), p.value) {
                *slot = Some(v);
            }
        }
    });
    out
}

impl Group {
    /// A row group of `rows` traces.
    pub(super) fn new(rows: usize) -> Group {
        Group {
            rows,
            chunks: HashMap::new(),
            spans: Vec::new(),
        }
    }

    /// Adds decoded chunks.
    pub(super) fn add(&mut self, chunks: Vec<Chunk>) {
        for c in chunks {
            self.chunks.insert(c.leaf, c);
        }
    }

    fn chunk(&self, l: usize) -> Option<&Chunk> {
        self.chunks.get(&l)
    }

    /// Per row, the value slot of a top-level column.
    fn top(&self, l: usize) -> Vec<Option<usize>> {
        let mut out = vec![None; self.rows];
        if let Some(c) = self.chunk(l) {
            c.walk(0, |p| {
                if let Some(slot) = out.get_mut(p.ids[0] as usize) {
                    *slot = p.value;
                }
            });
        }
        out
    }

    fn enumerate_spans(&mut self) {
        if !self.spans.is_empty() {
            return;
        }
        let Some(c) = self.chunk(leaf::SPAN_STATUS_CODE) else {
            return;
        };
        let mut spans = Vec::new();
        c.walk(3, |p| {
            if p.depth >= 3 {
                spans.push(SpanAt {
                    row: p.ids[0],
                    resource: p.ids[1],
                    scope: p.ids[2],
                });
            }
        });
        self.spans = spans;
    }

    /// The traces of the group that start in `[from, to)` and meet `plan`'s
    /// conditions; and how many spans were looked at.
    pub(super) fn matches(&mut self, plan: &Plan, from: i64, to: i64) -> (Vec<RowMatch>, u64) {
        let int_of = |g: &Group, l: usize| -> Vec<Option<i64>> {
            let slots = g.top(l);
            let chunk = g.chunk(l);
            slots
                .into_iter()
                .map(|s| chunk.and_then(|c| c.int(s?)))
                .collect()
        };
        let starts = int_of(self, leaf::START);
        let ends = int_of(self, leaf::END);
        let mut candidate: Vec<bool> = (0..self.rows)
            .map(|r| {
                let (Some(start), Some(end)) = (starts[r], ends[r]) else {
                    return false;
                };
                // In microseconds, as PostgreSQL keeps times and compares.
                let duration = end.div_euclid(1_000) - start.div_euclid(1_000);
                start >= from
                    && start < to
                    && plan
                        .filter
                        .min_duration_ns
                        .is_none_or(|m| duration >= m / 1_000)
                    && plan
                        .filter
                        .max_duration_ns
                        .is_none_or(|m| duration <= m / 1_000)
            })
            .collect();
        if let Some(service) = &plan.filter.service {
            let mut has = vec![false; self.rows];
            if let Some(c) = self.chunk(leaf::STATS_KEY) {
                c.walk(1, |p| {
                    if let Some(v) = p.value.and_then(|v| c.bytes(v)) {
                        let v = if v.is_empty() {
                            UNKNOWN_SERVICE.as_bytes()
                        } else {
                            v
                        };
                        if v == service.as_bytes() {
                            has[p.ids[0] as usize] = true;
                        }
                    }
                });
            }
            and(&mut candidate, &has);
        }
        if plan.reads_spans() || plan.filter.status.is_some_and(|s| s != 2) {
            self.enumerate_spans();
        }
        match plan.filter.status {
            Some(2) => {
                let mut has = vec![false; self.rows];
                if let Some(c) = self.chunk(leaf::STATS_ERRORS) {
                    c.walk(1, |p| {
                        if p.value.and_then(|v| c.int(v)).is_some_and(|n| n > 0) {
                            has[p.ids[0] as usize] = true;
                        }
                    });
                }
                and(&mut candidate, &has);
            }
            Some(code) => {
                let mut has = vec![false; self.rows];
                if let Some(c) = self.chunk(leaf::SPAN_STATUS_CODE) {
                    c.walk(3, |p| {
                        if p.value.and_then(|v| c.int(v)) == Some(code) {
                            has[p.ids[0] as usize] = true;
                        }
                    });
                }
                and(&mut candidate, &has);
            }
            None => {}
        }
        if !plan.filter.trace_level.is_empty() {
            let levels: Vec<Vec<crate::tempo_api::store::TraceLevel>> = plan
                .filter
                .trace_level
                .iter()
                .map(|any| {
                    any.iter()
                        .map(crate::tempo_api::store::TraceLevel::new)
                        .collect()
                })
                .collect();
            let root_service = self.top(leaf::ROOT_SERVICE);
            let root_span = self.top(leaf::ROOT_SPAN);
            let text = |l: usize, slot: Option<usize>| -> Option<String> {
                let c = self.chunk(l)?;
                Some(String::from_utf8_lossy(c.bytes(slot?)?).into_owned())
            };
            for r in 0..self.rows {
                if !candidate[r] {
                    continue;
                }
                let service = text(leaf::ROOT_SERVICE, root_service[r]).unwrap_or_default();
                let name = text(leaf::ROOT_SPAN, root_span[r]).unwrap_or_default();
                let rooted = !(service.is_empty() && name.is_empty());
                // Microsecond times, as PostgreSQL's summaries hold them.
                let us = |ns: Option<i64>| (ns.unwrap_or(0).max(0) / 1_000 * 1_000) as u64;
                let summary = crate::tempo_api::store::Summary {
                    start_ns: us(starts[r]),
                    end_ns: us(ends[r]),
                    root_service: rooted.then_some(service),
                    root_name: rooted.then_some(name),
                };
                candidate[r] = levels
                    .iter()
                    .all(|any| any.iter().any(|c| c.holds(&summary)));
            }
        }
        // Spans: which meet the span filter.
        let mut matched_spans: Vec<Vec<u32>> = vec![Vec::new(); self.rows];
        let mut inspected = 0u64;
        if plan.reads_spans() {
            let ctx = SpanContext::new(self, plan);
            for (s, at) in self.spans.iter().enumerate() {
                let row = at.row as usize;
                if !candidate.get(row).copied().unwrap_or(false) {
                    continue;
                }
                inspected += 1;
                let hit = plan
                    .spans
                    .as_ref()
                    .is_none_or(|f| ctx.holds_with(self, f, s as u32, at));
                if hit {
                    matched_spans[row].push(s as u32);
                }
            }
        }
        let mut out = Vec::new();
        for (r, spans) in matched_spans.into_iter().enumerate() {
            if !candidate[r] || (plan.reads_spans() && spans.is_empty()) {
                continue;
            }
            out.push(RowMatch {
                row: r as u32,
                start_ns: starts[r].unwrap_or(0),
                end_ns: ends[r].unwrap_or(0),
                matched: spans.len() as u32,
                spans,
            });
        }
        (out, inspected)
    }

    /// What the answer says of each match (the output leaves added).
    pub(super) fn describe(
        &mut self,
        plan: &Plan,
        matches: Vec<RowMatch>,
        per_set: usize,
    ) -> Vec<BlockHit> {
        let text_of = |g: &Group, l: usize| -> Vec<Option<String>> {
            let slots = g.top(l);
            let chunk = g.chunk(l);
            slots
                .into_iter()
                .map(|s| {
                    chunk
                        .and_then(|c| c.bytes(s?))
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .collect()
        };
        let ids = {
            let slots = self.top(leaf::TRACE_ID);
            let chunk = self.chunk(leaf::TRACE_ID);
            slots
                .into_iter()
                .map(|s| {
                    let b = chunk.and_then(|c| c.bytes(s?))?;
                    let mut id = [0u8; 16];
                    let n = b.len().min(16);
                    id[16 - n..].copy_from_slice(&b[b.len() - n..]);
                    Some(id)
                })
                .collect::<Vec<_>>()
        };
        let root_service = text_of(self, leaf::ROOT_SERVICE);
        let root_span = text_of(self, leaf::ROOT_SPAN);
        // Per row: services, spans, errors.
        let mut services: Vec<Vec<String>> = vec![Vec::new(); self.rows];
        let mut span_count = vec![0i64; self.rows];
        let mut error_count = vec![0i64; self.rows];
        if !plan.span_sets {
            if let Some(c) = self.chunk(leaf::STATS_KEY) {
                c.walk(1, |p| {
                    if let Some(v) = p.value.and_then(|v| c.bytes(v)) {
                        let name = if v.is_empty() {
                            UNKNOWN_SERVICE.to_owned()
                        } else {
                            String::from_utf8_lossy(v).into_owned()
                        };
                        let list = &mut services[p.ids[0] as usize];
                        if !list.contains(&name) {
                            list.push(name);
                        }
                    }
                });
            }
            for (l, out) in [
                (leaf::STATS_SPANS, &mut span_count),
                (leaf::STATS_ERRORS, &mut error_count),
            ] {
                if let Some(c) = self.chunk(l) {
                    c.walk(1, |p| {
                        if let Some(n) = p.value.and_then(|v| c.int(v)) {
                            out[p.ids[0] as usize] += n;
                        }
                    });
                }
            }
        }
        let span_details = plan.span_sets.then(|| SpanDetails::new(self, plan));
        matches
            .into_iter()
            .filter_map(|m| {
                let r = m.row as usize;
                let trace_id = ids.get(r).copied().flatten()?;
                let service = root_service[r].clone().unwrap_or_default();
                let name = root_span[r].clone().unwrap_or_default();
                let rooted = !(service.is_empty() && name.is_empty());
                let spans = span_details
                    .as_ref()
                    .map(|d| d.spans(self, plan, &m.spans, per_set))
                    .unwrap_or_default();
                services[r].sort();
                Some(BlockHit {
                    trace_id,
                    start_ns: m.start_ns,
                    end_ns: m.end_ns,
                    root_service: rooted.then(|| {
                        if service.is_empty() {
                            UNKNOWN_SERVICE.to_owned()
                        } else {
                            service
                        }
                    }),
                    root_name: rooted.then_some(name),
                    services: std::mem::take(&mut services[r]),
                    span_count: span_count[r],
                    error_count: error_count[r],
                    matched: m.matched,
                    spans,
                })
            })
            .collect()
    }
}

fn and(candidate: &mut [bool], has: &[bool]) {
    for (c, h) in candidate.iter_mut().zip(has) {
        *c &= *h;
    }
}

/// The values a span filter reads, per span, resource and scope.
struct SpanContext {
    /// Value slots per span of span columns, by leaf.
    span_columns: HashMap<usize, Vec<Option<usize>>>,
    /// Value slots per resource of resource columns.
    resource_columns: HashMap<usize, Vec<Option<usize>>>,
    /// Value slots per scope of the scope name.
    scope_names: Vec<Option<usize>>,
    /// Value slots per row of the trace id.
    trace_ids: Vec<Option<usize>>,
    /// (span, key) to value.
    span_attrs: HashMap<(u32, usize), AttrValue>,
    /// (resource, key) to value.
    resource_attrs: HashMap<(u32, usize), AttrValue>,
    /// Per key: the span well-known leaf, the resource well-known leaf.
    well_known: Vec<(Option<usize>, Option<usize>)>,
}

/// Reads an attribute list (`first` its first leaf; `owner` the list level
/// of its owner: 3 for spans, 1 for resources) for the wanted keys.
fn attributes(
    g: &Group,
    first: usize,
    owner: usize,
    keys: &[(String, bool, bool)],
    wanted: impl Fn(&(String, bool, bool)) -> bool,
) -> HashMap<(u32, usize), AttrValue> {
    use leaf::attr::*;
    let level = owner + 1;
    let Some(key_chunk) = g.chunk(first + KEY) else {
        return HashMap::new();
    };
    let index: HashMap<&[u8], usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| wanted(k))
        .map(|(i, k)| (k.0.as_bytes(), i))
        .collect();
    if index.is_empty() {
        return HashMap::new();
    }
    // Attribute id to (owner, key), in order.
    let mut found: Vec<(u32, u32, usize)> = Vec::new();
    key_chunk.walk(level, |p| {
        if p.depth >= level {
            if let Some(k) = p.value.and_then(|v| key_chunk.bytes(v)) {
                if let Some(&i) = index.get(k) {
                    found.push((p.ids[level], p.ids[owner], i));
                }
            }
        }
    });
    if found.is_empty() {
        return HashMap::new();
    }
    let at: HashMap<u32, usize> = found
        .iter()
        .enumerate()
        .map(|(n, (id, _, _))| (*id, n))
        .collect();
    let mut arrays = vec![false; found.len()];
    if let Some(c) = g.chunk(first + IS_ARRAY) {
        c.walk(level, |p| {
            if p.depth >= level {
                if let (Some(&n), Some(b)) =
                    (at.get(&p.ids[level]), p.value.and_then(|v| c.bool(v)))
                {
                    arrays[n] = b;
                }
            }
        });
    }
    let mut values: Vec<Vec<AttrValue>> = vec![Vec::new(); found.len()];
    for offset in [VALUE, INT, DOUBLE, BOOL] {
        let Some(c) = g.chunk(first + offset) else {
            continue;
        };
        c.walk(level + 1, |p| {
            let Some(v) = p.value else {
                return;
            };
            if p.depth < level {
                return;
            }
            let Some(&n) = at.get(&p.ids[level]) else {
                return;
            };
            let value = match offset {
                VALUE => c
                    .bytes(v)
                    .map(|b| AttrValue::Str(String::from_utf8_lossy(b).into_owned())),
                INT => c.int(v).map(AttrValue::Int),
                DOUBLE => c.double(v).map(AttrValue::Double),
                _ => c.bool(v).map(AttrValue::Bool),
            };
            values[n].extend(value);
        });
    }
    let mut out = HashMap::new();
    for (n, (_, owner_id, key)) in found.into_iter().enumerate() {
        let mut vs = std::mem::take(&mut values[n]);
        let value = if arrays[n] {
            Some(AttrValue::Array(vs))
        } else if vs.len() == 1 {
            vs.pop()
        } else {
            // Unsupported values (bytes, maps, mixed arrays) are not read.
            None
        };
        if let Some(v) = value {
            // A repeated key keeps its last value, as the JSON of PostgreSQL.
            out.insert((owner_id, key), v);
        }
    }
    out
}

impl SpanContext {
    fn new(g: &Group, plan: &Plan) -> SpanContext {
        let spans = g.spans.len();
        let resources = g.spans.iter().map(|s| s.resource + 1).max().unwrap_or(0) as usize;
        let scopes = g.spans.iter().map(|s| s.scope + 1).max().unwrap_or(0) as usize;
        let mut span_columns = HashMap::new();
        let mut resource_columns = HashMap::new();
        for (&l, c) in &g.chunks {
            match lists(l) {
                3 => {
                    span_columns.insert(l, per_element(c, 3, spans));
                }
                1 if l >= leaf::RES_DROPPED => {
                    resource_columns.insert(l, per_element(c, 1, resources));
                }
                _ => {}
            }
        }
        let scope_names = g
            .chunk(leaf::SCOPE_NAME)
            .map(|c| per_element(c, 2, scopes))
            .unwrap_or_default();
        let trace_ids = g.top(leaf::TRACE_ID);
        let well_known = plan
            .keys
            .iter()
            .map(|(name, span, resource)| {
                let s = SPAN_WELL_KNOWN
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, l)| *l)
                    .filter(|_| *span);
                let r = if name == "service.name" {
                    Some(leaf::RES_SERVICE)
                } else {
                    RESOURCE_WELL_KNOWN
                        .iter()
                        .position(|k| k == name)
                        .map(|i| leaf::RES_WELL_KNOWN + i)
                }
                .filter(|_| *resource);
                (s, r)
            })
            .collect();
        SpanContext {
            span_columns,
            resource_columns,
            scope_names,
            trace_ids,
            span_attrs: attributes(g, leaf::SPAN_ATTRS, 3, &plan.keys, |k| k.1),
            resource_attrs: attributes(g, leaf::RES_ATTRS, 1, &plan.keys, |k| k.2),
            well_known,
        }
    }

    /// A span column's value (a leaf with one entry per span).
    fn column<'g>(&self, g: &'g Group, l: usize, s: u32) -> Option<(&'g Chunk, usize)> {
        let slot = (*self.span_columns.get(&l)?.get(s as usize)?)?;
        Some((g.chunk(l)?, slot))
    }

    fn resource_column<'g>(&self, g: &'g Group, l: usize, r: u32) -> Option<(&'g Chunk, usize)> {
        let slot = (*self.resource_columns.get(&l)?.get(r as usize)?)?;
        Some((g.chunk(l)?, slot))
    }

    /// The span's attribute `key`, or its resource's.
    fn attribute(
        &self,
        g: &Group,
        whose: Whose,
        key: usize,
        s: u32,
        at: &SpanAt,
    ) -> Option<AttrValue> {
        let (span_leaf, resource_leaf) = self.well_known.get(key).copied().unwrap_or_default();
        let span = || -> Option<AttrValue> {
            if let Some(l) = span_leaf {
                if let Some((c, v)) = self.column(g, l, s) {
                    return match c.int(v) {
                        Some(i) => Some(AttrValue::Int(i)),
                        None => c
                            .bytes(v)
                            .map(|b| AttrValue::Str(String::from_utf8_lossy(b).into_owned())),
                    };
                }
            }
            self.span_attrs.get(&(s, key)).cloned()
        };
        let resource = || -> Option<AttrValue> {
            if let Some(l) = resource_leaf {
                if let Some((c, v)) = self.resource_column(g, l, at.resource) {
                    if let Some(b) = c.bytes(v).filter(|b| !b.is_empty()) {
                        return Some(AttrValue::Str(String::from_utf8_lossy(b).into_owned()));
                    }
                }
            }
            self.resource_attrs.get(&(at.resource, key)).cloned()
        };
        match whose {
            Whose::Span => span(),
            Whose::Resource => resource(),
            Whose::Either => span().or_else(resource),
        }
    }

    fn holds_with(&self, g: &Group, f: &CFilter, s: u32, at: &SpanAt) -> bool {
        match f {
            CFilter::All(v) => v.iter().all(|f| self.holds_with(g, f, s, at)),
            CFilter::Any(v) => v.iter().any(|f| self.holds_with(g, f, s, at)),
            CFilter::Test(CSubject::Column(c), test) => self.column_test(g, *c, test, s, at),
            CFilter::Test(CSubject::Attr(Whose::Either, key), test) => {
                // Either: the test holds on the span's or on the resource's.
                [Whose::Span, Whose::Resource].into_iter().any(|whose| {
                    self.attribute(g, whose, *key, s, at)
                        .is_some_and(|v| attr_test(&v, test))
                })
            }
            CFilter::Test(CSubject::Attr(whose, key), test) => self
                .attribute(g, *whose, *key, s, at)
                .is_some_and(|v| attr_test(&v, test)),
        }
    }

    fn column_test(&self, g: &Group, c: Column, test: &CTest, s: u32, at: &SpanAt) -> bool {
        let hex = |b: &[u8]| {
            let mut out = String::with_capacity(2 * b.len());
            observatory_schemas::kafka::push_hex(&mut out, b);
            out
        };
        let text: Option<String> = match c {
            Column::Name | Column::StatusMessage => {
                let l = column_leaf(c);
                self.column(g, l, s)
                    .and_then(|(c, v)| c.bytes(v))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }
            Column::Service => self
                .resource_column(g, leaf::RES_SERVICE, at.resource)
                .and_then(|(c, v)| c.bytes(v))
                .map(|b| {
                    if b.is_empty() {
                        UNKNOWN_SERVICE.to_owned()
                    } else {
                        String::from_utf8_lossy(b).into_owned()
                    }
                }),
            Column::ScopeName => {
                let slot = self.scope_names.get(at.scope as usize).copied().flatten();
                g.chunk(leaf::SCOPE_NAME)
                    .zip(slot)
                    .and_then(|(c, v)| c.bytes(v))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }
            Column::SpanId => self
                .column(g, leaf::SPAN_ID, s)
                .and_then(|(c, v)| c.bytes(v))
                .map(hex),
            Column::ParentSpanId => self
                .column(g, leaf::SPAN_PARENT_SPAN_ID, s)
                .and_then(|(c, v)| c.bytes(v))
                .filter(|b| !b.is_empty())
                .map(hex),
            Column::TraceId => {
                let slot = self.trace_ids.get(at.row as usize).copied().flatten();
                g.chunk(leaf::TRACE_ID)
                    .zip(slot)
                    .and_then(|(c, v)| c.bytes(v))
                    .map(hex)
            }
            Column::Status | Column::Kind | Column::DurationNs => {
                let have = self
                    .column(g, column_leaf(c), s)
                    .and_then(|(c, v)| c.int(v));
                return match (have, test) {
                    (Some(have), CTest::Number(cmp, want)) => {
                        number_holds(Number::Int(have), *cmp, *want)
                    }
                    _ => false,
                };
            }
        };
        match (text, test) {
            (Some(have), CTest::Text(t)) => t.holds(&have),
            _ => false,
        }
    }
}

fn attr_test(v: &AttrValue, test: &CTest) -> bool {
    match test {
        CTest::Text(t) => t.holds(&v.text()),
        CTest::Number(cmp, want) => v
            .number()
            .is_some_and(|have| number_holds(have, *cmp, *want)),
        CTest::Bool(equal, want) => match v {
            AttrValue::Bool(b) => (b == want) == *equal,
            _ => false,
        },
    }
}

/// The span columns shown on matched spans.
struct SpanDetails {
    starts: Vec<Option<usize>>,
    ctx: SpanContext,
}

impl SpanDetails {
    fn new(g: &Group, plan: &Plan) -> SpanDetails {
        let ctx = SpanContext::new(g, plan);
        let starts = ctx
            .span_columns
            .get(&leaf::SPAN_START)
            .cloned()
            .unwrap_or_default();
        SpanDetails { starts, ctx }
    }

    /// The first `per_set` of `spans` by start time, described.
    fn spans(&self, g: &Group, plan: &Plan, spans: &[u32], per_set: usize) -> Vec<MatchedSpan> {
        let start_of = |s: u32| -> u64 {
            let slot = self.starts.get(s as usize).copied().flatten();
            g.chunk(leaf::SPAN_START)
                .zip(slot)
                .and_then(|(c, v)| c.int(v))
                .unwrap_or(0)
                .max(0) as u64
        };
        let mut order: Vec<u32> = spans.to_vec();
        order.sort_by_key(|s| (start_of(*s), *s));
        order.truncate(per_set);
        order
            .into_iter()
            .map(|s| {
                let at = g.spans[s as usize];
                let bytes = |l: usize| -> Vec<u8> {
                    self.ctx
                        .column(g, l, s)
                        .and_then(|(c, v)| c.bytes(v))
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default()
                };
                let duration = self
                    .ctx
                    .column(g, leaf::SPAN_DURATION, s)
                    .and_then(|(c, v)| c.int(v))
                    .unwrap_or(0)
                    .max(0) as u64;
                let attributes = plan
                    .selected
                    .iter()
                    .filter_map(|(key, whose)| {
                        let v = self.ctx.attribute(g, *whose, *key, s, &at)?;
                        Some((plan.keys[*key].0.clone(), v.json()))
                    })
                    .collect();
                MatchedSpan {
                    span_id: bytes(leaf::SPAN_ID),
                    name: String::from_utf8_lossy(&bytes(leaf::SPAN_NAME)).into_owned(),
                    start_ns: start_of(s),
                    duration_ns: duration,
                    attributes,
                }
            })
            .collect()
    }
}
