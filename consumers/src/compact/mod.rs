//! The Tempo block compactor: `observatory-consumer compact`.
//!
//! Each cycle, for every tenant folder of the bucket the Tempo sink writes:
//!
//! 1. one listing of the folder ([`bucket::Tenant::load`]);
//! 2. jobs a crash left unfinished are finished first (their remaining
//!    outputs written, their inputs marked compacted) — [`plan::unfinished`];
//! 3. new jobs are planned by window and level ([`plan::jobs`]) and run
//!    ([`job::run`]): inputs merged into outputs of up to
//!    `TEMPO_COMPACTED_BLOCK_BYTES`, then each input marked compacted
//!    (`meta.compacted.json` written, `meta.json` deleted) so readers skip
//!    it;
//! 4. retention: live blocks whose newest span ended more than
//!    `RETENTION_TRACES_DAYS` (or the tenant's override) ago are marked
//!    compacted;
//! 5. blocks marked compacted `TEMPO_COMPACTED_BLOCK_RETENTION` ago, and
//!    folders a dead writer left without `meta.json`, are deleted;
//! 6. replica 0 writes the tenant index (`index.pb.zst`, `index.json.gz`)
//!    from a fresh listing.
//!
//! What it guarantees, whatever step a crash interrupts:
//! - no trace is lost: an input is marked compacted only after every
//!   output of its job is complete, and deleted only a grace period later
//!   (readers that listed before the mark still find it);
//! - none is doubled for good: output ids are deterministic and each
//!   output names its job and inputs, so a restarted compactor finishes the
//!   same job instead of starting another. Between an output's `meta.json`
//!   and its inputs' marks a trace is briefly in two live blocks; readers
//!   merge a trace's spans across blocks and drop duplicate span ids (ours
//!   and Tempo's do), so they still see each span once;
//! - replicas never work on the same blocks: each (tenant, window) belongs
//!   to one replica by a stable hash of the tenant and window
//!   ([`plan::owner`]) over `COMPACTOR_REPLICAS`, with `COMPACTOR_REPLICA`
//!   (a StatefulSet's ordinal) choosing the share. Hash shards rather than
//!   leases in the bucket, because conditional overwrites (needed to take
//!   over an expired lease) are missing from some S3-compatible servers and
//!   from local folders, and a lease's expiry depends on clocks; a shard
//!   needs neither. The create-only claim on each output id remains, so
//!   two compactors that were given the same share by mistake still never
//!   write one output twice.
//!
//! A Grafana Tempo reading the same bucket must not run its own compactor
//! (backend-worker) on it: two compactors would each merge blocks the other
//! is merging.

pub mod bucket;
pub mod job;
pub mod plan;
pub mod thread;

use crate::admin::{self, Health};
use crate::config::CompactArgs;
use crate::metrics::{BatchLabels, Metrics, ReasonLabels, SinkLabels};
use crate::tempo::store::BlockStore;
use object_store::ObjectStore;
use observatory_schemas::civil::parse_rfc3339_nanos;
use observatory_schemas::tempo::compaction::job_id;
use observatory_schemas::tempo::meta::BlockMeta;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use uuid::Uuid;

const SINK: &str = "compactor";
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Why the compactor could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The bucket cannot be opened.
    #[error(transparent)]
    Store(#[from] crate::tempo::store::StoreError),
    /// A cycle of `COMPACTOR_ONCE` failed.
    #[error("compaction cycle: {0}")]
    Cycle(#[from] object_store::Error),
    /// The admin port cannot be bound.
    #[error("admin server on {addr}: {source}")]
    Admin {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a test stops the process (`COMPACTOR_FAIL_AT`), to prove a crash
/// there loses and doubles nothing. Unset in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the first output of a job is complete, before its inputs are
    /// marked.
    AfterOutput,
    /// After the first input of a job is marked compacted.
    AfterMark,
    /// Half way through deleting a block.
    DuringDelete,
}

impl FailPoint {
    fn from_env() -> Option<FailPoint> {
        match std::env::var("COMPACTOR_FAIL_AT").ok()?.as_str() {
            "after-output" => Some(FailPoint::AfterOutput),
            "after-mark" => Some(FailPoint::AfterMark),
            "during-delete" => Some(FailPoint::DuringDelete),
            _ => None,
        }
    }
}

/// What a cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    /// Jobs run to the end.
    pub jobs: usize,
    /// Input blocks marked compacted.
    pub compacted: usize,
    /// Output blocks written.
    pub written: usize,
    /// Blocks marked by retention.
    pub expired: usize,
    /// Folders deleted.
    pub deleted: usize,
    /// Jobs another compactor held.
    pub busy: usize,
}

impl CycleReport {
    /// Nothing was done (jobs another compactor holds aside).
    pub fn idle(&self) -> bool {
        CycleReport { busy: 0, ..*self } == CycleReport::default()
    }

    fn add(&mut self, o: CycleReport) {
        self.jobs += o.jobs;
        self.compacted += o.compacted;
        self.written += o.written;
        self.expired += o.expired;
        self.deleted += o.deleted;
        self.busy += o.busy;
    }
}

/// The compactor.
pub struct Compactor {
    blocks: BlockStore,
    store: Arc<dyn ObjectStore>,
    args: CompactArgs,
    settings: plan::Settings,
    tenant_days: HashMap<String, u32>,
    identity: String,
    metas: HashMap<Uuid, BlockMeta>,
    metrics: Arc<Metrics>,
    fail: Option<FailPoint>,
    jobs: thread::JobThread,
}

fn abort_at(fail: Option<FailPoint>, point: FailPoint) {
    if fail == Some(point) {
        tracing::error!(?point, "COMPACTOR_FAIL_AT: stopping the process here");
        std::process::abort();
    }
}

impl Compactor {
    /// A compactor for `args` (checked); call it inside the runtime its
    /// jobs will use.
    pub fn new(args: CompactArgs, metrics: Arc<Metrics>) -> Result<Compactor, StartError> {
        args.check()?;
        let blocks = BlockStore::open(&args.store_url(), args.s3_virtual_hosted_style)?;
        let replica = args.replica();
        let settings = plan::Settings {
            window_ns: args.tempo_compaction_window.as_nanos() as i64,
            min_inputs: args.tempo_compaction_min_inputs,
            max_inputs: args.tempo_compaction_max_inputs,
            target_bytes: args.tempo_compacted_block_bytes,
            replicas: args.compactor_replicas,
            replica,
        };
        let identity = format!(
            "compactor {replica}/{} on {}",
            args.compactor_replicas,
            std::env::var("HOSTNAME").unwrap_or_default()
        );
        Ok(Compactor {
            store: blocks.object_store(),
            blocks,
            tenant_days: args.tenant_retention()?.into_iter().collect(),
            args,
            settings,
            identity,
            metas: HashMap::new(),
            metrics,
            fail: FailPoint::from_env(),
            jobs: thread::JobThread::spawn(tokio::runtime::Handle::current()),
        })
    }

    /// Where the blocks are, for logs.
    pub fn description(&self) -> &str {
        &self.blocks.description
    }

    /// One cycle over every tenant.
    pub async fn cycle(&mut self) -> Result<CycleReport, object_store::Error> {
        let mut report = CycleReport::default();
        let (mut live, mut compacted) = (0, 0);
        for tenant in bucket::tenants(&self.store).await? {
            let (r, l, c) = self.tenant(&tenant).await?;
            report.add(r);
            live += l;
            compacted += c;
        }
        let gauge = |reason| {
            self.metrics
                .bucket_blocks
                .get_or_create(&ReasonLabels { sink: SINK, reason })
        };
        gauge("live").set(live);
        gauge("compacted").set(compacted);
        Ok(report)
    }

    fn count(&self, reason: &'static str, n: usize) {
        self.metrics
            .compaction_blocks
            .get_or_create(&ReasonLabels { sink: SINK, reason })
            .inc_by(n as u64);
    }

    /// One cycle over one tenant: (what it did, live and compacted blocks
    /// after it).
    async fn tenant(&mut self, name: &str) -> Result<(CycleReport, i64, i64), object_store::Error> {
        let mut report = CycleReport::default();
        let now = now_ns();
        let t = bucket::Tenant::load(&self.store, name, &mut self.metas).await?;
        let end_of = |m: &BlockMeta| parse_rfc3339_nanos(&m.end_time).unwrap_or(i64::MAX);

        // 1. Jobs a crash left unfinished, then new ones.
        let unfinished = plan::unfinished(name, &t.folders);
        let mut busy: HashSet<Uuid> = unfinished.iter().flat_map(|u| u.inputs.clone()).collect();
        busy.extend(
            unfinished
                .iter()
                .flat_map(|u| u.outputs.iter().map(|(id, _)| *id)),
        );
        let mut specs = Vec::new();
        for u in unfinished {
            let Some(inputs) = u
                .inputs
                .iter()
                .map(|id| t.metas.get(id).cloned())
                .collect::<Option<Vec<BlockMeta>>>()
            else {
                tracing::error!(tenant = name, job = %u.job, "an unfinished job's input has no meta; left alone");
                continue;
            };
            let w = plan::window(
                inputs.iter().map(end_of).min().unwrap_or(0),
                self.settings.window_ns,
            );
            if plan::owner(name, w, self.settings.replicas) == self.settings.replica {
                specs.push((u.job, inputs, u.outputs));
            }
        }
        let live: Vec<plan::Block> = t
            .folders
            .iter()
            .filter(|(id, f)| f.live && !busy.contains(id))
            .filter_map(|(id, _)| {
                let m = t.metas.get(id)?;
                Some(plan::Block {
                    id: *id,
                    level: m.compaction_level,
                    end_ns: end_of(m),
                    size: m.size,
                })
            })
            .collect();
        // Retention: expired blocks are not worth compacting.
        let days = self.tenant_days.get(name).or_else(|| {
            // Our `default` tenant is Tempo's `single-tenant` folder.
            (name == observatory_schemas::tempo::meta::SINGLE_TENANT)
                .then(|| {
                    self.tenant_days
                        .get(observatory_schemas::tenant::DEFAULT_TENANT)
                })
                .flatten()
        });
        let retention_ns =
            i64::from(*days.unwrap_or(&self.args.retention_traces_days)) * NS_PER_DAY;
        let unexpired: Vec<plan::Block> = live
            .iter()
            .filter(|b| b.end_ns >= now.saturating_sub(retention_ns))
            .copied()
            .collect();
        for inputs in plan::jobs(name, &unexpired, &self.settings, now) {
            let metas: Vec<BlockMeta> = inputs
                .iter()
                .filter_map(|id| t.metas.get(id).cloned())
                .collect();
            specs.push((job_id(name, &inputs), metas, Vec::new()));
        }
        for (job, inputs, done) in specs {
            let sources = plan::merged_sources(
                inputs
                    .iter()
                    .filter_map(|m| t.folders.get(&m.block_id))
                    .flat_map(|f| f.sources.iter()),
            );
            let ids: Vec<Uuid> = inputs.iter().map(|m| m.block_id).collect();
            let spec = job::JobSpec {
                tenant: name.to_owned(),
                job,
                inputs,
                sources,
                done,
                target_bytes: self.args.tempo_compacted_block_bytes,
                row_group_bytes: self.args.tempo_row_group_bytes,
                page_bytes: self.args.tempo_compacted_page_bytes,
                identity: self.identity.clone(),
                claim_timeout: self.args.tempo_compaction_claim_timeout,
            };
            match self.run_job(spec).await {
                Ok(Some(done)) => {
                    report.jobs += 1;
                    report.written += done.outputs.len();
                    self.count("written", done.outputs.len());
                    if !done.outputs.is_empty() {
                        abort_at(self.fail, FailPoint::AfterOutput);
                    }
                    for id in &ids {
                        let Some(meta) = t.metas.get(id) else {
                            continue;
                        };
                        if !t.folders.get(id).is_some_and(|f| f.live) {
                            continue;
                        }
                        bucket::mark_compacted(&self.store, name, meta, now_ns()).await?;
                        report.compacted += 1;
                        self.count("compacted", 1);
                        abort_at(self.fail, FailPoint::AfterMark);
                    }
                    busy.extend(ids);
                }
                Ok(None) => report.busy += 1,
                Err(e) => {
                    tracing::error!(tenant = name, %job, error = %e, "compaction job failed; retried next cycle");
                    busy.extend(ids);
                }
            }
        }

        // 2. Retention.
        let still_live: Vec<plan::Block> =
            live.into_iter().filter(|b| !busy.contains(&b.id)).collect();
        for id in plan::expired(name, &still_live, retention_ns, &self.settings, now) {
            if let Some(meta) = t.metas.get(&id) {
                bucket::mark_compacted(&self.store, name, meta, now_ns()).await?;
                report.expired += 1;
                self.count("expired", 1);
            }
        }

        // 3. Deletes.
        let grace = self.args.tempo_compacted_block_retention.as_nanos() as i64;
        let incomplete = self.args.tempo_incomplete_block_retention.as_nanos() as i64;
        for id in plan::deletable(
            name,
            &t.folders,
            &busy,
            grace,
            incomplete,
            &self.settings,
            now,
        ) {
            let folder = &t.folders[&id];
            let half = self.fail == Some(FailPoint::DuringDelete);
            bucket::delete_block(&self.store, folder, half).await?;
            abort_at(self.fail, FailPoint::DuringDelete);
            self.metas.remove(&id);
            report.deleted += 1;
            self.count("deleted", 1);
        }

        // 4. The tenant index, from what is there now.
        let t = if report.idle() {
            t
        } else {
            bucket::Tenant::load(&self.store, name, &mut self.metas).await?
        };
        if self.settings.replica == 0 {
            bucket::write_index(&self.store, &t, now_ns()).await?;
        }
        let live = t.folders.values().filter(|f| f.live).count() as i64;
        let compacted = t
            .folders
            .values()
            .filter(|f| !f.live && f.compacted_at.is_some())
            .count() as i64;
        Ok((report, live, compacted))
    }

    /// Runs one job on the job thread; `None` when another compactor
    /// holds it.
    async fn run_job(&self, spec: job::JobSpec) -> Result<Option<job::JobReport>, job::JobError> {
        let started = Instant::now();
        let blocks = self.blocks.clone();
        let handle = tokio::runtime::Handle::current();
        let job = spec.job;
        let result = self
            .jobs
            .run(move || job::run(&handle, &blocks, &spec))
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(job::JobError::Busy(..)) | Err(job::JobError::Raced(_)) => "busy",
            Err(_) => "error",
        };
        self.metrics
            .compaction_jobs
            .get_or_create(&BatchLabels {
                sink: SINK,
                outcome,
            })
            .inc();
        self.metrics
            .compaction_duration
            .get_or_create(&SinkLabels { sink: SINK })
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(r) => {
                self.metrics
                    .compaction_read_bytes
                    .get_or_create(&SinkLabels { sink: SINK })
                    .inc_by(r.bytes_read);
                self.metrics
                    .block_spans
                    .get_or_create(&SinkLabels { sink: SINK })
                    .inc_by(r.spans);
                self.metrics
                    .block_bytes
                    .get_or_create(&SinkLabels { sink: SINK })
                    .inc_by(r.bytes_written);
                tracing::info!(
                    %job,
                    outputs = r.outputs.len(),
                    traces = r.traces,
                    spans = r.spans,
                    read_bytes = r.bytes_read,
                    written_bytes = r.bytes_written,
                    seconds = started.elapsed().as_secs_f64(),
                    "compaction job done"
                );
                Ok(Some(r))
            }
            Err(job::JobError::Busy(id, writer)) => {
                tracing::info!(%job, output = %id, %writer, "another compactor holds this job");
                Ok(None)
            }
            Err(job::JobError::Raced(id)) => {
                tracing::info!(%job, output = %id, "job output completed elsewhere; resumed next cycle");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// `observatory-consumer compact`: cycles until SIGTERM (or, with
/// `COMPACTOR_ONCE`, until a cycle finds nothing to do).
pub async fn run(args: CompactArgs, stop: Arc<AtomicBool>) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let interval = args.tempo_compaction_interval;
    let once = args.once;
    let addr = args.admin_addr;
    let mut compactor = Compactor::new(args, metrics.clone())?;
    admin::serve(addr, metrics, health.clone())
        .await
        .map_err(|source| StartError::Admin { addr, source })?;
    tracing::info!(bucket = compactor.description(), identity = %compactor.identity, "compactor started");
    while !stop.load(Ordering::Relaxed) {
        match compactor.cycle().await {
            Ok(report) => {
                health.store_ok.store(true, Ordering::Relaxed);
                if !report.idle() {
                    tracing::info!(?report, "compaction cycle");
                }
                if once && report.idle() {
                    break;
                }
                if once {
                    continue;
                }
            }
            Err(e) if once => return Err(e.into()),
            Err(e) => {
                health.store_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "compaction cycle failed; retried after the interval");
            }
        }
        let until = Instant::now() + interval;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200).min(interval)).await;
        }
    }
    health.draining.store(true, Ordering::Relaxed);
    Ok(())
}
