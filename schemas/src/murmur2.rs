//! Kafka's murmur2 hash, bit for bit as `org.apache.kafka.common.utils.Utils.murmur2`.
//!
//! Every Kafka client that routes by key with the Java default partitioner
//! (librdkafka `murmur2_random`, franz-go, Sarama's `NewReferenceHashPartitioner`
//! aside) computes this, so a trace lands on the same partition whichever tool
//! produced it.

/// The 32-bit murmur2 of `data` with Kafka's seed `0x9747b28c`, as an unsigned
/// number (Java returns the same bits as a signed `int`).
///
/// ```
/// // Kafka's own test vector: murmur2("21") == -973932308 as a Java int.
/// assert_eq!(observatory_schemas::murmur2::murmur2(b"21") as i32, -973932308);
/// ```
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);

    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::murmur2;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn matches_kafka_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input) as i32,
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
