//! What a compaction cycle does to one tenant, decided from a listing of
//! its folder: pure functions, no I/O, unit-tested.
//!
//! - **Windows** (Tempo's `compaction_window`): a block belongs to the
//!   window its newest span ends in; only blocks of one window are merged.
//!   A window still being written merges `min_inputs` or more blocks of one
//!   level (so each trace is rewritten about log(min_inputs) times, not once
//!   a cycle); a window that has ended merges any two, smallest first,
//!   until its blocks reach the target size.
//! - **Shards**: each (tenant, window) belongs to one replica, by a stable
//!   hash ([`owner`]); a replica plans, expires and deletes only the blocks
//!   of its windows, so replicas never work on the same blocks.
//! - **Unfinished jobs** ([`unfinished`]) come first: a job whose outputs
//!   exist while an input is still live is finished (its remaining outputs
//!   written, its inputs marked) before anything else is planned, and its
//!   inputs are never planned into another job.
//! - **Retention**: a live block whose newest span ended before
//!   `now - retention` is marked compacted ([`expired`]); blocks marked
//!   compacted are deleted `compacted_grace` after, and folders that never
//!   got a `meta.json` `incomplete_grace` after their newest object
//!   ([`deletable`]).

use observatory_schemas::tempo::compaction::{job_id, Record};
use observatory_schemas::tempo::meta::Source;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

/// One block folder as the listing shows it.
#[derive(Debug, Clone, Default)]
pub struct Folder {
    /// Readers see it (`meta.json`).
    pub live: bool,
    /// Marked compacted (`meta.compacted.json`), and when (Unix ns).
    pub compacted_at: Option<i64>,
    /// Newest object's time (Unix ns).
    pub newest: i64,
    /// Every object's path.
    pub objects: Vec<String>,
    /// Source records (which Kafka offsets it holds).
    pub sources: Vec<Source>,
    /// The compaction record of an output block.
    pub record: Option<Record>,
    /// The inputs of the job that wrote it.
    pub from: Vec<Uuid>,
}

impl Folder {
    /// Readers see a block here, live or compacted.
    pub fn complete(&self) -> bool {
        self.live || self.compacted_at.is_some()
    }
}

/// A live block, from its meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Its id.
    pub id: Uuid,
    /// `compactionLevel`.
    pub level: u32,
    /// Newest span end (Unix ns).
    pub end_ns: i64,
    /// `data.parquet` bytes.
    pub size: u64,
}

/// The knobs of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Window length (ns).
    pub window_ns: i64,
    /// Blocks of one level merged at once in an open window.
    pub min_inputs: usize,
    /// Most blocks in one job.
    pub max_inputs: usize,
    /// Output size.
    pub target_bytes: u64,
    /// Replicas sharing the bucket.
    pub replicas: u32,
    /// This one.
    pub replica: u32,
}

/// The window a block ending at `end_ns` belongs to.
pub fn window(end_ns: i64, window_ns: i64) -> i64 {
    end_ns.div_euclid(window_ns)
}

/// The replica that owns (`tenant`, `window`): FNV-1a over both, modulo
/// the replica count. Stable across restarts and versions.
pub fn owner(tenant: &str, window: i64, replicas: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.bytes().chain([0]).chain(window.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(replicas.max(1))) as u32
}

/// A job left unfinished: its id, its inputs, and its complete outputs'
/// records in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// The job.
    pub job: Uuid,
    /// Its inputs.
    pub inputs: Vec<Uuid>,
    /// Complete outputs: (block id, record), by record index.
    pub outputs: Vec<(Uuid, Record)>,
}

/// Jobs with a complete output while one of their inputs is still live.
pub fn unfinished(tenant: &str, folders: &BTreeMap<Uuid, Folder>) -> Vec<Unfinished> {
    let mut jobs: BTreeMap<Uuid, Unfinished> = BTreeMap::new();
    for (id, f) in folders {
        let Some(record) = f.record.as_ref().filter(|_| f.complete()) else {
            continue;
        };
        let job_id = job_id(tenant, &f.from);
        let job = jobs.entry(job_id).or_insert_with(|| Unfinished {
            job: job_id,
            inputs: Vec::new(),
            outputs: Vec::new(),
        });
        job.inputs.extend(&f.from);
        job.outputs.push((*id, record.clone()));
    }
    jobs.into_values()
        .filter_map(|mut j| {
            j.inputs.sort_unstable();
            j.inputs.dedup();
            j.outputs.sort_by_key(|(_, r)| r.index);
            let pending = j
                .inputs
                .iter()
                .any(|i| folders.get(i).is_some_and(|f| f.live));
            pending.then_some(j)
        })
        .collect()
}

/// The jobs to run on `blocks` (live blocks of one tenant, none of them
/// busy in an unfinished job) owned by this replica at `now_ns`: each a
/// list of input ids.
pub fn jobs(tenant: &str, blocks: &[Block], s: &Settings, now_ns: i64) -> Vec<Vec<Uuid>> {
    let mut windows: BTreeMap<i64, Vec<Block>> = BTreeMap::new();
    for b in blocks {
        if b.size < s.target_bytes {
            windows
                .entry(window(b.end_ns, s.window_ns))
                .or_default()
                .push(*b);
        }
    }
    let mut out = Vec::new();
    for (w, mut blocks) in windows {
        if owner(tenant, w, s.replicas) != s.replica {
            continue;
        }
        let ended = (w + 1).saturating_mul(s.window_ns) <= now_ns;
        if ended {
            blocks.sort_by_key(|b| (b.size, b.id));
            out.extend(groups(&blocks, 2, s));
        } else {
            let levels: BTreeSet<u32> = blocks.iter().map(|b| b.level).collect();
            for level in levels {
                let mut same: Vec<Block> = blocks
                    .iter()
                    .filter(|b| b.level == level)
                    .copied()
                    .collect();
                same.sort_by_key(|b| (b.end_ns, b.id));
                out.extend(groups(&same, s.min_inputs, s));
            }
        }
    }
    out
}

/// Consecutive groups of `blocks` of at least `min` and at most
/// `max_inputs` blocks whose sizes add up to at most the target.
fn groups(blocks: &[Block], min: usize, s: &Settings) -> Vec<Vec<Uuid>> {
    let mut out = Vec::new();
    let mut group: Vec<Uuid> = Vec::new();
    let mut bytes = 0u64;
    for b in blocks {
        if !group.is_empty() && (group.len() == s.max_inputs || bytes + b.size > s.target_bytes) {
            if group.len() >= min {
                out.push(std::mem::take(&mut group));
            }
            group.clear();
            bytes = 0;
        }
        group.push(b.id);
        bytes += b.size;
    }
    if group.len() >= min {
        out.push(group);
    }
    out
}

/// Live blocks of this replica's windows past their retention.
pub fn expired(
    tenant: &str,
    blocks: &[Block],
    retention_ns: i64,
    s: &Settings,
    now_ns: i64,
) -> Vec<Uuid> {
    blocks
        .iter()
        .filter(|b| b.end_ns < now_ns.saturating_sub(retention_ns))
        .filter(|b| owner(tenant, window(b.end_ns, s.window_ns), s.replicas) == s.replica)
        .map(|b| b.id)
        .collect()
}

/// Folders to delete now: marked compacted `compacted_grace_ns` ago or
/// more, or without a meta and untouched for `incomplete_grace_ns`. Each
/// replica deletes the folders whose id hashes to it (`owner` over the id).
pub fn deletable(
    tenant: &str,
    folders: &BTreeMap<Uuid, Folder>,
    busy: &HashSet<Uuid>,
    compacted_grace_ns: i64,
    incomplete_grace_ns: i64,
    s: &Settings,
    now_ns: i64,
) -> Vec<Uuid> {
    folders
        .iter()
        .filter(|(id, _)| !busy.contains(id))
        .filter(|(id, _)| owner(tenant, (id.as_u128() >> 64) as i64, s.replicas) == s.replica)
        .filter(|(_, f)| match (f.live, f.compacted_at) {
            (true, _) => false,
            (false, Some(at)) => at <= now_ns.saturating_sub(compacted_grace_ns),
            (false, None) => f.newest <= now_ns.saturating_sub(incomplete_grace_ns),
        })
        .map(|(id, _)| *id)
        .collect()
}

/// The source records of `inputs`, each (topic, partition)'s offset ranges
/// sorted and adjacent ones (`last + 1 == first`) joined.
pub fn merged_sources<'a>(inputs: impl Iterator<Item = &'a Source>) -> Vec<Source> {
    let mut all: Vec<Source> = inputs.cloned().collect();
    all.sort_by(|a, b| (&a.topic, a.partition, a.first).cmp(&(&b.topic, b.partition, b.first)));
    let mut out: Vec<Source> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last)
                if last.topic == s.topic
                    && last.partition == s.partition
                    && s.first <= last.last.saturating_add(1) =>
            {
                last.last = last.last.max(s.last);
            }
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;
    const HOUR: i64 = 60 * MIN;

    fn settings() -> Settings {
        Settings {
            window_ns: HOUR,
            min_inputs: 4,
            max_inputs: 8,
            target_bytes: 1000,
            replicas: 1,
            replica: 0,
        }
    }

    fn block(n: u128, level: u32, end_ns: i64, size: u64) -> Block {
        Block {
            id: Uuid::from_u128(n),
            level,
            end_ns,
            size,
        }
    }

    #[test]
    fn an_ended_window_merges_any_two_smallest_first_up_to_the_target() {
        let blocks: Vec<Block> = (0..20)
            .map(|i| block(i, (i % 3) as u32, i as i64 * MIN, 100))
            .collect();
        let planned = jobs("t", &blocks, &settings(), 2 * HOUR);
        // 20 blocks of 100 bytes, at most 8 a job and 1000 bytes: 8, 8, 4.
        assert_eq!(
            planned.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![8, 8, 4]
        );
        let all: HashSet<Uuid> = planned.iter().flatten().copied().collect();
        assert_eq!(all.len(), 20);
        // One block left alone is not a job; a full-size block is never an input.
        let lone = [block(1, 0, 0, 100), block(2, 1, MIN, 1000)];
        assert!(jobs("t", &lone, &settings(), 2 * HOUR).is_empty());
        // The target bounds a job's bytes.
        let big: Vec<Block> = (0..4).map(|i| block(i, 0, 0, 600)).collect();
        assert!(jobs("t", &big, &settings(), 2 * HOUR).is_empty());
    }

    #[test]
    fn an_open_window_merges_min_inputs_of_one_level() {
        let now = HOUR + 30 * MIN;
        let mut blocks: Vec<Block> = (0..6)
            .map(|i| block(i, 0, HOUR + i as i64 * MIN, 10))
            .collect();
        blocks.extend((10..13).map(|i| block(i, 1, HOUR + MIN, 10)));
        let planned = jobs("t", &blocks, &settings(), now);
        assert_eq!(
            planned,
            vec![(0..6).map(Uuid::from_u128).collect::<Vec<_>>()]
        );
    }

    #[test]
    fn windows_are_not_mixed_and_replicas_split_them() {
        let blocks: Vec<Block> = (0..48)
            .map(|i| block(i, 0, (i as i64 / 2) * HOUR + MIN, 10))
            .collect();
        let all = jobs("t", &blocks, &settings(), 100 * HOUR);
        assert_eq!(all.len(), 24);
        for j in &all {
            let w: HashSet<i64> = j
                .iter()
                .map(|id| window(blocks[id.as_u128() as usize].end_ns, HOUR))
                .collect();
            assert_eq!(w.len(), 1);
        }
        let mut s = settings();
        s.replicas = 3;
        let mut seen = 0;
        for r in 0..3 {
            s.replica = r;
            let mine = jobs("t", &blocks, &s, 100 * HOUR);
            assert!(!mine.is_empty(), "replica {r} has windows");
            seen += mine.len();
        }
        assert_eq!(seen, 24);
    }

    #[test]
    fn unfinished_jobs_are_those_with_a_live_input() {
        let job = job_id("t", &[Uuid::from_u128(1), Uuid::from_u128(2)]);
        let record = |index, last_output| Record {
            index,
            last_id: [index as u8; 16],
            last_output,
        };
        let mut folders = BTreeMap::new();
        let input = |live| Folder {
            live,
            compacted_at: (!live).then_some(1),
            ..Folder::default()
        };
        folders.insert(Uuid::from_u128(1), input(true));
        folders.insert(Uuid::from_u128(2), input(false));
        folders.insert(
            Uuid::from_u128(50),
            Folder {
                live: true,
                record: Some(record(1, false)),
                from: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
                ..Folder::default()
            },
        );
        let u = unfinished("t", &folders);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].job, job);
        assert_eq!(u[0].inputs, vec![Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert_eq!(u[0].outputs, vec![(Uuid::from_u128(50), record(1, false))]);
        folders.get_mut(&Uuid::from_u128(1)).unwrap().live = false;
        assert!(unfinished("t", &folders).is_empty());
    }

    #[test]
    fn retention_and_deletion_by_age() {
        let now = 100 * HOUR;
        let blocks = [block(1, 0, now - 30 * HOUR, 1), block(2, 0, now - HOUR, 1)];
        assert_eq!(
            expired("t", &blocks, 24 * HOUR, &settings(), now),
            vec![Uuid::from_u128(1)]
        );
        let mut folders = BTreeMap::new();
        folders.insert(
            Uuid::from_u128(1),
            Folder {
                compacted_at: Some(now - 2 * HOUR),
                ..Folder::default()
            },
        );
        folders.insert(
            Uuid::from_u128(2),
            Folder {
                compacted_at: Some(now - MIN),
                ..Folder::default()
            },
        );
        folders.insert(
            Uuid::from_u128(3),
            Folder {
                newest: now - 30 * HOUR,
                ..Folder::default()
            },
        );
        folders.insert(
            Uuid::from_u128(4),
            Folder {
                newest: now - MIN,
                ..Folder::default()
            },
        );
        folders.insert(
            Uuid::from_u128(5),
            Folder {
                live: true,
                ..Folder::default()
            },
        );
        let busy = HashSet::new();
        let gone = deletable("t", &folders, &busy, HOUR, 24 * HOUR, &settings(), now);
        assert_eq!(gone, vec![Uuid::from_u128(1), Uuid::from_u128(3)]);
    }

    #[test]
    fn adjacent_source_ranges_join() {
        let s = |p, first, last| Source {
            topic: "otlp_spans".into(),
            partition: p,
            first,
            last,
        };
        let inputs = [s(0, 11, 20), s(0, 0, 10), s(0, 30, 40), s(1, 0, 5)];
        assert_eq!(
            merged_sources(inputs.iter()),
            vec![s(0, 0, 20), s(0, 30, 40), s(1, 0, 5)]
        );
    }
}
