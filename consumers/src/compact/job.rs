//! One compaction job: input blocks merged into output blocks.
//!
//! What it guarantees:
//! - Every trace of every input is in exactly one output, all of its spans
//!   from every input combined into one row, each span once (by span id,
//!   as Tempo's combiner), rows in ascending trace id order; an output is
//!   cut when its `data.parquet` passes the target size, between traces.
//! - Memory is bounded by the row group size, not the block size: each
//!   input is read one row group at a time by byte range, rows decoded
//!   as they are merged; each output's `data.parquet` is streamed to the
//!   store as a multipart upload while it is written.
//! - A trace found in one input only (most of them) is copied into the
//!   output column by column, as that input holds it
//!   (`BlockWriter::push_copied`); only a trace found in several inputs is
//!   decoded to OTLP and merged. Traces are staged in batches (at most
//!   4 096 traces or 16 MiB) so that the parts to merge are decoded
//!   together, from one small parquet file, not one file each. An input of
//!   another schema than ours (another writer's) is read as records, every
//!   trace decoded.
//! - Outputs are written as the sink writes blocks: an id taken by a
//!   create-only claim, `meta.json` last. Ids are deterministic
//!   ([`observatory_schemas::tempo::compaction`]), and each output carries
//!   its job's record and inputs before its `meta.json`: a job run again
//!   after a crash finds its complete outputs and goes on after the last
//!   trace they hold, instead of writing second copies.
//! - An output id another writer claimed and is still writing makes the
//!   job stop ([`JobError::Busy`]); one abandoned (claimed by this
//!   compactor's identity before a restart, or older than the claim
//!   timeout) is skipped for the next attempt id.
//!
//! The job runs on a blocking thread and waits on the store through the
//! runtime handle it is given; the caller marks the inputs compacted once
//! [`run`] returns.

use crate::tempo::store::{BlockStore, Claim};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use observatory_schemas::otlp::trace::ResourceSpans;
use observatory_schemas::tempo::columns::{Columns, RowCursor};
use observatory_schemas::tempo::compaction::{from_name, output_id, Record};
use observatory_schemas::tempo::meta::{BlockMeta, Source, CLAIM, DATA, META};
use observatory_schemas::tempo::ranged::Footer;
use observatory_schemas::tempo::read::{DataFile, ReadError, Trace};
use observatory_schemas::tempo::rows::{
    decode_footer, footer_range, row_group_range, CopiedRow, RowGroupColumns, RowGroupTraces,
};
use observatory_schemas::tempo::trace::TraceRow;
use observatory_schemas::tempo::write::{rows_file, schema_columns, BlockError, BlockWriter};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::runtime::Handle;
use uuid::Uuid;

/// Why a job stopped.
#[derive(Debug, Error)]
pub enum JobError {
    /// The store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An input block could not be read.
    #[error("input block {block}: {source}")]
    Input {
        /// The block.
        block: Uuid,
        /// Why.
        source: ReadError,
    },
    /// An output could not be encoded.
    #[error("writing an output block: {0}")]
    Output(#[from] BlockError),
    /// The parts of merged traces, set aside, could not be read back.
    #[error("reading back the parts of merged traces: {0}")]
    Merge(ReadError),
    /// Another compactor is writing this job's output.
    #[error("output {0} is being written by {1}")]
    Busy(Uuid, String),
    /// An output of this job appeared complete after the listing the job
    /// was planned from; the next cycle resumes from a fresh listing.
    #[error("output {0} was completed by another run")]
    Raced(Uuid),
}

/// What a job is given.
pub struct JobSpec {
    /// The tenant folder.
    pub tenant: String,
    /// The job's id.
    pub job: Uuid,
    /// Input metas.
    pub inputs: Vec<BlockMeta>,
    /// The inputs' source records, merged.
    pub sources: Vec<Source>,
    /// Outputs an earlier run completed, by index.
    pub done: Vec<(Uuid, Record)>,
    /// Cut outputs at this size.
    pub target_bytes: u64,
    /// Parquet row group size.
    pub row_group_bytes: usize,
    /// Parquet page size.
    pub page_bytes: usize,
    /// Who this compactor is (in claims).
    pub identity: String,
    /// When another writer's claim counts as abandoned.
    pub claim_timeout: Duration,
}

/// What a job did.
#[derive(Debug, Default)]
pub struct JobReport {
    /// Metas of the outputs written by this run.
    pub outputs: Vec<BlockMeta>,
    /// Traces written.
    pub traces: u64,
    /// Spans written.
    pub spans: u64,
    /// Bytes read from the inputs.
    pub bytes_read: u64,
    /// Bytes of output objects written.
    pub bytes_written: u64,
}

/// One input block being read.
struct Input {
    meta: BlockMeta,
    path: Path,
    footer_start: u64,
    footer_bytes: Bytes,
    footer: Footer,
    next_group: usize,
    rows: Rows,
}

/// The current row group of an input.
enum Rows {
    /// None left, or the next one not read yet.
    None,
    /// Our schema: rows copied column by column.
    Columns(RowGroupColumns),
    /// Another schema: rows decoded as records; the next one, when read.
    Records(RowGroupTraces, Option<Trace>),
}

/// Reads and writes through the runtime from the job's blocking thread.
struct Io<'a> {
    handle: &'a Handle,
    store: Arc<dyn ObjectStore>,
    blocks: &'a BlockStore,
    bytes_read: u64,
}

impl Io<'_> {
    fn range(
        &mut self,
        path: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, object_store::Error> {
        let bytes = self.handle.block_on(self.store.get_range(path, range))?;
        self.bytes_read += bytes.len() as u64;
        Ok(bytes)
    }
}

impl Input {
    fn open(io: &mut Io<'_>, tenant: &str, meta: BlockMeta) -> Result<Input, JobError> {
        let path = Path::from(format!("{tenant}/{}/{DATA}", meta.block_id));
        let range = footer_range(&meta);
        let footer_bytes = io.range(&path, range.clone())?;
        let footer = decode_footer(&footer_bytes).map_err(|source| JobError::Input {
            block: meta.block_id,
            source,
        })?;
        Ok(Input {
            meta,
            path,
            footer_start: range.start,
            footer_bytes,
            footer,
            next_group: 0,
            rows: Rows::None,
        })
    }

    /// How a read error of this input is reported.
    fn error(&self) -> impl Fn(ReadError) -> JobError + Copy + use<> {
        let block = self.meta.block_id;
        move |source| JobError::Input { block, source }
    }

    /// The id of the next trace, reading the next row group when this one
    /// is done; `None` when the input is.
    fn head(&mut self, io: &mut Io<'_>) -> Result<Option<[u8; 16]>, JobError> {
        let error = self.error();
        loop {
            match &mut self.rows {
                Rows::Columns(rows) => {
                    if let Some(head) = rows.head().map_err(error)? {
                        return Ok(Some(head.id));
                    }
                }
                Rows::Records(rows, next) => {
                    if next.is_none() {
                        *next = rows.next().transpose().map_err(error)?;
                    }
                    if let Some((id, _)) = next {
                        return Ok(Some(*id));
                    }
                }
                Rows::None => {}
            }
            if self.next_group >= self.footer.num_row_groups() {
                self.rows = Rows::None;
                return Ok(None);
            }
            let group = self.next_group;
            let range = row_group_range(&self.footer, group);
            let bytes = io.range(&self.path, range.clone())?;
            let (len, footer) = (self.meta.size, self.footer_bytes.clone());
            self.rows = match RowGroupColumns::new(
                len,
                self.footer_start,
                footer.clone(),
                group,
                range.start,
                bytes.clone(),
            ) {
                Ok(rows) => Rows::Columns(rows),
                Err(ReadError::Shape(_)) => Rows::Records(
                    RowGroupTraces::new(len, self.footer_start, footer, group, range.start, bytes)
                        .map_err(error)?,
                    None,
                ),
                Err(e) => return Err(error(e)),
            };
            self.next_group += 1;
        }
    }

    /// Stages the next trace, found in this input only, for the output.
    fn stage_copy(&mut self, batch: &mut Batch) -> Result<(), JobError> {
        let error = self.error();
        match &mut self.rows {
            Rows::Columns(rows) => {
                let head = rows.head().map_err(error)?.expect("head saw a row");
                let before = batch.copies.buffered_bytes();
                let spans = rows.copy_row(Some(&mut batch.copies)).map_err(error)?;
                let bytes = batch.copies.buffered_bytes() - before;
                batch
                    .entries
                    .push(Entry::Copy(CopiedRow { head, bytes }, spans));
            }
            Rows::Records(_, next) => {
                let (id, spans) = next.take().expect("head read it");
                batch.entries.push(Entry::Merge {
                    id,
                    parts: vec![Part::Decoded(spans)],
                });
            }
            Rows::None => unreachable!("stage after head said none"),
        }
        Ok(())
    }

    /// Sets the next trace aside as one part of a trace to merge.
    fn stage_part(&mut self, batch: &mut Batch) -> Result<Part, JobError> {
        let error = self.error();
        match &mut self.rows {
            Rows::Columns(rows) => {
                rows.copy_row(Some(&mut batch.parts)).map_err(error)?;
                Ok(Part::Aside)
            }
            Rows::Records(_, next) => Ok(Part::Decoded(next.take().expect("head read it").1)),
            Rows::None => unreachable!("stage after head said none"),
        }
    }

    /// Moves past the next trace (one an earlier run wrote).
    fn skip(&mut self) -> Result<(), JobError> {
        let error = self.error();
        match &mut self.rows {
            Rows::Columns(rows) => rows.copy_row(None).map(drop).map_err(error),
            Rows::Records(_, next) => {
                *next = None;
                Ok(())
            }
            Rows::None => unreachable!("skip after head said none"),
        }
    }
}

/// The next traces of the output, in order, staged so that the parts of
/// traces to merge are read back from their rows all at once (one small
/// parquet file per batch) rather than one by one.
struct Batch {
    /// Rows of traces found in one input, in output order.
    copies: Columns,
    /// Rows of the parts of traces to merge, in output order.
    parts: Columns,
    entries: Vec<Entry>,
}

/// One staged trace.
enum Entry {
    /// Found in one input: its row in `copies`, and its spans.
    Copy(CopiedRow, u64),
    /// Found in several inputs (or in another writer's input): its parts.
    Merge { id: [u8; 16], parts: Vec<Part> },
}

/// A part of a trace to merge.
enum Part {
    /// Its row is the next one in `parts`.
    Aside,
    /// Decoded already (an input of another schema).
    Decoded(Vec<ResourceSpans>),
}

/// Consecutive staged traces found in one input each.
#[derive(Default)]
struct Run {
    rows: Vec<CopiedRow>,
    spans: Vec<u64>,
}

/// Traces staged before a batch is written out.
const BATCH_TRACES: usize = 4096;

/// Bytes staged before a batch is written out.
const BATCH_BYTES: usize = 16 << 20;

impl Batch {
    fn full(&self) -> bool {
        self.entries.len() >= BATCH_TRACES
            || self.copies.buffered_bytes() + self.parts.buffered_bytes() >= BATCH_BYTES
    }
}

/// `data.parquet` streamed to the store as it is written.
struct Upload<'a> {
    handle: &'a Handle,
    upload: WriteMultipart,
}

impl Write for Upload<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.handle
            .block_on(self.upload.wait_for_capacity(4))
            .map_err(std::io::Error::other)?;
        self.upload.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An output block being written.
struct Output<'a> {
    id: Uuid,
    index: u32,
    writer: BlockWriter<Upload<'a>>,
}

/// Runs `spec` to the end: every output written. Marking the inputs is the
/// caller's.
pub fn run(handle: &Handle, blocks: &BlockStore, spec: &JobSpec) -> Result<JobReport, JobError> {
    let mut io = Io {
        handle,
        store: blocks.object_store(),
        blocks,
        bytes_read: 0,
    };
    let report = JobReport::default();
    // Complete outputs of an earlier run, in order: go on after the last.
    let mut next_index = 1;
    let mut resume_after: Option<[u8; 16]> = None;
    for (_, record) in &spec.done {
        if record.index != next_index {
            break;
        }
        if record.last_output {
            return Ok(report);
        }
        resume_after = Some(record.last_id);
        next_index += 1;
    }
    let level = spec
        .inputs
        .iter()
        .map(|m| m.compaction_level)
        .max()
        .unwrap_or(0)
        + 1;
    let estimate: u64 = spec
        .inputs
        .iter()
        .map(|m| m.total_objects.max(0) as u64)
        .sum();

    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for meta in &spec.inputs {
        inputs.push(Input::open(&mut io, &spec.tenant, meta.clone())?);
    }
    let mut heap = BinaryHeap::new();
    for (i, input) in inputs.iter_mut().enumerate() {
        if let Some(id) = input.head(&mut io)? {
            heap.push(Reverse((id, i)));
        }
    }

    let mut outputs = Outputs {
        current: None,
        next_index,
        level,
        estimate,
        report,
    };
    let mut batch = Batch {
        copies: schema_columns(),
        parts: schema_columns(),
        entries: Vec::new(),
    };
    while let Some(Reverse((id, first))) = heap.pop() {
        let mut from = vec![first];
        while let Some(Reverse((next, i))) = heap.peek().copied() {
            if next != id {
                break;
            }
            heap.pop();
            from.push(i);
        }
        if resume_after.is_some_and(|after| id <= after) {
            for &i in &from {
                inputs[i].skip()?;
            }
        } else if let [only] = from[..] {
            inputs[only].stage_copy(&mut batch)?;
        } else {
            let mut parts = Vec::with_capacity(from.len());
            for &i in &from {
                parts.push(inputs[i].stage_part(&mut batch)?);
            }
            batch.entries.push(Entry::Merge { id, parts });
        }
        if batch.full() {
            outputs.write(&mut io, spec, &mut batch)?;
        }
        for &i in &from {
            if let Some(next) = inputs[i].head(&mut io)? {
                heap.push(Reverse((next, i)));
            }
        }
    }
    outputs.write(&mut io, spec, &mut batch)?;
    let Outputs {
        current,
        level,
        mut report,
        ..
    } = outputs;
    if let Some(out) = current {
        finish_output(&mut io, spec, out, level, true, &mut report)?;
    }
    report.bytes_read = io.bytes_read;
    Ok(report)
}

/// The job's outputs: the one being written, and what was written.
struct Outputs<'a> {
    current: Option<Output<'a>>,
    next_index: u32,
    level: u32,
    estimate: u64,
    report: JobReport,
}

impl<'a> Outputs<'a> {
    /// Writes the staged traces into the outputs, in order (opening and
    /// cutting outputs as they fill), and empties the batch.
    fn write(
        &mut self,
        io: &mut Io<'a>,
        spec: &JobSpec,
        batch: &mut Batch,
    ) -> Result<(), JobError> {
        let mut decoded = if batch.parts.buffered_bytes() > 0 {
            rows_file(&mut batch.parts)
                .map_err(ReadError::Parquet)
                .and_then(DataFile::open)
                .and_then(|f| f.all())
                .map_err(JobError::Merge)?
                .into_iter()
        } else {
            Vec::new().into_iter()
        };
        // Consecutive copied traces go to the writer as runs, a leaf range
        // each, not a row at a time.
        let mut cursor = RowCursor::default();
        let mut run = Run::default();
        for entry in batch.entries.drain(..) {
            let (id, parts) = match entry {
                Entry::Copy(row, spans) => {
                    run.rows.push(row);
                    run.spans.push(spans);
                    continue;
                }
                Entry::Merge { id, parts } => (id, parts),
            };
            self.push_run(io, spec, &mut run, &batch.copies, &mut cursor)?;
            let mut spans = Vec::with_capacity(parts.len());
            for part in parts {
                spans.push(match part {
                    Part::Aside => {
                        decoded
                            .next()
                            .ok_or(JobError::Merge(ReadError::Shape(
                                "a part set aside is missing",
                            )))?
                            .1
                    }
                    Part::Decoded(s) => s,
                });
            }
            let batches: Vec<&[ResourceSpans]> = spans.iter().map(Vec::as_slice).collect();
            let Some(row) = TraceRow::merge(id, &batches) else {
                continue;
            };
            self.writer(io, spec)?.push(&row)?;
            self.report.traces += 1;
            self.report.spans += row.spans().count() as u64;
            self.cut_if_full(io, spec)?;
        }
        self.push_run(io, spec, &mut run, &batch.copies, &mut cursor)?;
        batch.copies.clear();
        batch.parts.clear();
        Ok(())
    }

    /// Writes a run of copied traces, cutting outputs where they fill, and
    /// empties it.
    fn push_run(
        &mut self,
        io: &mut Io<'a>,
        spec: &JobSpec,
        run: &mut Run,
        copies: &Columns,
        cursor: &mut RowCursor,
    ) -> Result<(), JobError> {
        let mut at = 0;
        while at < run.rows.len() {
            let n = self
                .writer(io, spec)?
                .push_copied(&run.rows[at..], copies, cursor)?;
            self.report.traces += n as u64;
            self.report.spans += run.spans[at..at + n].iter().sum::<u64>();
            at += n;
            self.cut_if_full(io, spec)?;
        }
        run.rows.clear();
        run.spans.clear();
        Ok(())
    }

    /// Finishes the current output once its `data.parquet` has passed the
    /// target size (checked between traces, so a trace is never cut).
    fn cut_if_full(&mut self, io: &mut Io<'a>, spec: &JobSpec) -> Result<(), JobError> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|out| out.writer.bytes_written() as u64 >= spec.target_bytes);
        if full {
            let out = self.current.take().expect("checked above");
            finish_output(io, spec, out, self.level, false, &mut self.report)?;
        }
        Ok(())
    }

    /// The output being written, opened when there is none.
    fn writer(
        &mut self,
        io: &mut Io<'a>,
        spec: &JobSpec,
    ) -> Result<&mut BlockWriter<Upload<'a>>, JobError> {
        if self.current.is_none() {
            self.current = Some(open_output(io, spec, self.next_index, self.estimate)?);
            self.next_index += 1;
        }
        Ok(&mut self.current.as_mut().expect("opened above").writer)
    }
}

/// Takes the id of output `index` (the first attempt free) and starts its
/// upload.
fn open_output<'a>(
    io: &mut Io<'a>,
    spec: &JobSpec,
    index: u32,
    estimate: u64,
) -> Result<Output<'a>, JobError> {
    let mut attempt = 1;
    let id = loop {
        let id = output_id(spec.job, index, attempt);
        let claim = io
            .handle
            .block_on(io.blocks.claim(&spec.tenant, id, &spec.identity))?;
        if claim == Claim::Won {
            break id;
        }
        let folder = format!("{}/{id}", spec.tenant);
        if io
            .handle
            .block_on(io.store.head(&Path::from(format!("{folder}/{META}"))))
            .is_ok()
        {
            return Err(JobError::Raced(id));
        }
        let claim_path = Path::from(format!("{folder}/{CLAIM}"));
        let (writer, age) = match io.handle.block_on(io.store.get(&claim_path)) {
            Ok(got) => {
                let modified = got.meta.last_modified;
                let text = io.handle.block_on(got.bytes())?;
                let modified = modified.timestamp_nanos_opt().unwrap_or(i64::MAX);
                let age =
                    Duration::from_nanos(super::now_ns().saturating_sub(modified).max(0) as u64);
                (String::from_utf8_lossy(&text).trim().to_owned(), age)
            }
            Err(object_store::Error::NotFound { .. }) => (String::new(), Duration::MAX),
            Err(e) => return Err(e.into()),
        };
        if writer != spec.identity && age < spec.claim_timeout {
            return Err(JobError::Busy(id, writer));
        }
        attempt += 1;
    };
    let path = Path::from(format!("{}/{id}/{DATA}", spec.tenant));
    let upload = io.handle.block_on(io.store.put_multipart(&path))?;
    let upload = Upload {
        handle: io.handle,
        upload: WriteMultipart::new(upload),
    };
    let writer = BlockWriter::to_writer_paged(
        upload,
        estimate.max(1),
        spec.row_group_bytes,
        spec.page_bytes,
    )?;
    Ok(Output { id, index, writer })
}

/// Completes an output: its data upload, blooms, index, records, then
/// `meta.json`.
fn finish_output(
    io: &mut Io<'_>,
    spec: &JobSpec,
    out: Output<'_>,
    level: u32,
    last_output: bool,
    report: &mut JobReport,
) -> Result<(), JobError> {
    let streamed = out.writer.finish_streamed(out.id, &spec.tenant)?;
    io.handle.block_on(streamed.data.upload.finish())?;
    let mut meta = streamed.meta;
    meta.compaction_level = level;
    report.bytes_written += meta.size;
    let folder = format!("{}/{}", spec.tenant, out.id);
    let put = |io: &mut Io<'_>, name: &str, bytes: Bytes| -> Result<u64, object_store::Error> {
        let len = bytes.len() as u64;
        io.handle.block_on(io.store.put(
            &Path::from(format!("{folder}/{name}")),
            PutPayload::from_bytes(bytes),
        ))?;
        Ok(len)
    };
    for (name, bytes) in streamed.objects.iter().filter(|(n, _)| n != META) {
        report.bytes_written += put(io, name, bytes.clone())?;
    }
    for source in &spec.sources {
        put(io, &source.object_name(), Bytes::new())?;
    }
    for input in &spec.inputs {
        put(io, &from_name(input.block_id), Bytes::new())?;
    }
    let record = Record {
        index: out.index,
        last_id: streamed.last_id,
        last_output,
    };
    put(io, &record.object_name(), Bytes::new())?;
    report.bytes_written += put(io, META, Bytes::from(meta.to_json()))?;
    report.outputs.push(meta);
    Ok(())
}
