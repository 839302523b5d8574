//! Which messages the blocks in the store already hold, so that a replay
//! writes only what is missing.
//!
//! Every block the sink writes carries a source record
//! ([`observatory_schemas::tempo::meta::Source`]): the tenant's offsets
//! `first..=last` of one partition that went into it. One listing of the
//! bucket gives [`Coverage`]: for each (tenant folder, topic partition), the
//! offset ranges held by complete blocks (those with a `meta.json`). A
//! replay skips the messages it covers, so replaying stored data writes
//! nothing, while a range whose blocks were lost (deleted, retention, a new
//! bucket) is written again.
//!
//! A record only claims what its block holds: the cuts of one partition are
//! disjoint offset ranges, and a block holds every message of its tenant in
//! its cut (minus those dead-lettered, which a replay needs no more than the
//! block does). A block rewritten after a crash keeps its id and its first
//! offset; a record of the earlier attempt with another last offset may
//! stay beside the new one, and the offsets it names beyond the new block
//! are the next cuts' (read again from the same committed offset), so the
//! claim holds once those are written. Blocks made by Tempo's compactor
//! carry no record: what they hold is written again by a replay, and Tempo
//! merges the copies when it reads and compacts.

use super::store::BlockStore;
use observatory_schemas::tempo::meta::{Source, META};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The offsets complete blocks hold, per (tenant folder, partition), for
/// one topic.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    /// Tenant folder -> partition -> sorted, merged, inclusive ranges.
    ranges: HashMap<String, HashMap<i32, Vec<(i64, i64)>>>,
    blocks: usize,
}

impl Coverage {
    /// Lists the whole store once and keeps what complete blocks hold of
    /// `topic`.
    pub async fn load(store: &BlockStore, topic: &str) -> Result<Coverage, object_store::Error> {
        Ok(Coverage::from_listing(&store.list("").await?, topic))
    }

    /// Builds it from object paths (`<tenant>/<block id>/<name>`).
    pub fn from_listing(paths: &[String], topic: &str) -> Coverage {
        let mut complete: HashSet<(&str, &str)> = HashSet::new();
        let mut records: Vec<(&str, &str, Source)> = Vec::new();
        for path in paths {
            let mut parts = path.splitn(3, '/');
            let (Some(tenant), Some(block), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if name == META {
                complete.insert((tenant, block));
            } else if let Some(source) = Source::parse(name) {
                if source.topic == topic {
                    records.push((tenant, block, source));
                }
            }
        }
        let mut per_key: BTreeMap<(String, i32), Vec<(i64, i64)>> = BTreeMap::new();
        let mut blocks = HashSet::new();
        for (tenant, block, source) in records {
            if complete.contains(&(tenant, block)) {
                blocks.insert((tenant, block));
                per_key
                    .entry((tenant.to_owned(), source.partition))
                    .or_default()
                    .push((source.first, source.last));
            }
        }
        let mut ranges: HashMap<String, HashMap<i32, Vec<(i64, i64)>>> = HashMap::new();
        for ((tenant, partition), mut found) in per_key {
            found.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::with_capacity(found.len());
            for (first, last) in found {
                match merged.last_mut() {
                    Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
                    _ => merged.push((first, last)),
                }
            }
            ranges.entry(tenant).or_default().insert(partition, merged);
        }
        Coverage {
            ranges,
            blocks: blocks.len(),
        }
    }

    /// Whether a complete block of `tenant_folder` holds `offset` of
    /// `partition`.
    pub fn covers(&self, tenant_folder: &str, partition: i32, offset: i64) -> bool {
        let Some(ranges) = self
            .ranges
            .get(tenant_folder)
            .and_then(|partitions| partitions.get(&partition))
        else {
            return false;
        };
        let i = ranges.partition_point(|(first, _)| *first <= offset);
        i > 0 && ranges[i - 1].1 >= offset
    }

    /// How many complete blocks with a record of the topic it saw.
    pub fn blocks(&self) -> usize {
        self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, block: &str, topic: &str, p: i32, first: i64, last: i64) -> String {
        let source = Source {
            topic: topic.into(),
            partition: p,
            first,
            last,
        };
        format!("{tenant}/{block}/{}", source.object_name())
    }

    #[test]
    fn covers_what_complete_blocks_of_the_topic_hold() {
        let paths = vec![
            record("t", "b1", "spans", 0, 10, 19),
            "t/b1/meta.json".into(),
            "t/b1/data.parquet".into(),
            record("t", "b2", "spans", 0, 20, 29),
            "t/b2/meta.json".into(),
            // No meta.json: not complete, covers nothing.
            record("t", "b3", "spans", 0, 40, 49),
            // Another topic.
            record("t", "b4", "other", 0, 50, 59),
            "t/b4/meta.json".into(),
            // Another tenant.
            record("u", "b5", "spans", 0, 60, 69),
            "u/b5/meta.json".into(),
        ];
        let c = Coverage::from_listing(&paths, "spans");
        assert_eq!(c.blocks(), 3);
        assert!(!c.covers("t", 0, 9));
        assert!(c.covers("t", 0, 10));
        assert!(c.covers("t", 0, 25), "adjacent ranges merge");
        assert!(c.covers("t", 0, 29));
        assert!(!c.covers("t", 0, 30));
        assert!(!c.covers("t", 0, 45), "incomplete block");
        assert!(!c.covers("t", 0, 55), "other topic");
        assert!(!c.covers("t", 0, 65), "other tenant");
        assert!(c.covers("u", 0, 65));
        assert!(!c.covers("t", 1, 15), "other partition");
    }

    #[test]
    fn overlapping_records_of_a_rewritten_block_merge() {
        let paths = vec![
            record("t", "b1", "spans", 2, 100, 150),
            record("t", "b1", "spans", 2, 100, 180),
            "t/b1/meta.json".into(),
        ];
        let c = Coverage::from_listing(&paths, "spans");
        assert!(c.covers("t", 2, 170));
        assert!(!c.covers("t", 2, 181));
        assert_eq!(c.blocks(), 1);
    }
}
