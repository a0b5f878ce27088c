//! hookd: a webhook ingestion gateway.
//!
//! The accept path is `http` → `verify` → `store` (commit) → `queue`; the processing path is
//! `queue` → `worker` → `actions`. Each module's doc says what it owns and what it must never do.
//! `app` wires the pieces together for the `serve` command and for tests.

pub mod actions;
pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod http;
pub mod live;
pub mod net;
pub mod ops;
pub mod queue;
pub mod store;
pub mod swap;
pub mod telemetry;
pub mod testevent;
pub mod transform;
pub mod verify;
pub mod worker;
