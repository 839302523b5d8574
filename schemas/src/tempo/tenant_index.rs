//! The per-tenant block list Tempo's queriers and compactors read instead of
//! listing the bucket (`tempodb/backend/tenantindex.go`, tempo-blocks.md §6):
//! `<tenant>/index.json.gz` (gzip of `{"created_at","meta","compacted"}`) and
//! `<tenant>/index.pb.zst` (zstd of the `TenantIndex` protobuf of
//! `tempodb/backend/v1/v1.proto`). Tempo reads the protobuf first and the
//! JSON when the protobuf is missing, so a writer writes both.
//!
//! Also the `meta.compacted.json` of a block marked compacted: its
//! `meta.json` plus `compactedTime` (Tempo's local backend renames the
//! file, its S3 backend copies it and takes the time from the object's
//! last-modified date; both read `compactedTime` when it is there).
//!
//! No I/O: bytes in, bytes out.

use super::meta::BlockMeta;
use crate::civil::rfc3339_nanos;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// The JSON index object's name inside the tenant folder.
pub const INDEX_JSON: &str = "index.json.gz";
/// The protobuf index object's name inside the tenant folder.
pub const INDEX_PB: &str = "index.pb.zst";

/// A block marked compacted: its meta and when it was marked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedMeta {
    /// The block's `meta.json`.
    #[serde(flatten)]
    pub meta: BlockMeta,
    /// RFC 3339 time it was marked compacted.
    #[serde(rename = "compactedTime", default)]
    pub compacted_time: String,
}

impl CompactedMeta {
    /// The JSON of `meta.compacted.json`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a CompactedMeta always serializes")
    }

    /// When it was marked, in Unix nanoseconds (0 when unknown).
    pub fn compacted_unix_nanos(&self) -> i64 {
        crate::civil::parse_rfc3339_nanos(&self.compacted_time).unwrap_or(0)
    }
}

/// A tenant's block list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantIndex {
    /// RFC 3339 time it was built.
    pub created_at: String,
    /// Live blocks.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub meta: Vec<BlockMeta>,
    /// Blocks marked compacted and not yet deleted.
    #[serde(default, deserialize_with = "null_is_empty")]
    pub compacted: Vec<CompactedMeta>,
}

/// Go marshals an empty slice as `null`.
fn null_is_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// An index object that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Not gzip, not zstd, or truncated.
    #[error("compression: {0}")]
    Compression(#[from] std::io::Error),
    /// Not the index's JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl TenantIndex {
    /// An index built at `now_unix_nanos`.
    pub fn new(
        now_unix_nanos: i64,
        meta: Vec<BlockMeta>,
        compacted: Vec<CompactedMeta>,
    ) -> TenantIndex {
        TenantIndex {
            created_at: rfc3339_nanos(now_unix_nanos),
            meta,
            compacted,
        }
    }

    /// When it was built, in Unix nanoseconds (0 when unreadable).
    pub fn created_unix_nanos(&self) -> i64 {
        crate::civil::parse_rfc3339_nanos(&self.created_at).unwrap_or(0)
    }

    /// The bytes of `index.json.gz`.
    pub fn to_json_gz(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("an index always serializes");
        let mut gz = flate2::GzBuilder::new()
            .filename("index.json")
            .write(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).expect("writing to memory");
        gz.finish().expect("writing to memory")
    }

    /// Reads `index.json.gz`.
    pub fn from_json_gz(bytes: &[u8]) -> Result<TenantIndex, IndexError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut json)?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// The bytes of `index.pb.zst`.
    pub fn to_pb_zst(&self) -> Vec<u8> {
        use prost::Message;
        let pb = pb::TenantIndex {
            created_at: Some(pb::timestamp(self.created_unix_nanos())),
            meta: self.meta.iter().map(pb::block_meta).collect(),
            compacted_meta: self
                .compacted
                .iter()
                .map(|c| pb::CompactedBlockMeta {
                    block_meta: Some(pb::block_meta(&c.meta)),
                    compacted_time: Some(pb::timestamp(c.compacted_unix_nanos())),
                })
                .collect(),
        };
        zstd::encode_all(&pb.encode_to_vec()[..], 3).expect("compressing in memory")
    }
}

/// The protobuf messages of `tempodb/backend/v1/v1.proto`, write side.
mod pb {
    use super::BlockMeta;
    use crate::civil::parse_rfc3339_nanos;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlockMetaPb {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(bytes = "vec", tag = "2")]
        pub block_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub tenant_id: String,
        #[prost(message, optional, tag = "6")]
        pub start_time: Option<Timestamp>,
        #[prost(message, optional, tag = "7")]
        pub end_time: Option<Timestamp>,
        #[prost(int64, tag = "8")]
        pub total_objects: i64,
        #[prost(uint64, tag = "9")]
        pub size: u64,
        #[prost(uint32, tag = "10")]
        pub compaction_level: u32,
        #[prost(uint32, tag = "12")]
        pub index_page_size: u32,
        #[prost(uint32, tag = "13")]
        pub total_records: u32,
        #[prost(uint32, tag = "15")]
        pub bloom_shard_count: u32,
        #[prost(uint32, tag = "16")]
        pub footer_size: u32,
        #[prost(uint32, tag = "18")]
        pub replication_factor: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CompactedBlockMeta {
        #[prost(message, optional, tag = "1")]
        pub block_meta: Option<BlockMetaPb>,
        #[prost(message, optional, tag = "2")]
        pub compacted_time: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TenantIndex {
        #[prost(message, optional, tag = "1")]
        pub created_at: Option<Timestamp>,
        #[prost(message, repeated, tag = "2")]
        pub meta: Vec<BlockMetaPb>,
        #[prost(message, repeated, tag = "3")]
        pub compacted_meta: Vec<CompactedBlockMeta>,
    }

    pub fn timestamp(unix_nanos: i64) -> Timestamp {
        Timestamp {
            seconds: unix_nanos.div_euclid(1_000_000_000),
            nanos: unix_nanos.rem_euclid(1_000_000_000) as i32,
        }
    }

    pub fn block_meta(m: &BlockMeta) -> BlockMetaPb {
        let time = |t: &str| Some(timestamp(parse_rfc3339_nanos(t).unwrap_or(0)));
        BlockMetaPb {
            version: m.format.clone(),
            block_id: m.block_id.as_bytes().to_vec(),
            tenant_id: m.tenant_id.clone(),
            start_time: time(&m.start_time),
            end_time: time(&m.end_time),
            total_objects: m.total_objects,
            size: m.size,
            compaction_level: m.compaction_level,
            index_page_size: m.index_page_size,
            total_records: m.total_records,
            bloom_shard_count: m.bloom_shards,
            footer_size: m.footer_size,
            replication_factor: m.replication_factor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempo::meta::{block_id, SINGLE_TENANT};

    fn meta(seq: u64) -> BlockMeta {
        BlockMeta::new(
            block_id(SINGLE_TENANT, 0, 0, seq),
            SINGLE_TENANT,
            1_656_933_069_000_000_000,
            1_656_933_095_500_000_000,
            133,
            91_660,
            1,
            1,
            19_546,
        )
    }

    #[test]
    fn json_index_round_trips_and_has_tempos_keys() {
        let compacted = CompactedMeta {
            meta: meta(2),
            compacted_time: "2022-07-04T12:00:00Z".into(),
        };
        let index = TenantIndex::new(1_656_936_000_000_000_000, vec![meta(1)], vec![compacted]);
        let bytes = index.to_json_gz();
        let back = TenantIndex::from_json_gz(&bytes).unwrap();
        assert_eq!(back, index);
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut json)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["created_at"], "2022-07-04T12:00:00Z");
        assert_eq!(v["meta"][0]["format"], "vParquet4");
        assert_eq!(v["compacted"][0]["compactedTime"], "2022-07-04T12:00:00Z");
        assert_eq!(v["compacted"][0]["blockID"], meta(2).block_id.to_string());
        assert_eq!(
            back.compacted[0].compacted_unix_nanos(),
            1_656_936_000_000_000_000
        );
    }

    #[test]
    fn go_nulls_read_as_empty_lists() {
        let json = br#"{"created_at":"2022-07-04T12:00:00Z","meta":null,"compacted":null}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json).unwrap();
        let index = TenantIndex::from_json_gz(&gz.finish().unwrap()).unwrap();
        assert!(index.meta.is_empty() && index.compacted.is_empty());
    }

    #[test]
    fn protobuf_index_decodes_with_the_v1_field_numbers() {
        use prost::Message;
        let index = TenantIndex::new(1_656_936_000_000_000_001, vec![meta(1)], vec![]);
        let raw = zstd::decode_all(&index.to_pb_zst()[..]).unwrap();
        let pb = pb::TenantIndex::decode(&raw[..]).unwrap();
        assert_eq!(pb.created_at.as_ref().unwrap().seconds, 1_656_936_000);
        assert_eq!(pb.created_at.as_ref().unwrap().nanos, 1);
        let m = &pb.meta[0];
        assert_eq!(m.block_id, meta(1).block_id.as_bytes().to_vec());
        assert_eq!(m.version, "vParquet4");
        assert_eq!(m.end_time.as_ref().unwrap().nanos, 500_000_000);
        assert_eq!(
            (m.total_objects, m.size, m.footer_size),
            (133, 91_660, 19_546)
        );
    }
}
