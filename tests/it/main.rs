//! hookd's integration tests, in one test binary: one module per area, each against real parts
//! (PostgreSQL, SQLite, Redis, HTTP targets, an SMTP server, the `hookd` binary as a process).
//! One binary means the harness in `support` and hookd itself are compiled and linked once,
//! not once per area. Tests are named `<area>::<test>`, e.g. `webhooks::rejected_requests_store_nothing::sqlite`.

mod support;

mod actions;
mod admin;
mod balancer;
mod brokers;
mod cli;
mod console;
mod console_config;
mod faults;
mod group_commit;
mod handover;
mod limits;
mod listen;
mod liveconfig;
mod network;
mod observability;
mod openapi;
mod ordered;
mod probe;
mod process;
mod providers;
mod rate_limits;
mod redis_queue;
mod retention;
mod retry_window;
mod scale;
mod security;
mod transforms;
mod upgrade;
mod webhooks;
mod workers;
