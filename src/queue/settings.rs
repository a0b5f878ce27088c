//! Settings of the Redis Streams queue: where Redis is, the key prefix, and how much history it
//! keeps. Owns their defaults and their checks. It must never read the environment or a file:
//! the configuration reader fills [`RedisConfig`] and hands it over.

use std::time::Duration;

/// Where the Redis queue lives and how much of its history it keeps.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// Key prefix; keys are `{<prefix>}:<name>` so all of them share one cluster slot.
    pub prefix: String,
    /// Completed job records kept in Redis (the store keeps everything).
    pub keep_completed: usize,
    /// Dead-lettered job records kept in the dead-letter stream.
    pub keep_failed: usize,
    /// An event committed but not claimed for this long is enqueued again by the sweeper.
    pub sweep_grace: Duration,
}

impl RedisConfig {
    /// The defaults, for this target.
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            prefix: "hookd".into(),
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
    /// Every URL is a Redis URL; the prefix fits in a hash tag.
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
        Ok(())
    }
}
