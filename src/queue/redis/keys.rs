//! Key names of the Redis queue and where an event goes: the fleet-wide keys under
//! `{<prefix>}`, each partition's keys under a hash tag of its own, the cluster slot of a key,
//! and `partition_of`, the one function that maps a message to its partition.
//!
//! Owns naming only. It must never talk to Redis, and never give two keys that one Lua script
//! touches different hash tags (a cluster refuses a script whose keys span slots).

/// Slots of a Redis Cluster.
pub const SLOTS: u32 = 16_384;

/// The keys of one partition, all under one hash tag so its scripts run in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeys {
    /// Its number, `0..partitions`.
    pub index: u32,
    /// Messages ready to process; consumer group `hookd`.
    pub stream: String,
    /// Retries, scored by due time (ms since the epoch); promoted to the stream when due.
    pub delayed: String,
    /// The most recent completed job records of this partition.
    pub completed: String,
    /// The most recent dead-lettered job records of this partition, with their error.
    pub dead: String,
}

/// Every key of the queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Lease naming the one process that runs the outbox sweeper (fleet-wide).
    pub sweeper: String,
    /// Worker processes, scored by when their membership expires (fleet-wide).
    pub members: String,
    /// One entry per partition, in order.
    pub partitions: Vec<PartitionKeys>,
}

impl Keys {
    /// The keys for `prefix` split into `partitions` partitions (at least one).
    pub fn new(prefix: &str, partitions: u32) -> Self {
        let fleet = |name: &str| format!("{{{prefix}}}:{name}");
        let partitions = (0..partitions.max(1))
            .map(|index| {
                let tag = partition_tag(prefix, index, partitions.max(1));
                let k = |name: &str| format!("{{{tag}}}:{name}");
                PartitionKeys {
                    index,
                    stream: k("stream"),
                    delayed: k("delayed"),
                    completed: k("completed"),
                    dead: k("dead"),
                }
            })
            .collect();
        Self {
            sweeper: fleet("sweeper"),
            members: fleet("members"),
            partitions,
        }
    }

    /// The keys of partition `index` (taken modulo the count, so any number is a partition).
    pub fn partition(&self, index: u32) -> &PartitionKeys {
        &self.partitions[index as usize % self.partitions.len()]
    }
}

/// The hash tag of partition `index` of `count`: `<prefix>:<index>:<k>` with the smallest `k`
/// whose slot falls in the middle quarter of the index-th of `count` equal ranges of the slot
/// space. A cluster made with `redis-cli --cluster create` gives each master an equal
/// contiguous range of slots, so with at least as many partitions as masters every master
/// holds some, and about as many as the others (16 over 3 masters: 5, 6 and 5); the middle of
/// a range keeps a partition off the boundary between two masters. Plain `<prefix>:<index>`
/// tags land where CRC16 puts them: with 16 partitions over 3 masters, one master gets none
/// for about one prefix in 200.
fn partition_tag(prefix: &str, index: u32, count: u32) -> String {
    let width = SLOTS / count;
    let lo = index * SLOTS / count + width * 3 / 8;
    let hi = (lo + width / 4).max(lo + 1);
    // Each try lands in the window with probability about 1/(4 count); the fallback is never
    // reached in practice and still yields a usable (if unevenly placed) tag.
    (0..count.saturating_mul(256))
        .map(|k| format!("{prefix}:{index}:{k}"))
        .find(|tag| (lo..hi).contains(&u32::from(slot(tag.as_bytes()))))
        .unwrap_or_else(|| format!("{prefix}:{index}"))
}

/// The schedule of a destination's rate limit (`name`: the destination), shared by the fleet:
/// a hash tag of its own, so the limits of many destinations spread over a cluster.
pub fn rate_key(prefix: &str, name: &str) -> String {
    format!("{{{prefix}:rate:{name}}}")
}

/// The partition a message goes to: a stable hash of `key` (today the event id; an ordering key
/// later), so every process agrees without asking anyone.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(partitions.max(1))) as u32
}

/// The cluster slot of a key, as Redis computes it: CRC16 (XMODEM) of the hash tag (the part
/// between the first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, b| {
        (0..8).fold(crc ^ (u16::from(*b) << 8), |c, _| {
            if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `redis-cli cluster keyslot`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{foo}bar"), 12182);
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn partitions_cover_the_slot_space_evenly() {
        for (prefix, count) in [("hookd", 16), ("t-1234", 16), ("x", 3), ("hookd", 256)] {
            let keys = Keys::new(prefix, count);
            for p in &keys.partitions {
                let s = u32::from(slot(p.stream.as_bytes()));
                assert!(
                    s * count / SLOTS == p.index,
                    "{prefix} {count}: {p:?} at {s}"
                );
                for k in [&p.delayed, &p.completed, &p.dead] {
                    assert_eq!(slot(k.as_bytes()), slot(p.stream.as_bytes()));
                }
            }
            // Three masters, as `redis-cli --cluster create` splits the slots.
            if count >= 3 {
                let master = |s: u32| match s {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                };
                for m in 0..3 {
                    let held = keys
                        .partitions
                        .iter()
                        .filter(|p| master(u32::from(slot(p.stream.as_bytes()))) == m)
                        .count();
                    assert!(
                        held >= (count / 3) as usize,
                        "{prefix} {count}: master {m} holds {held}"
                    );
                }
            }
        }
        assert_eq!(slot(b"{hookd}:members"), slot(b"{hookd}:sweeper"));
    }

    #[test]
    fn partition_of_is_stable_and_spread() {
        assert_eq!(partition_of(b"abc", 16), partition_of(b"abc", 16));
        assert_eq!(partition_of(b"abc", 1), 0);
        let mut hits = [0u32; 16];
        for _ in 0..1600 {
            hits[partition_of(uuid::Uuid::now_v7().as_bytes(), 16) as usize] += 1;
        }
        assert!(hits.iter().all(|h| *h > 40), "{hits:?}");
    }
}
