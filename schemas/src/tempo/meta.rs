//! A block's `meta.json` (Tempo's `BlockMeta`), its id and its object names.
//!
//! Block ids are deterministic, as Tempo's own Kafka block builder makes
//! them (`modules/blockbuilder/util/id.go`): a UUIDv5 over the tenant, the
//! source partition, the first offset in the block and a sequence number.
//! A writer takes an id by creating its [`CLAIM`] object (a create-only
//! write, which fails when it exists), so one block id has one writer,
//! ever: a crash or a second owner of the partition finds the id taken and
//! either skips what the complete block there holds (its [`Source`]
//! record) or takes the next sequence number; it never writes into a
//! folder another writer has, and a reader never sees one writer's
//! `meta.json` beside another's `data.parquet`.

use super::ENCODING;
use crate::civil::rfc3339_nanos;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The namespace of Tempo's block-builder ids.
const BLOCK_ID_NAMESPACE: Uuid = Uuid::from_u128(0x28840903_6eb5_4ffb_8880_93a4fa98dbcb);

/// The tenant folder Tempo uses without multi-tenancy; our `default` tenant
/// is written there.
pub const SINGLE_TENANT: &str = "single-tenant";

/// Object names inside a block folder, in the order they are written
/// (`meta.json` last: its presence is what makes a block exist).
pub const DATA: &str = "data.parquet";
/// The row-group index.
pub const INDEX: &str = "index";
/// The block's metadata.
pub const META: &str = "meta.json";
/// `meta.json` of a block Tempo's compactor (or retention) marked compacted.
pub const META_COMPACTED: &str = "meta.compacted.json";
/// The object whose create-only write gives a writer its block id. Written
/// first; Tempo ignores it and deletes it with the block.
pub const CLAIM: &str = "observatory-claim";

/// The folder, inside a block folder, of the block's source records: which
/// offsets of which topic partition the block holds. Tempo ignores it (it
/// reads `meta.json`, the blooms, the index and the data) and deletes it
/// with the block, as it deletes every object under a block's folder.
pub const SOURCE_FOLDER: &str = "observatory-source";

/// Where a block came from: the offsets `first..=last` of one partition of
/// one topic, for one tenant (the block's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The Kafka topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// The first offset in the block.
    pub first: i64,
    /// The last offset in the block.
    pub last: i64,
}

impl Source {
    /// The record's object name inside the block folder: everything is in
    /// the name, so one listing of the bucket tells what it holds.
    ///
    /// ```
    /// use observatory_schemas::tempo::meta::Source;
    /// let s = Source { topic: "otlp_spans".into(), partition: 3, first: 10, last: 42 };
    /// assert_eq!(s.object_name(), "observatory-source/otlp_spans/3/10-42");
    /// assert_eq!(Source::parse(&s.object_name()), Some(s));
    /// assert_eq!(Source::parse("data.parquet"), None);
    /// ```
    pub fn object_name(&self) -> String {
        format!(
            "{SOURCE_FOLDER}/{}/{}/{}-{}",
            self.topic, self.partition, self.first, self.last
        )
    }

    /// Reads a record's object name (relative to the block folder); `None`
    /// for any other object.
    pub fn parse(name: &str) -> Option<Source> {
        let rest = name.strip_prefix(SOURCE_FOLDER)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (topic, partition, range) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || topic.is_empty() {
            return None;
        }
        let (first, last) = range.split_once('-')?;
        let (first, last) = (first.parse().ok()?, last.parse().ok()?);
        let partition = partition.parse().ok()?;
        (first <= last).then(|| Source {
            topic: topic.to_owned(),
            partition,
            first,
            last,
        })
    }
}

/// The name of bloom shard `i`.
pub fn bloom_name(i: u64) -> String {
    format!("bloom-{i}")
}

/// The tenant folder of one of our tenants.
pub fn tenant_folder(tenant: &str) -> &str {
    if tenant == crate::tenant::DEFAULT_TENANT {
        SINGLE_TENANT
    } else {
        tenant
    }
}

/// The id of the `seq`-th block (from 1) that starts at `start_offset` of
/// `partition` for the tenant folder `tenant`.
///
/// ```
/// use observatory_schemas::tempo::meta::block_id;
/// // The same inputs always give the same id.
/// assert_eq!(block_id("single-tenant", 3, 1000, 1), block_id("single-tenant", 3, 1000, 1));
/// assert_ne!(block_id("single-tenant", 3, 1000, 1), block_id("single-tenant", 3, 1001, 1));
/// ```
pub fn block_id(tenant: &str, partition: u64, start_offset: u64, seq: u64) -> Uuid {
    let mut name = Vec::with_capacity(tenant.len() + 24);
    name.extend_from_slice(tenant.as_bytes());
    name.extend_from_slice(&partition.to_le_bytes());
    name.extend_from_slice(&start_offset.to_le_bytes());
    name.extend_from_slice(&seq.to_le_bytes());
    Uuid::new_v5(&BLOCK_ID_NAMESPACE, &name)
}

/// `meta.json`, with the keys and value rules of tempo-blocks.md §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    /// Always `vParquet4`.
    pub format: String,
    /// The block id, as its folder name.
    #[serde(rename = "blockID")]
    pub block_id: Uuid,
    /// The tenant folder.
    #[serde(rename = "tenantID")]
    pub tenant_id: String,
    /// Earliest span start, RFC 3339 with nanoseconds.
    pub start_time: String,
    /// Latest span end (Tempo's retention goes by it).
    pub end_time: String,
    /// Traces, one row each.
    pub total_objects: i64,
    /// Exact byte length of `data.parquet`.
    pub size: u64,
    /// 0 for a fresh block.
    pub compaction_level: u32,
    /// 0 for parquet blocks.
    pub index_page_size: u32,
    /// Row groups.
    pub total_records: u32,
    /// Bloom files, at least 1.
    pub bloom_shards: u32,
    /// Length of the parquet footer.
    pub footer_size: u32,
    /// Always 1: TraceQL metrics only read blocks with replication factor 1.
    pub replication_factor: u32,
}

impl BlockMeta {
    /// The meta of a fresh block.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        block_id: Uuid,
        tenant_folder: &str,
        start_unix_nanos: i64,
        end_unix_nanos: i64,
        traces: i64,
        size: u64,
        row_groups: u32,
        bloom_shards: u32,
        footer_size: u32,
    ) -> BlockMeta {
        BlockMeta {
            format: ENCODING.to_owned(),
            block_id,
            tenant_id: tenant_folder.to_owned(),
            start_time: rfc3339_nanos(start_unix_nanos),
            end_time: rfc3339_nanos(end_unix_nanos),
            total_objects: traces,
            size,
            compaction_level: 0,
            index_page_size: 0,
            total_records: row_groups,
            bloom_shards: bloom_shards.max(1),
            footer_size,
            replication_factor: 1,
        }
    }

    /// The JSON of `meta.json`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a BlockMeta always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_has_tempos_keys() {
        let id = block_id(SINGLE_TENANT, 0, 0, 1);
        let meta = BlockMeta::new(
            id,
            SINGLE_TENANT,
            1_656_933_069_000_000_000,
            1_656_933_095_500_000_000,
            133,
            91_660,
            1,
            1,
            19_546,
        );
        let json: serde_json::Value = serde_json::from_slice(&meta.to_json()).unwrap();
        let expected = serde_json::json!({
            "format": "vParquet4", "blockID": id.to_string(), "tenantID": "single-tenant",
            "startTime": "2022-07-04T11:11:09Z", "endTime": "2022-07-04T11:11:35.5Z", "totalObjects": 133,
            "size": 91660, "compactionLevel": 0, "indexPageSize": 0, "totalRecords": 1, "bloomShards": 1,
            "footerSize": 19546, "replicationFactor": 1
        });
        assert_eq!(json, expected);
        assert_eq!(id.to_string(), id.hyphenated().to_string().to_lowercase());
    }

    #[test]
    fn block_ids_are_uuid_v5_of_tenant_partition_offset_seq() {
        let id = block_id("t", 1, 2, 3);
        assert_eq!(id.get_version_num(), 5);
        let mut name = b"t".to_vec();
        for n in [1u64, 2, 3] {
            name.extend_from_slice(&n.to_le_bytes());
        }
        assert_eq!(id, Uuid::new_v5(&BLOCK_ID_NAMESPACE, &name));
        assert_ne!(block_id("u", 1, 2, 3), id);
        assert_eq!(tenant_folder("default"), SINGLE_TENANT);
        assert_eq!(tenant_folder("acme"), "acme");
    }
}
