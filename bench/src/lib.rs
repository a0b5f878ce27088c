//! hookd-bench: the load generator and the benchmark report behind `bench/run.sh`.
//!
//! `events` prepares signed requests before the clock starts, `http` is a minimal keep-alive
//! client, `load` drives a target closed- or open-loop and summarises, `report` turns a run's
//! measurements into `BENCHMARKS.md` and its chart, `processing` the processing measurements
//! (accept only, drain, to completion, cost per event) into their section and JSON. Nothing
//! here is linked into hookd.

pub mod events;
pub mod http;
pub mod load;
pub mod processing;
pub mod report;
