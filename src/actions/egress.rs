//! Where `forward` and broker steps may send events (server-side request forgery). Without an
//! allow-list, only public addresses: loopback, private, link-local (cloud metadata), shared
//! (CGNAT), unique-local and other special ranges are refused unless
//! `HOOKD_FORWARD_ALLOW_PRIVATE=true`. With `HOOKD_FORWARD_ALLOW`, only what it lists: host
//! names (`ledger.internal`), domains (`*.example.com`) and address ranges (`10.1.0.0/16`). A
//! listed name may lead only to public addresses or to a listed range: listing `*.corp.example`
//! does not open loopback, link-local (cloud metadata) or private addresses to whoever controls
//! a name under it.
//!
//! Checked twice: at start for every forward URL (a literal address, or a name the list cannot
//! allow, stops hookd with the setting to change), and at connection time by the HTTP client's
//! resolver, which drops every resolved address the policy refuses, so a name cannot be pointed
//! at an internal address later (DNS rebinding). It must never let the client connect to an
//! address it has not checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A host name, lower-case.
    Host(String),
    /// `*.example.com`: any name under `.example.com` (not `example.com` itself).
    Domain(String),
    Net(IpNet),
}

/// The destinations forwards may reach.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// `None`: any public address.
    allow: Option<Vec<Rule>>,
    /// Without an allow-list: private and special ranges too.
    allow_private: bool,
}

impl EgressPolicy {
    /// Everything allowed: for tools and tests that build actions by hand.
    pub fn any() -> Self {
        Self {
            allow: None,
            allow_private: true,
        }
    }

    /// From `HOOKD_FORWARD_ALLOW` entries and `HOOKD_FORWARD_ALLOW_PRIVATE`.
    pub fn new(allow: Option<&[String]>, allow_private: bool) -> Result<Self, EgressError> {
        let allow = allow
            .map(|list| {
                list.iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(parse_rule)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            allow,
            allow_private,
        })
    }

    fn host_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.iter().flatten().any(|r| match r {
            Rule::Host(h) => *h == host,
            Rule::Domain(d) => host.ends_with(d.as_str()),
            Rule::Net(_) => false,
        })
    }

    /// May a connection to `ip` (reached as `host`, if by name) be made?
    pub fn allows(&self, host: Option<&str>, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match &self.allow {
            Some(rules) => {
                // A listed range is reachable by any name; a listed name only reaches public
                // addresses, or its DNS could point forwards at the metadata service.
                rules
                    .iter()
                    .any(|r| matches!(r, Rule::Net(n) if n.contains(&ip)))
                    || (host.is_some_and(|h| self.host_listed(h)) && is_public(ip))
            }
            None => self.allow_private || is_public(ip),
        }
    }

    /// The start-up check of one URL a step of `action` (`forward`, `rabbitmq`, ...) sends to;
    /// the error names the action and says what to set.
    pub fn check_url(&self, action: &'static str, url: &reqwest::Url) -> Result<(), EgressError> {
        let refused = |target: String| {
            Err(if self.allow.is_some() {
                EgressError::NotListed { action, target }
            } else {
                EgressError::Private { action, target }
            })
        };
        let Some(host) = url.host_str() else {
            return Err(EgressError::NoHost { action });
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(addr) = bare.parse::<IpAddr>() {
            return if self.allows(None, addr) {
                Ok(())
            } else {
                refused(addr.to_string())
            };
        }
        let could = match &self.allow {
            // A name is checked again, address by address, when it is resolved.
            None => self.allow_private || !host.eq_ignore_ascii_case("localhost"),
            Some(rules) => {
                self.host_listed(host) || rules.iter().any(|r| matches!(r, Rule::Net(_)))
            }
        };
        if could {
            Ok(())
        } else {
            refused(host.to_owned())
        }
    }
}

/// Why a step's destination (a forward's or a broker's) or an allow-list entry is refused;
/// each names the step's action and says what to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("{action} to {target} is refused: it is not on HOOKD_FORWARD_ALLOW; add it there")]
    NotListed {
        action: &'static str,
        target: String,
    },
    #[error(
        "{action} to {target} is refused: it is a private or special address; list it in \
         HOOKD_FORWARD_ALLOW (e.g. HOOKD_FORWARD_ALLOW=10.0.0.0/8,ledger.internal) or set \
         HOOKD_FORWARD_ALLOW_PRIVATE=true"
    )]
    Private {
        action: &'static str,
        target: String,
    },
    #[error("{action} url has no host")]
    NoHost { action: &'static str },
    #[error(
        "HOOKD_FORWARD_ALLOW entry {entry:?}: expected a host name, *.domain, an IP address or a \
         CIDR range"
    )]
    Entry { entry: String },
}

fn parse_rule(s: &str) -> Result<Rule, EgressError> {
    if let Some(net) = crate::net::parse_net(s) {
        return Ok(Rule::Net(net));
    }
    let lower = s.to_ascii_lowercase();
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    match lower.strip_prefix("*.") {
        Some(domain) if valid(domain) => Ok(Rule::Domain(format!(".{domain}"))),
        None if valid(&lower) => Ok(Rule::Host(lower)),
        _ => Err(EgressError::Entry {
            entry: s.to_owned(),
        }),
    }
}

/// `::ffff:10.0.0.1` is judged as `10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated, but still an address), IPv4-translated `::ffff:0:a.b.c.d` and 6to4
/// `2002:AABB:CCDD::/48`. Such an address is judged by the IPv4 address inside it.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let [hi, lo] = [s[6], s[7]];
    let tail = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] | [0, 0, 0, 0, 0xffff, 0, ..] => Some(tail),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, ..] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))),
        _ => None,
    }
}

/// An address on the public internet (not loopback, private, link-local, shared, multicast,
/// documentation, benchmarking or reserved). IPv6 addresses that embed an IPv4 address are
/// judged by it; Teredo (`2001::/32`, which tunnels to an address hidden in the rest) and NAT64
/// prefixes are never public.
pub fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || seg[0] == 0x2001 && seg[1] == 0x0db8
                // Teredo.
                || seg[0] == 0x2001 && seg[1] == 0
                // NAT64: well-known and local-use prefixes.
                || seg[0] == 0x0064 && seg[1] == 0xff9b
                // Discard-only.
                || seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])
        }
    }
}

/// The forward client's resolver: system resolution, then the policy on every address.
pub struct EgressResolver(pub Arc<EgressPolicy>);

#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to addresses refused by the forward policy (HOOKD_FORWARD_ALLOW, HOOKD_FORWARD_ALLOW_PRIVATE)"
)]
pub struct Refused {
    host: String,
}

impl Resolve for EgressResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found
                .filter(|a| policy.allows(Some(&host), a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            "192.0.2.1",
            "198.18.0.1",
            // IPv4 inside IPv6: compatible, translated, 6to4; Teredo, NAT64, discard.
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:0:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s}");
        }
        for s in ["::8.8.8.8", "::ffff:0:8.8.8.8", "2002:808:808::1"] {
            assert!(is_public(ip(s)), "{s}");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s}");
        }
    }

    #[test]
    fn a_refusal_names_the_action_of_the_step() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let private = EgressPolicy::new(None, false).unwrap();
        let e = private
            .check_url("rabbitmq", &url("amqp://guest:guest@10.0.0.5:5672/%2f"))
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "rabbitmq to 10.0.0.5 is refused: it is a private or special address; list it \
                 in HOOKD_FORWARD_ALLOW"
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("guest"), "{e}");
        let listed = EgressPolicy::new(Some(&["ledger.internal".to_owned()]), false).unwrap();
        assert_eq!(
            listed
                .check_url("nats", &url("nats://bus.internal:4222"))
                .unwrap_err()
                .to_string(),
            "nats to bus.internal is refused: it is not on HOOKD_FORWARD_ALLOW; add it there"
        );
        assert_eq!(
            private
                .check_url("redis_stream", &url("unix:/run/redis.sock"))
                .unwrap_err()
                .to_string(),
            "redis_stream url has no host"
        );
        assert!(
            private
                .check_url("forward", &url("http://127.0.0.1/in"))
                .unwrap_err()
                .to_string()
                .starts_with("forward to 127.0.0.1 is refused")
        );
    }

    #[test]
    fn default_policy_refuses_private_addresses() {
        let p = EgressPolicy::new(None, false).unwrap();
        assert!(!p.allows(Some("ledger.internal"), ip("10.0.0.5")));
        assert!(p.allows(Some("api.example.com"), ip("93.184.216.34")));
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(
            p.check_url("forward", &url("http://127.0.0.1:9000/in"))
                .unwrap_err()
                .to_string()
                .contains("HOOKD_FORWARD_ALLOW")
        );
        assert!(p.check_url("forward", &url("http://[::1]/in")).is_err());
        assert!(p.check_url("forward", &url("http://localhost/in")).is_err());
        assert!(
            p.check_url("forward", &url("https://ledger.internal/in"))
                .is_ok(),
            "names are checked when resolved"
        );
        let open = EgressPolicy::new(None, true).unwrap();
        assert!(
            open.check_url("forward", &url("http://127.0.0.1:9000/in"))
                .is_ok()
        );
        assert!(open.allows(None, ip("10.0.0.5")));
    }

    #[test]
    fn allow_list_names_hosts_domains_and_ranges() {
        let list: Vec<String> = ["ledger.internal", "*.example.com", "10.1.0.0/16", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = EgressPolicy::new(Some(&list), false).unwrap();
        assert!(p.allows(Some("ledger.internal"), ip("10.1.9.9")));
        assert!(p.allows(Some("ledger.internal"), ip("8.8.4.4")));
        assert!(p.allows(Some("LEDGER.internal."), ip("10.1.9.9")));
        assert!(p.allows(Some("a.b.example.com"), ip("8.8.8.8")));
        // A listed name cannot lead to special addresses outside the listed ranges.
        for special in [
            "10.9.9.9",
            "127.0.0.1",
            "169.254.169.254",
            "::ffff:127.0.0.1",
            "fe80::1",
        ] {
            assert!(!p.allows(Some("ledger.internal"), ip(special)), "{special}");
            assert!(!p.allows(Some("x.example.com"), ip(special)), "{special}");
        }
        assert!(!p.allows(Some("example.com"), ip("8.8.8.8")));
        assert!(!p.allows(Some("evilexample.com"), ip("8.8.8.8")));
        assert!(p.allows(Some("anything"), ip("10.1.2.3")));
        assert!(p.allows(None, ip("::1")));
        assert!(
            !p.allows(Some("public.org"), ip("8.8.8.8")),
            "only what is listed"
        );
        for bad in ["http://x", "*.", "a..b", "exa mple.com"] {
            assert!(
                EgressPolicy::new(Some(&[bad.to_string()]), false).is_err(),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn without_a_list_a_refused_address_is_never_public(a: u8, b: u8, c: u8, d: u8) {
            let addr = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            let p = EgressPolicy::new(None, false).unwrap();
            prop_assert_eq!(p.allows(Some("h"), addr), is_public(addr));
            prop_assert!(EgressPolicy::any().allows(None, addr));
        }
    }
}
