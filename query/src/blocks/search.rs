//! Search over the Tempo blocks: the traces of a tenant that start in a
//! window and meet a search's conditions, for the part of a window that
//! PostgreSQL no longer holds (`GET /api/v1/traces`, Tempo's `/api/search`).
//!
//! How a search reads, cheapest first:
//! 1. blocks whose meta time range misses the window (or lies wholly
//!    before a page's cursor) are not read at all;
//! 2. of the others, the footer (kept decoded, as for lookups);
//! 3. per row group, the footer's column-chunk statistics rule it out
//!    when its trace start and end times miss the window or the duration
//!    bound, or a value every match must hold (a service, a span name, an
//!    attribute key or string value, a status) lies outside a chunk's
//!    min/max;
//! 4. then, for such values in a wholly dictionary-encoded chunk, its
//!    dictionary page (a few KiB): a value absent from it rules the row
//!    group out;
//! 5. then only the column chunks the conditions read, by byte range;
//!    and for the row groups where a trace matched, the chunks the answer
//!    shows (trace id, root, counts; span details for Tempo's span sets).
//!
//! What it guarantees:
//! - Blocks are read newest first, at most `BLOCKS_SEARCH_CONCURRENCY` at
//!   once, and up to 8 row groups of each block at once (object storage
//!   answers in tens of milliseconds, a day of one-minute blocks is 1 440
//!   requests or more, and a day's compacted block dozens of row groups); a
//!   search ordered by start time stops as soon as no unread block can hold
//!   a trace that would make the page.
//! - A search reads at most `BLOCKS_SEARCH_MAX_BYTES` (every read is
//!   reserved first, none passes it). When the budget stops it, the answer
//!   says so ([`BlockSearchResult::complete`]), and when ordered by start
//!   time it also says up to where it is complete
//!   ([`BlockSearchResult::frontier`]): every match before that position is
//!   in the answer, so a page can go on from there.
//! - Every byte read counts in `observatory_api_blocks_read_bytes_total`.
//! - A block deleted since it was listed is skipped; a tenant has at most
//!   `BLOCKS_TENANT_CONCURRENCY` lookups and searches in flight.
//! - A trace cut into several blocks is one answer: its parts' times,
//!   counts, services and matching spans merged.

use super::eval::{Group, Plan};
use super::fetch::{merge_ranges, Budget};
use super::list::BlockInfo;
use super::scan;
use super::{Blocks, BlocksError};
use crate::span_filter::Filter;
use crate::summaries::{Cursor, Keys, Order, SortKey};
use crate::tempo_api::traceql::Cond;
use futures::StreamExt;
use object_store::path::Path;
use observatory_schemas::tempo::meta::{tenant_folder, DATA};
use observatory_schemas::tempo::ranged::Footer;
use std::collections::HashMap;
use std::sync::Arc;

/// A value a row group must hold, and its chunk's dictionary page.
type Check = (super::eval::Needs, std::ops::Range<u64>);

/// Column chunks of one row group closer than this are read in one request
/// (a few KiB of another column cost less than a request).
const RANGE_GAP: u64 = 16 << 10;

/// Row groups of one block searched at once (each a round trip or two to
/// the store); blocks are searched `BLOCKS_SEARCH_CONCURRENCY` at once.
const GROUP_CONCURRENCY: usize = 8;

/// A block's data file, as a row group's search reads it.
struct DataFile<'a> {
    block: &'a str,
    path: &'a Path,
    footer: &'a Footer,
    len: u64,
}

/// Whose attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    /// The span's.
    Span,
    /// Its resource's.
    Resource,
    /// Either (the span's first).
    Either,
}

/// What a trace must meet.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    /// A span of the trace is of this service.
    pub service: Option<String>,
    /// A span of the trace has this status code (0 unset, 1 ok, 2 error).
    pub status: Option<i64>,
    /// The trace lasts at least this long, ns.
    pub min_duration_ns: Option<i64>,
    /// At most this long, ns.
    pub max_duration_ns: Option<i64>,
    /// One span of the trace meets this ([`crate::span_filter`]).
    pub spans: Option<Filter>,
    /// TraceQL's trace-level conditions: every group holds, each group an
    /// `||` of conditions.
    pub trace_level: Vec<Vec<Cond>>,
}

/// One search.
#[derive(Debug, Clone)]
pub struct BlockSearch {
    /// Traces that start at or after this, ns since the epoch.
    pub from_ns: i64,
    /// And before this.
    pub to_ns: i64,
    /// The conditions.
    pub filter: TraceFilter,
    /// The order of the answer.
    pub order: Order,
    /// Only traces after this position of the order.
    pub after: Option<Cursor>,
    /// The most traces answered.
    pub limit: usize,
    /// Describe up to this many matching spans per trace (Tempo's span
    /// sets); `None`: only count them.
    pub span_sets: Option<usize>,
    /// Attributes shown on described spans.
    pub selected: Vec<(String, Whose)>,
}

/// A matching span, described (Tempo's span sets).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    /// Span id, raw.
    pub span_id: Vec<u8>,
    /// Name.
    pub name: String,
    /// Start, ns since the epoch.
    pub start_ns: u64,
    /// Duration, ns.
    pub duration_ns: u64,
    /// The selected attributes it has, as JSON values.
    pub attributes: Vec<(String, serde_json::Value)>,
}

/// A matching trace.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockHit {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// First span start, ns.
    pub start_ns: i64,
    /// Last span end, ns.
    pub end_ns: i64,
    /// The root span's service; `None` when no block part holds the root.
    pub root_service: Option<String>,
    /// The root span's name.
    pub root_name: Option<String>,
    /// Services of its spans (search summaries only).
    pub services: Vec<String>,
    /// Spans (search summaries only).
    pub span_count: i64,
    /// Spans with status error (search summaries only).
    pub error_count: i64,
    /// Spans that met the span conditions (all when none).
    pub matched: u32,
    /// The first matching spans by start, described (span sets only).
    pub spans: Vec<MatchedSpan>,
}

impl BlockHit {
    /// The order values blocks know of the trace.
    pub fn keys(&self) -> Keys {
        Keys {
            start_us: self.start_ns.div_euclid(1_000),
            // As PostgreSQL keeps them: microsecond times, then the difference.
            duration_us: (self.end_ns.div_euclid(1_000) - self.start_ns.div_euclid(1_000)).max(0),
            span_count: self.span_count,
            cost_usd: 0.0,
            tokens: 0,
        }
    }

    /// Adds another block's part of the same trace.
    fn absorb(&mut self, other: BlockHit, span_sets: Option<usize>) {
        self.start_ns = self.start_ns.min(other.start_ns);
        self.end_ns = self.end_ns.max(other.end_ns);
        if self.root_name.is_none() {
            self.root_service = other.root_service;
            self.root_name = other.root_name;
        }
        for s in other.services {
            if !self.services.contains(&s) {
                self.services.push(s);
            }
        }
        self.services.sort();
        self.span_count += other.span_count;
        self.error_count += other.error_count;
        self.matched += other.matched;
        self.spans.extend(other.spans);
        self.spans
            .sort_by(|a, b| (a.start_ns, &a.span_id).cmp(&(b.start_ns, &b.span_id)));
        self.spans.dedup_by(|a, b| a.span_id == b.span_id);
        self.spans.truncate(span_sets.unwrap_or(0));
    }
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct BlockSearchResult {
    /// The matches, in the search's order, at most its limit.
    pub hits: Vec<BlockHit>,
    /// False when the byte budget stopped the search before it read every
    /// block it had to: the hits are the matches among what it read.
    pub complete: bool,
    /// When not complete and ordered by start time: the position up to
    /// which the answer is complete (every match before it is in `hits`,
    /// and `hits` holds none after it).
    pub frontier: Option<Cursor>,
    /// Blocks whose time range overlaps the window.
    pub blocks: u32,
    /// Those not searched because the budget ran out.
    pub blocks_unsearched: u32,
    /// Their data files' sizes, in all.
    pub block_bytes: u64,
    /// Bytes the search read.
    pub bytes_read: u64,
    /// Traces whose conditions were checked.
    pub inspected_traces: u64,
    /// Spans whose conditions were checked.
    pub inspected_spans: u64,
}

/// One block's part of a search.
#[derive(Default)]
struct Outcome {
    hits: Vec<BlockHit>,
    /// Whether every row group was read (false: the budget stopped it).
    complete: bool,
    traces: u64,
    spans: u64,
}

fn ns_to_us_floor(ns: i64) -> i64 {
    ns.div_euclid(1_000)
}

/// Whether a block can hold a trace after `after` in `order` (start-time
/// orders only; other orders cannot tell from the block's times).
fn may_follow(block: &BlockInfo, order: Order, after: Option<&Cursor>) -> bool {
    let Some(at) = after.and_then(Cursor::start_us) else {
        return true;
    };
    if order.key != SortKey::StartTime {
        return true;
    }
    if order.descending {
        ns_to_us_floor(block.start_ns) <= at
    } else {
        ns_to_us_floor(block.end_ns) >= at
    }
}

impl Blocks {
    /// Searches `tenant`'s blocks.
    pub async fn search(
        &self,
        tenant: &str,
        search: &BlockSearch,
    ) -> Result<BlockSearchResult, BlocksError> {
        observatory_schemas::tenant::validate(tenant)?;
        let folder = tenant_folder(tenant).to_owned();
        let _permit = self.lookup_permit(&folder)?;
        let listed = self.blocks(&folder).await?;
        let order = search.order;
        let mut blocks: Vec<BlockInfo> = listed
            .iter()
            .filter(|b| b.end_ns >= search.from_ns && b.start_ns < search.to_ns)
            .filter(|b| may_follow(b, order, search.after.as_ref()))
            .cloned()
            .collect();
        if order.key == SortKey::StartTime && !order.descending {
            blocks.sort_by(|a, b| a.start_ns.cmp(&b.start_ns).then(a.id.cmp(&b.id)));
        }
        let plan = Arc::new(Plan::new(
            &search.filter,
            &search.selected,
            search.span_sets.is_some(),
        ));
        let budget = Budget::new(self.inner.search_max_bytes);
        let mut result = BlockSearchResult {
            blocks: blocks.len() as u32,
            block_bytes: blocks.iter().map(|b| b.size).sum(),
            complete: true,
            ..Default::default()
        };
        let mut found: HashMap<[u8; 16], BlockHit> = HashMap::new();
        let mut searched = vec![false; blocks.len()];
        let by_start = order.key == SortKey::StartTime;
        // Blocks in flight: 2 at first, twice as many after each block
        // read, up to BLOCKS_SEARCH_CONCURRENCY; a search that stops after
        // its first blocks (a page of the newest traces) does not start
        // the next thirty. Boxed, so the handler's future stays Send.
        type Task<'t> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = (usize, Result<Outcome, BlocksError>)> + Send + 't,
            >,
        >;
        let task = |i: usize| -> Task<'_> {
            let (folder, plan, budget, b) = (&folder, plan.clone(), &budget, blocks[i].clone());
            Box::pin(async move { (i, self.search_block(folder, &b, plan, search, budget).await) })
        };
        let mut outcomes = futures::stream::FuturesOrdered::new();
        let (mut next, mut window) = (0usize, 2usize);
        loop {
            while outcomes.len() < window && next < blocks.len() {
                outcomes.push_back(task(next));
                next += 1;
            }
            let Some((i, outcome)) = outcomes.next().await else {
                break;
            };
            window = (window * 2).min(self.inner.search_concurrency);
            let outcome = match outcome {
                Ok(o) => o,
                // Deleted since the listing (retention, compaction).
                Err(BlocksError::Store(object_store::Error::NotFound { .. })) => {
                    self.forget(&folder);
                    Outcome {
                        complete: true,
                        ..Default::default()
                    }
                }
                Err(e) => return Err(e),
            };
            searched[i] = outcome.complete;
            result.inspected_traces += outcome.traces;
            result.inspected_spans += outcome.spans;
            for hit in outcome.hits {
                if search.after.as_ref().is_some_and(|c| {
                    c.position_cmp(&Cursor::of(order, &hit.keys(), hit.trace_id))
                        .is_ge()
                }) {
                    continue;
                }
                match found.get_mut(&hit.trace_id) {
                    Some(known) => known.absorb(hit, search.span_sets),
                    None => {
                        found.insert(hit.trace_id, hit);
                    }
                }
            }
            if budget.refused() {
                break;
            }
            // Ordered by start, blocks come in that order: stop once no
            // later block can hold a trace that would make the page.
            if by_start && found.len() >= search.limit {
                if let (Some(worst), Some(next)) = (
                    kth(&found, order, search.limit).map(|c| c.start_us()),
                    blocks.get(i + 1),
                ) {
                    let worst = worst.unwrap_or_default();
                    let done = if order.descending {
                        ns_to_us_floor(next.end_ns) < worst
                    } else {
                        ns_to_us_floor(next.start_ns) > worst
                    };
                    if done {
                        searched[i + 1..].iter_mut().for_each(|s| *s = true);
                        break;
                    }
                }
            }
            // Keep memory bounded: only the best `limit` can be answered.
            if found.len() > 4 * search.limit.max(64) {
                prune(&mut found, order, search.limit);
            }
        }
        drop(outcomes);
        result.blocks_unsearched = searched.iter().filter(|s| !**s).count() as u32;
        result.complete = result.blocks_unsearched == 0;
        let mut hits: Vec<(Cursor, BlockHit)> = found
            .into_values()
            .map(|h| (Cursor::of(order, &h.keys(), h.trace_id), h))
            .collect();
        hits.sort_by(|a, b| a.0.position_cmp(&b.0));
        if !result.complete && by_start {
            // Complete up to the first position an unsearched block can hold.
            let bound = blocks
                .iter()
                .zip(&searched)
                .filter(|(_, s)| !**s)
                .map(|(b, _)| {
                    if order.descending {
                        ns_to_us_floor(b.end_ns)
                    } else {
                        ns_to_us_floor(b.start_ns)
                    }
                })
                .reduce(|a, b| if order.descending { a.max(b) } else { a.min(b) });
            if let Some(bound) = bound {
                let id = if order.descending {
                    [0xff; 16]
                } else {
                    [0; 16]
                };
                let frontier = Cursor::of(
                    order,
                    &Keys {
                        start_us: bound,
                        ..Keys::default()
                    },
                    id,
                );
                hits.retain(|(c, _)| {
                    let us = c.start_us().unwrap_or_default();
                    if order.descending {
                        us > bound
                    } else {
                        us < bound
                    }
                });
                result.frontier = Some(frontier);
            }
        }
        hits.truncate(search.limit);
        result.hits = hits.into_iter().map(|(_, h)| h).collect();
        result.bytes_read = budget.used();
        Ok(result)
    }

    /// One block's part of a search.
    async fn search_block(
        &self,
        folder: &str,
        block: &BlockInfo,
        plan: Arc<Plan>,
        search: &BlockSearch,
        budget: &Budget,
    ) -> Result<Outcome, BlocksError> {
        let Some((len, footer)) = self.footer(folder, block, budget).await? else {
            return Ok(Outcome::default());
        };
        let read = |source| BlocksError::Read {
            block: block.id.clone(),
            source,
        };
        let path = Path::from(format!("{folder}/{}/{DATA}", block.id));
        let (from, to) = (search.from_ns, search.to_ns);
        let mut groups: Vec<usize> = (0..footer.num_row_groups())
            .filter(|&g| plan.may_match(footer.row_group(g), from, to))
            .collect();
        // Dictionary pages: a value every match needs, absent, rules a row group out.
        let checks: Vec<(usize, Vec<Check>)> = groups
            .iter()
            .map(|&g| (g, plan.dictionary_checks(footer.row_group(g))))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if !checks.is_empty() {
            let ranges: Vec<std::ops::Range<u64>> = checks
                .iter()
                .flat_map(|(_, c)| c.iter().map(|(_, r)| r.clone()))
                .collect();
            let Some(parts) = self.fetch(&path, ranges, 0, budget).await? else {
                return Ok(Outcome::default());
            };
            let footer_c = footer.clone();
            let ruled_out: Vec<usize> = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for (g, needs) in checks {
                    let rg = footer_c.row_group(g);
                    for (need, range) in needs {
                        let Some(bytes) = slice(&parts, &range) else {
                            continue;
                        };
                        let values = scan::dictionary(rg, need.leaf, range.start, bytes, len)?;
                        if !values.iter().any(|v| v[..] == need.value[..]) {
                            out.push(g);
                            break;
                        }
                    }
                }
                Ok::<_, scan::ReadError>(out)
            })
            .await?
            .map_err(read)?;
            groups.retain(|g| !ruled_out.contains(g));
        }
        // Row groups of a block in parallel too: a large compacted block
        // holds dozens, and each is two round trips to the store.
        let file = DataFile {
            block: &block.id,
            path: &path,
            footer: &footer,
            len,
        };
        let mut results = futures::stream::iter(groups)
            .map(|g| self.search_group(&file, g, plan.clone(), search, budget))
            .buffer_unordered(GROUP_CONCURRENCY);
        let mut outcome = Outcome {
            complete: true,
            ..Default::default()
        };
        while let Some(group) = results.next().await {
            let Some(group) = group? else {
                outcome.complete = false;
                continue;
            };
            outcome.traces += group.traces;
            outcome.spans += group.spans;
            outcome.hits.extend(group.hits);
        }
        Ok(outcome)
    }

    /// One row group's part of a block's search: `None` when the budget
    /// refused its reads.
    async fn search_group(
        &self,
        file: &DataFile<'_>,
        g: usize,
        plan: Arc<Plan>,
        search: &BlockSearch,
        budget: &Budget,
    ) -> Result<Option<Outcome>, BlocksError> {
        let read = |source| BlocksError::Read {
            block: file.block.to_owned(),
            source,
        };
        let (len, rg) = (file.len, file.footer.row_group(g));
        let (from, to) = (search.from_ns, search.to_ns);
        let Some(parts) = self
            .fetch_chunks(file.path, rg, &plan.filter_leaves, budget)
            .await?
        else {
            return Ok(None);
        };
        let (footer, plan_c) = (file.footer.clone(), plan.clone());
        let (group, matches, spans) = tokio::task::spawn_blocking(move || {
            let rg = footer.row_group(g);
            let mut group = Group::new(rg.num_rows() as usize);
            group.add(scan::read_chunks(rg, len, parts, &plan_c.filter_leaves)?);
            let (matches, spans) = group.matches(&plan_c, from, to);
            Ok::<_, scan::ReadError>((group, matches, spans))
        })
        .await?
        .map_err(read)?;
        let mut outcome = Outcome {
            complete: true,
            traces: rg.num_rows() as u64,
            spans,
            hits: Vec::new(),
        };
        if matches.is_empty() {
            return Ok(Some(outcome));
        }
        let Some(parts) = self
            .fetch_chunks(file.path, rg, &plan.output_leaves, budget)
            .await?
        else {
            return Ok(None);
        };
        let footer = file.footer.clone();
        let per_set = search.span_sets.unwrap_or(0);
        outcome.hits = tokio::task::spawn_blocking(move || {
            let mut group = group;
            let rg = footer.row_group(g);
            group.add(scan::read_chunks(rg, len, parts, &plan.output_leaves)?);
            Ok::<_, scan::ReadError>(group.describe(&plan, matches, per_set))
        })
        .await?
        .map_err(read)?;
        Ok(Some(outcome))
    }

    /// The bytes of `ranges` of `path`, once the budget allowed them;
    /// `None` when it did not.
    /// The column chunks of `leaves` in row group `rg`, as [`Self::fetch`].
    async fn fetch_chunks(
        &self,
        path: &Path,
        rg: &parquet::file::metadata::RowGroupMetaData,
        leaves: &[usize],
        budget: &Budget,
    ) -> Result<Option<Vec<(u64, bytes::Bytes)>>, BlocksError> {
        let ranges = leaves.iter().map(|&l| scan::chunk_range(rg, l)).collect();
        self.fetch(path, ranges, RANGE_GAP, budget).await
    }

    async fn fetch(
        &self,
        path: &Path,
        ranges: Vec<std::ops::Range<u64>>,
        gap: u64,
        budget: &Budget,
    ) -> Result<Option<Vec<(u64, bytes::Bytes)>>, BlocksError> {
        let merged = merge_ranges(ranges, gap);
        let bytes: u64 = merged.iter().map(|r| r.end - r.start).sum();
        if bytes == 0 {
            return Ok(Some(Vec::new()));
        }
        if !budget.reserve(bytes) {
            return Ok(None);
        }
        Ok(Some(self.get_ranges(path, merged, 0).await?))
    }
}

/// The bytes of `range` from fetched parts.
fn slice(parts: &[(u64, bytes::Bytes)], range: &std::ops::Range<u64>) -> Option<bytes::Bytes> {
    parts.iter().find_map(|(start, b)| {
        let end = start + b.len() as u64;
        (*start <= range.start && range.end <= end)
            .then(|| b.slice((range.start - start) as usize..(range.end - start) as usize))
    })
}

/// The position of the `k`-th best of `found` in `order`.
fn kth(found: &HashMap<[u8; 16], BlockHit>, order: Order, k: usize) -> Option<Cursor> {
    if k == 0 || found.len() < k {
        return None;
    }
    let mut positions: Vec<Cursor> = found
        .values()
        .map(|h| Cursor::of(order, &h.keys(), h.trace_id))
        .collect();
    positions.sort_by(|a, b| a.position_cmp(b));
    positions.into_iter().nth(k - 1)
}

/// Keeps the best `k` of `found`.
fn prune(found: &mut HashMap<[u8; 16], BlockHit>, order: Order, k: usize) {
    let Some(worst) = kth(found, order, k) else {
        return;
    };
    found.retain(|_, h| {
        Cursor::of(order, &h.keys(), h.trace_id)
            .position_cmp(&worst)
            .is_le()
    });
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{block, kv, kv_int, kv_str, put, service_spans, span};
    use super::*;
    use crate::tempo_api::traceql;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;
    use observatory_schemas::otlp::common::{any_value::Value as Any, AnyValue, ArrayValue};
    use observatory_schemas::otlp::trace::{ResourceSpans, Status};
    use std::time::Duration;

    const T: u64 = 1_750_000_000_000_000_000;
    const S: u64 = 1_000_000_000;

    fn with(
        mut s: observatory_schemas::otlp::trace::Span,
        f: impl FnOnce(&mut observatory_schemas::otlp::trace::Span),
    ) -> observatory_schemas::otlp::trace::Span {
        f(&mut s);
        s
    }

    /// t1 (support-bot, 2 s, an error model call, in both blocks), t2
    /// (other-svc, 100 ms, healthy), t3 (support-bot, newer, a tool call).
    async fn bucket() -> (Blocks, Arc<dyn ObjectStore>) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let res = || {
            vec![
                kv_str("deployment.environment", "prod"),
                kv_str("k8s.pod.name", "pod-1"),
            ]
        };
        let t1: Vec<ResourceSpans> = service_spans(
            "support-bot",
            res(),
            vec![
                with(span(1, 1, None, T, vec![kv_str("user.id", "u-1")]), |s| {
                    s.name = "agent run".into();
                    s.end_time_unix_nano = T + 2 * S;
                }),
                with(
                    span(
                        1,
                        2,
                        Some(1),
                        T + S / 2,
                        vec![
                            kv_str("gen_ai.request.model", "gpt-4o"),
                            kv_int("gen_ai.usage.input_tokens", 1000),
                            kv_str("http.method", "GET"),
                        ],
                    ),
                    |s| {
                        s.name = "chat gpt-4o".into();
                        s.kind = 3;
                        s.end_time_unix_nano = T + S;
                        s.status = Some(Status {
                            code: 2,
                            message: "rate limited".into(),
                        });
                    },
                ),
            ],
        );
        let t2 = service_spans(
            "other-svc",
            vec![],
            vec![with(
                span(2, 9, None, T + 10 * S, vec![kv_str("tier", "gold")]),
                |s| {
                    s.name = "health".into();
                    s.end_time_unix_nano = T + 10 * S + S / 10;
                },
            )],
        );
        let t1_late = service_spans(
            "support-bot",
            res(),
            vec![with(span(1, 3, Some(1), T + S, vec![]), |s| {
                s.name = "late".into()
            })],
        );
        let t3 = service_spans(
            "support-bot",
            vec![],
            vec![
                with(span(3, 1, None, T + 60 * S, vec![]), |s| {
                    s.name = "agent run".into()
                }),
                with(
                    span(
                        3,
                        2,
                        Some(1),
                        T + 60 * S,
                        vec![
                            kv("flag", Any::BoolValue(true)),
                            kv("ratio", Any::DoubleValue(0.5)),
                            kv(
                                "tags",
                                Any::ArrayValue(ArrayValue {
                                    values: ["a", "b"]
                                        .iter()
                                        .map(|v| AnyValue {
                                            value: Some(Any::StringValue((*v).into())),
                                        })
                                        .collect(),
                                }),
                            ),
                        ],
                    ),
                    |s| s.name = "execute_tool search".into(),
                ),
            ],
        );
        put(
            &store,
            &block("acme", 0, vec![([1; 16], t1), ([2; 16], t2)], None),
            true,
        )
        .await;
        put(
            &store,
            &block("acme", 10, vec![([1; 16], t1_late), ([3; 16], t3)], None),
            true,
        )
        .await;
        (
            Blocks::with_store(store.clone(), Duration::from_secs(60), 1 << 20),
            store,
        )
    }

    fn search(filter: TraceFilter) -> BlockSearch {
        BlockSearch {
            from_ns: 0,
            to_ns: i64::MAX,
            filter,
            order: Order {
                key: SortKey::StartTime,
                descending: true,
            },
            after: None,
            limit: 10,
            span_sets: None,
            selected: Vec::new(),
        }
    }

    fn traceql(q: &str) -> TraceFilter {
        let q = traceql::parse(q).unwrap();
        TraceFilter {
            spans: q.spans.as_ref().map(crate::tempo_api::store::span_filter),
            trace_level: q.traces,
            ..TraceFilter::default()
        }
    }

    async fn ids(blocks: &Blocks, s: &BlockSearch) -> Vec<u8> {
        let r = blocks.search("acme", s).await.unwrap();
        assert!(r.complete);
        r.hits.iter().map(|h| h.trace_id[0]).collect()
    }

    #[tokio::test]
    async fn every_condition_the_postgresql_searches_have() {
        let (blocks, _) = bucket().await;
        let all = ids(&blocks, &search(TraceFilter::default())).await;
        assert_eq!(all, vec![3, 2, 1], "newest first");
        let service = TraceFilter {
            service: Some("support-bot".into()),
            ..TraceFilter::default()
        };
        assert_eq!(ids(&blocks, &search(service)).await, vec![3, 1]);
        let error = TraceFilter {
            status: Some(2),
            ..TraceFilter::default()
        };
        assert_eq!(ids(&blocks, &search(error)).await, vec![1]);
        let unset = TraceFilter {
            status: Some(0),
            ..TraceFilter::default()
        };
        assert_eq!(ids(&blocks, &search(unset)).await, vec![3, 2, 1]);
        let long = TraceFilter {
            min_duration_ns: Some(S as i64),
            ..TraceFilter::default()
        };
        assert_eq!(ids(&blocks, &search(long)).await, vec![1]);
        let short = TraceFilter {
            max_duration_ns: Some(S as i64 / 2),
            ..TraceFilter::default()
        };
        // Trace-level conditions are judged per block: t1's later part
        // alone lasts 1 ms (documented: a trace cut over blocks).
        assert_eq!(ids(&blocks, &search(short)).await, vec![3, 2, 1]);
        for (q, expected) in [
            (r#"{ name = "health" }"#, vec![2]),
            (
                r#"{ resource.service.name = "support-bot" && status = error }"#,
                vec![1],
            ),
            (r#"{ span.gen_ai.request.model = "gpt-4o" }"#, vec![1]),
            (r#"{ span.gen_ai.request.model =~ "gpt-.*" }"#, vec![1]),
            (r#"{ span.gen_ai.usage.input_tokens > 500 }"#, vec![1]),
            (r#"{ span.gen_ai.usage.input_tokens = "1000" }"#, vec![1]),
            (r#"{ span.http.method = "GET" }"#, vec![1]),
            (r#"{ resource.k8s.pod.name = "pod-1" }"#, vec![1]),
            (
                r#"{ .deployment.environment = "prod" && name = "late" }"#,
                vec![1],
            ),
            (r#"{ .flag = true }"#, vec![3]),
            (r#"{ span.ratio >= 0.5 && span.ratio < 1 }"#, vec![3]),
            (r#"{ span.tags = "[\"a\", \"b\"]" }"#, vec![3]),
            (r#"{ span.tier != "gold" }"#, vec![]),
            (r#"{ span.missing != "x" }"#, vec![]),
            (r#"{ kind = client && duration >= 500ms }"#, vec![1]),
            (r#"{ span:id = "0909090909090909" }"#, vec![2]),
            (r#"{ span:parentID = "0101010101010101" }"#, vec![3, 1]),
            (
                r#"{ trace:id = "03030303030303030303030303030303" }"#,
                vec![3],
            ),
            (r#"{ statusMessage = "rate limited" }"#, vec![1]),
            (r#"{ rootServiceName = "other-svc" }"#, vec![2]),
            (r#"{ traceDuration > 1s }"#, vec![1]),
            (
                r#"{ name = "agent run" || name = "health" }"#,
                vec![3, 2, 1],
            ),
            (r#"{ name = "nope" }"#, vec![]),
        ] {
            assert_eq!(ids(&blocks, &search(traceql(q))).await, expected, "{q}");
        }
    }

    #[tokio::test]
    async fn a_split_trace_is_one_answer_with_its_parts_merged() {
        let (blocks, _) = bucket().await;
        let service = TraceFilter {
            service: Some("support-bot".into()),
            ..TraceFilter::default()
        };
        let r = blocks.search("acme", &search(service)).await.unwrap();
        let t1 = r.hits.iter().find(|h| h.trace_id == [1; 16]).unwrap();
        assert_eq!(t1.span_count, 3);
        assert_eq!(t1.error_count, 1);
        assert_eq!(t1.root_name.as_deref(), Some("agent run"));
        assert_eq!(t1.root_service.as_deref(), Some("support-bot"));
        assert_eq!(t1.start_ns, T as i64);
        assert_eq!(t1.end_ns, (T + 2 * S) as i64);
        assert_eq!(t1.services, vec!["support-bot".to_owned()]);
    }

    #[tokio::test]
    async fn span_sets_describe_the_matching_spans() {
        let (blocks, _) = bucket().await;
        let mut s = search(traceql(r#"{ resource.service.name = "support-bot" }"#));
        s.span_sets = Some(2);
        s.selected = vec![("service.name".into(), Whose::Resource)];
        let r = blocks.search("acme", &s).await.unwrap();
        let t1 = r.hits.iter().find(|h| h.trace_id == [1; 16]).unwrap();
        assert_eq!(t1.matched, 3);
        assert_eq!(t1.spans.len(), 2);
        assert_eq!(t1.spans[0].name, "agent run");
        assert_eq!(t1.spans[0].span_id, vec![1; 8]);
        assert_eq!(t1.spans[1].name, "chat gpt-4o");
        assert_eq!(t1.spans[1].duration_ns, S / 2);
        assert_eq!(
            t1.spans[0].attributes,
            vec![("service.name".to_owned(), serde_json::json!("support-bot"))]
        );
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_and_the_window() {
        let (blocks, _) = bucket().await;
        let mut s = search(TraceFilter::default());
        s.limit = 1;
        let first = blocks.search("acme", &s).await.unwrap();
        assert_eq!(first.hits[0].trace_id, [3; 16]);
        s.after = Some(Cursor::of(
            s.order,
            &first.hits[0].keys(),
            first.hits[0].trace_id,
        ));
        let second = blocks.search("acme", &s).await.unwrap();
        assert_eq!(second.hits[0].trace_id, [2; 16]);
        let mut window = search(TraceFilter::default());
        window.from_ns = (T + 5 * S) as i64;
        window.to_ns = (T + 30 * S) as i64;
        assert_eq!(ids(&blocks, &window).await, vec![2]);
        let mut asc = search(TraceFilter::default());
        asc.order.descending = false;
        assert_eq!(ids(&blocks, &asc).await, vec![1, 2, 3]);
        let mut by_duration = search(TraceFilter::default());
        by_duration.order.key = SortKey::Duration;
        assert_eq!(ids(&blocks, &by_duration).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn statistics_and_dictionaries_spare_reading_the_columns() {
        let (blocks, _) = bucket().await;
        // Footers are kept by the first search.
        blocks
            .search("acme", &search(TraceFilter::default()))
            .await
            .unwrap();
        let hit = blocks
            .search(
                "acme",
                &search(traceql(r#"{ span.gen_ai.request.model = "gpt-4o" }"#)),
            )
            .await
            .unwrap();
        // Between min and max of the column, absent from its dictionary.
        let miss = blocks
            .search(
                "acme",
                &search(traceql(r#"{ span.gen_ai.request.model = "gpt-4" }"#)),
            )
            .await
            .unwrap();
        assert_eq!(miss.hits.len(), 0);
        assert!(
            miss.bytes_read * 3 < hit.bytes_read,
            "dictionary pages only: {} vs {}",
            miss.bytes_read,
            hit.bytes_read
        );
        // Outside the window: nothing read.
        let mut outside = search(TraceFilter::default());
        outside.to_ns = 10;
        let r = blocks.search("acme", &outside).await.unwrap();
        assert_eq!((r.blocks, r.bytes_read), (0, 0));
    }

    #[tokio::test]
    async fn the_byte_budget_stops_a_search_and_says_how_far_it_is_complete() {
        let (blocks, store) = bucket().await;
        let mut s = search(TraceFilter::default());
        s.limit = 10;
        let all = blocks.search("acme", &s).await.unwrap();
        assert!(all.complete);
        // Half of what the whole search reads.
        let half = all.bytes_read / 2;
        let blocks =
            Blocks::with_store(store, Duration::from_secs(60), 1 << 20).with_search_budget(half, 1);
        let r = blocks.search("acme", &s).await.unwrap();
        assert!(!r.complete);
        assert!(r.bytes_read <= half, "{} of {half}", r.bytes_read);
        assert!(r.blocks_unsearched >= 1);
        let frontier = r.frontier.expect("ordered by start: a frontier");
        for h in &r.hits {
            let c = Cursor::of(s.order, &h.keys(), h.trace_id);
            assert!(c.position_cmp(&frontier).is_lt());
        }
        let none = Blocks::with_store(Arc::new(InMemory::new()), Duration::ZERO, 1)
            .with_search_budget(0, 2);
        assert!(
            none.search("acme", &s).await.unwrap().complete,
            "nothing to read"
        );
    }
}
