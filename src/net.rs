//! Address ranges as operators write them in settings (`10.0.0.0/8`, `::1`, `127.0.0.1`), shared
//! by the forward egress policy and the admin allow-list.
//!
//! Owns only the notation. It must never decide what a range allows: each user of it does.

use std::net::IpAddr;

use ipnet::IpNet;

/// `10.0.0.0/8`, `::1` or `127.0.0.1` (a single address is a /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
