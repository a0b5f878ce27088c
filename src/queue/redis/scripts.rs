//! The Lua scripts of the Redis queue: each a step that must happen atomically.
//!
//! Owns the scripts' text and their calling conventions (documented above each). A script must
//! never touch keys of two hash tags: every key it is given belongs to one partition, or to the
//! fleet-wide `{<prefix>}` tag.

use redis::Script;

/// KEYS: delayed, stream. ARGV: now (ms), max to move. Moves due retries to the stream; returns
/// `{moved, due}` where `due` is the earliest remaining due time (ms), or -1 when none is left,
/// so the partition's reader blocks no longer than that.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'id', id)
  redis.call('ZREM', KEYS[1], id)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then next_due = tonumber(first[2]) end
return {#due, next_due}
";

/// KEYS: stream, delayed, completed, dead. ARGV: group, message id ('' if none), event id,
/// kind (completed|delay|dead), due at (ms), keep completed, keep failed, error, provider.
/// Acknowledges the message and files the job record, in one step.
const SETTLE: &str = r"
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
if ARGV[4] == 'delay' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
elseif ARGV[4] == 'completed' then
  if tonumber(ARGV[6]) > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[6], '*', 'id', ARGV[3], 'provider', ARGV[9])
  else
    redis.call('DEL', KEYS[3])
  end
else
  if tonumber(ARGV[7]) > 0 then
    redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[7], '*', 'id', ARGV[3], 'provider', ARGV[9], 'error', ARGV[8])
  else
    redis.call('DEL', KEYS[4])
  end
end
return 1
";

/// KEYS: sweeper lease. ARGV: owner, lease (ms). 1 if the caller holds the lease afterwards.
const LEADER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// KEYS: members. ARGV: member, time to live (ms), 1 to stay or 0 to leave. Drops expired
/// members, renews (or removes) the caller, and returns the live members. Expiry is judged by
/// the Redis server's clock, so hosts whose clocks disagree do not expel each other.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// KEYS: stream. ARGV: group, then pairs of message id and event id ('' for none). Hands back
/// messages read but never given to a worker: each is acknowledged, deleted and added again as
/// a new message, which the partition's next reader reads at once.
const HAND_BACK: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
  if ARGV[i + 1] ~= '' then
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[i + 1])
  end
end
return 1
";

/// KEYS: stream. ARGV: group, idle (ms), then the live members. Deletes the consumers of
/// processes that are gone: not a live member, idle longer than given, and holding no pending
/// message. Checked and deleted in one step, because deleting a consumer also forgets the
/// messages it holds, which would then never be delivered again.
const FORGET_CONSUMERS: &str = r"
local live = {}
for i = 3, #ARGV do live[ARGV[i]] = true end
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) and not live[f['name']] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed = removed + 1
  end
end
return removed
";

/// KEYS: a destination's rate schedule. ARGV: interval (µs), horizon (µs). A GCRA without
/// burst on the server's clock: the key holds the next free slot (µs since the epoch). If that
/// slot starts within the horizon it is taken and the key moves one interval on (and expires
/// once the slot has passed); returns `{1 if taken else 0, wait until the slot (µs)}`.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = tonumber(redis.call('GET', KEYS[1])) or now
if slot < now then slot = now end
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local next_slot = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', next_slot), 'PX', math.ceil((next_slot - now) / 1000) + 1000)
return {1, wait}
";

/// The scripts, hashed once.
pub(super) struct Scripts {
    pub promote: Script,
    pub settle: Script,
    pub leader: Script,
    pub heartbeat: Script,
    pub hand_back: Script,
    pub forget_consumers: Script,
    pub reserve: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            promote: Script::new(PROMOTE),
            settle: Script::new(SETTLE),
            leader: Script::new(LEADER),
            heartbeat: Script::new(HEARTBEAT),
            hand_back: Script::new(HAND_BACK),
            forget_consumers: Script::new(FORGET_CONSUMERS),
            reserve: Script::new(RESERVE),
        }
    }
}
