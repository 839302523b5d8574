//! Tempo's per-block bloom filters, bit for bit as Tempo writes and reads
//! them (`tempodb/encoding/common/bloom.go` over bits-and-blooms/bloom v3).
//!
//! A block has `shards` filters; a trace id belongs to shard
//! `FNV-1-32(id) % shards`, and sets `k` bits of that shard's `m`-bit filter
//! at positions from two MurmurHash3 x64/128 hashes. The file of a shard is
//! `m`, `k`, the bitset length (all u64 big-endian) and the bitset words
//! (u64 big-endian). Readers take `m` and `k` from the file.

/// Tempo's default false-positive rate, `bloom_filter_false_positive`.
pub const FALSE_POSITIVE: f64 = 0.01;
/// Tempo's default shard size in bytes, `bloom_filter_shard_size_bytes`.
pub const SHARD_SIZE_BYTES: u64 = 102_400;
/// Most shards Tempo makes.
pub const MAX_SHARDS: u64 = 1000;

/// How many shards and hash functions a block of `traces` traces gets.
pub fn parameters(traces: u64) -> (u64, u64) {
    let n = traces.max(1) as f64;
    let ln2 = std::f64::consts::LN_2;
    let m = (-n * FALSE_POSITIVE.ln() / (ln2 * ln2)).ceil();
    let k = (ln2 * m / n).ceil() as u64;
    let shards = ((m / (8.0 * SHARD_SIZE_BYTES as f64)).ceil() as u64).clamp(1, MAX_SHARDS);
    (shards, k)
}

/// Go's `hash/fnv.New32` (FNV-1, not FNV-1a) of a trace id.
pub fn fnv1_32(data: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in data {
        h = h.wrapping_mul(16_777_619);
        h ^= u32::from(b);
    }
    h
}

/// The shard a trace id belongs to.
pub fn shard_of(trace_id: &[u8], shards: u64) -> u64 {
    u64::from(fnv1_32(trace_id)) % shards.max(1)
}

/// One shard's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    m: u64,
    k: u64,
    words: Vec<u64>,
}

/// A shard file that is not a filter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bloom filter file: {0}")]
pub struct BloomError(&'static str);

impl Bloom {
    /// An empty filter of `m` bits and `k` hash functions.
    pub fn new(m: u64, k: u64) -> Bloom {
        Bloom {
            m: m.max(1),
            k: k.max(1),
            words: vec![0; m.div_ceil(64) as usize],
        }
    }

    /// An empty filter of Tempo's default shard size.
    pub fn shard(k: u64) -> Bloom {
        Bloom::new(8 * SHARD_SIZE_BYTES, k)
    }

    /// Adds an id.
    pub fn add(&mut self, id: &[u8]) {
        let h = hashes(id);
        for i in 0..self.k {
            let bit = location(&h, i) % self.m;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False when `id` was certainly never added.
    pub fn may_contain(&self, id: &[u8]) -> bool {
        let h = hashes(id);
        (0..self.k).all(|i| {
            let bit = location(&h, i) % self.m;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// The shard file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.words.len() * 8);
        out.extend_from_slice(&self.m.to_be_bytes());
        out.extend_from_slice(&self.k.to_be_bytes());
        out.extend_from_slice(&self.m.to_be_bytes());
        for w in &self.words {
            out.extend_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Parses a shard file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bloom, BloomError> {
        let u64_at = |i: usize| -> Result<u64, BloomError> {
            bytes
                .get(i..i + 8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
                .ok_or(BloomError("truncated"))
        };
        let (m, k, len) = (u64_at(0)?, u64_at(8)?, u64_at(16)?);
        if m == 0 || k == 0 || len != m {
            return Err(BloomError("bad header"));
        }
        let words = m.div_ceil(64) as usize;
        if bytes.len() != 24 + words * 8 {
            return Err(BloomError("length does not match the header"));
        }
        let words = (0..words)
            .map(|i| u64_at(24 + i * 8))
            .collect::<Result<_, _>>()?;
        Ok(Bloom { m, k, words })
    }
}

/// The four 64-bit hashes of bits-and-blooms' `baseHashes`.
fn hashes(id: &[u8]) -> [u64; 4] {
    let (h1, h2) = murmur3_x64_128(id, &[]);
    let (h3, h4) = murmur3_x64_128(id, &[1]);
    [h1, h2, h3, h4]
}

fn location(h: &[u64; 4], i: u64) -> u64 {
    h[(i % 2) as usize].wrapping_add(i.wrapping_mul(h[2 + (((i + i % 2) % 4) / 2) as usize]))
}

/// MurmurHash3 x64/128 with seed 0 over `data ‖ tail` (so that the second
/// hash needs no copy of the id).
fn murmur3_x64_128(data: &[u8], extra: &[u8]) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mut buf = [0u8; 64];
    let len = data.len() + extra.len();
    let joined: &[u8] = if extra.is_empty() {
        data
    } else if len <= buf.len() {
        buf[..data.len()].copy_from_slice(data);
        buf[data.len()..len].copy_from_slice(extra);
        &buf[..len]
    } else {
        return murmur3_x64_128(&[data, extra].concat(), &[]);
    };
    let (mut h1, mut h2) = (0u64, 0u64);
    let blocks = joined.len() / 16;
    for b in 0..blocks {
        let k1 = u64::from_le_bytes(joined[b * 16..b * 16 + 8].try_into().expect("8"));
        let k2 = u64::from_le_bytes(joined[b * 16 + 8..b * 16 + 16].try_into().expect("8"));
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = &joined[blocks * 16..];
    let (mut k1, mut k2) = (0u64, 0u64);
    for (i, &b) in tail.iter().enumerate() {
        if i < 8 {
            k1 |= u64::from(b) << (8 * i);
        } else {
            k2 |= u64::from(b) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= len as u64;
    h2 ^= len as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of tempo-blocks.md §3, checked there against Go.
    const ID: [u8; 16] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0x47, 0x4b, 0xe8, 0xb4, 0x34, 0x49, 0xfb,
    ];

    #[test]
    fn test_vector_hashes_and_shard() {
        assert_eq!(fnv1_32(&ID), 2_024_090_543);
        assert_eq!(shard_of(&ID, 3), 2);
        assert_eq!(
            hashes(&ID),
            [
                0xb6e5_d708_b4c8_c3a6,
                0xb372_9591_db92_2146,
                0x4837_0e72_23f4_7007,
                0x8d89_712d_e54f_c54e
            ]
        );
    }

    #[test]
    fn test_vector_bits_and_bytes() {
        let mut bloom = Bloom::shard(7);
        bloom.add(&ID);
        let h = hashes(&ID);
        let bits: Vec<u64> = (0..7).map(|i| location(&h, i) % 819_200).collect();
        assert_eq!(
            bits,
            [803_750, 386_708, 380_482, 618_843, 426_946, 359_372, 779_130]
        );
        let bytes = bloom.to_bytes();
        assert_eq!(bytes.len(), 102_424);
        assert_eq!(
            &bytes[..24],
            &[0, 0, 0, 0, 0, 12, 128, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 12, 128, 0]
        );
        let word = 24 + 5615 * 8;
        assert_eq!(&bytes[word..word + 8], &[0, 0, 0, 0, 0, 0, 0x10, 0]);
        let set: u32 = bytes[24..].iter().map(|b| b.count_ones()).sum();
        assert_eq!(set, 7);
        assert_eq!(Bloom::from_bytes(&bytes), Ok(bloom));
    }

    #[test]
    fn sizing_follows_tempo() {
        assert_eq!(parameters(1), (1, 7));
        assert_eq!(parameters(85_000), (1, 7));
        assert_eq!(parameters(200_000), (3, 7));
        assert_eq!(parameters(u64::MAX / 2).0, MAX_SHARDS);
    }

    #[test]
    fn added_ids_are_found_and_most_others_are_not() {
        let mut bloom = Bloom::shard(7);
        let id = |i: u64| [i.to_be_bytes(), (i * 7919).to_le_bytes()].concat();
        for i in 0..50_000 {
            bloom.add(&id(i));
        }
        assert!((0..50_000).all(|i| bloom.may_contain(&id(i))));
        let false_positives = (50_000..100_000)
            .filter(|&i| bloom.may_contain(&id(i)))
            .count();
        assert!(
            false_positives < 500,
            "{false_positives} false positives in 50 000"
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Bloom::from_bytes(&[0; 10]).is_err());
        let mut bytes = Bloom::new(128, 3).to_bytes();
        bytes.pop();
        assert!(Bloom::from_bytes(&bytes).is_err());
    }

    #[test]
    fn long_input_hashes_like_its_concatenation() {
        let long = [7u8; 40];
        assert_eq!(
            murmur3_x64_128(&long, &[1]),
            murmur3_x64_128(&[&long[..], &[1]].concat(), &[])
        );
    }
}
