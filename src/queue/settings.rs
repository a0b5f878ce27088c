//! Settings of the Redis Streams queue: where Redis is, the key prefix, how many partitions the
//! queue is split into, and how much history it keeps. Owns their defaults and their checks. It must never read the environment or a file:
//! the configuration reader fills [`RedisConfig`] and hands it over.

use std::time::Duration;

/// Where the Redis queue lives and how much of its history it keeps.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// Key prefix: partition keys are `{<prefix>:<n>:<k>}:<name>`, fleet-wide keys
    /// `{<prefix>}:<name>`.
    pub prefix: String,
    /// Partitions of the queue, each under its own hash tag (so a cluster spreads them over its
    /// masters) and read by one worker process at a time. Every process of a fleet must use the
    /// same count.
    pub partitions: u32,
    /// A worker process that has not renewed its membership for this long is taken for dead and
    /// its partitions go to the others. It renews every fifth of it.
    pub member_ttl: Duration,
    /// Completed job records kept in Redis (the store keeps everything).
    pub keep_completed: usize,
    /// Dead-lettered job records kept in the dead-letter stream.
    pub keep_failed: usize,
    /// An event committed but not claimed for this long is enqueued again by the sweeper.
    pub sweep_grace: Duration,
}

impl RedisConfig {
    /// Enough for every master of a small cluster (3 to 6) to hold several partitions, and for a
    /// fleet of up to 16 worker processes to give each one a partition; few enough that a
    /// process owning all of them keeps a handful of blocking connections.
    pub const DEFAULT_PARTITIONS: u32 = 16;
    /// Each partition's hash tag is searched for so that the tags cover the slot space evenly
    /// (about `partitions` tries each); beyond this the search, and the connections, cost more
    /// than they spread.
    pub const MAX_PARTITIONS: u32 = 256;

    /// The defaults, for this target.
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            prefix: "hookd".into(),
            partitions: Self::DEFAULT_PARTITIONS,
            member_ttl: Duration::from_secs(5),
            keep_completed: 10,
            keep_failed: 5,
            sweep_grace: Duration::from_secs(30),
        }
    }
}

/// One Redis server, or the nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// A Redis setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSettingError {
    /// The URL (with its password, if any, for the caller to redact).
    #[error("not a redis:// or rediss:// URL")]
    Url(String),
    #[error("the key prefix must be a non-empty name without braces")]
    Prefix,
    #[error("the partition count must be between 1 and {max}")]
    Partitions { max: u32 },
}

impl RedisTarget {
    /// Redis's port when only a host is given.
    pub const DEFAULT_PORT: u16 = 6379;

    /// Every URL it names.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::Single(u) => std::slice::from_ref(u),
            Self::Cluster(n) => n.as_slice(),
        }
    }
}

impl RedisConfig {
    /// Every URL is a Redis URL; the prefix fits in a hash tag; the partition count is in range.
    pub fn check(&self) -> Result<(), RedisSettingError> {
        if let Some(u) = self
            .target
            .urls()
            .iter()
            .find(|u| !(u.starts_with("redis://") || u.starts_with("rediss://")))
        {
            return Err(RedisSettingError::Url(u.clone()));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(RedisSettingError::Prefix);
        }
        if !(1..=Self::MAX_PARTITIONS).contains(&self.partitions) {
            return Err(RedisSettingError::Partitions {
                max: Self::MAX_PARTITIONS,
            });
        }
        Ok(())
    }
}
