//! Test webhooks made as a provider makes them: the sample events of the common event types of
//! every built-in provider (`samples`), and signing a body exactly as its provider would
//! (`sign`). Used by the CLI (`hookd sign`, `send`, `trigger`) and by the operator layer (the
//! console's "send a signed test event"), so neither depends on the other.
//!
//! It must never send anything nor read a configuration: callers give it the provider's
//! settings and post what it makes.

pub mod samples;
pub mod sign;
