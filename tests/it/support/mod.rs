//! What the integration tests share, one module per concern: each test's own store (`db`), hookd
//! in this process (`server`) or as child processes (`process`), recording HTTP targets
//! (`target`) and SMTP server (`smtp`), a load balancer in front (`haproxy`), signed webhooks
//! (`signing`), the shared services and private servers (`services`, `private`, a local Redis
//! Cluster in `cluster`), hosts on a network of the test's own that tests cut and degrade
//! (`netns`, `relay`), certificates (`tls`), the Python tools (`python`), raw
//! sockets (`raw`) and the one way to wait for something (`wait`). Nothing here is a mock: every test talks to real
//! servers over real connections. Nothing here asserts what hookd should do; the tests do.

mod brokers;
mod cluster;
mod db;
mod haproxy;
mod netns;
mod private;
mod process;
mod python;
mod raw;
mod relay;
mod server;
mod services;
mod signing;
mod smtp;
mod target;
mod tls;
mod transforms;
mod wait;

pub use brokers::*;
pub use cluster::*;
pub use db::*;
pub use haproxy::*;
pub use netns::*;
pub use private::*;
pub use process::*;
pub use python::*;
pub use raw::*;
pub use relay::*;
pub use server::*;
pub use services::*;
pub use signing::*;
pub use smtp::*;
pub use target::*;
pub use tls::*;
pub use transforms::*;
pub use wait::*;
