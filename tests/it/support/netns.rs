//! Hosts for tests that cut the network between hookd's parts: one Linux network namespace per
//! host, each joined by a veth pair to a bridge of the test's own (a switch, in the root
//! namespace, which keeps the bridge's address for servers the test itself runs), on a private
//! /24 no other network on the machine uses. Made with `ip netns` and `ip link` as root; a
//! missing `ip netns` fails the test with what to do (never skips). Everything is named
//! `hkd-<pid>-…` (namespaces) or `hk<pid>-…` (links): dropping the [`Net`] kills what runs in
//! its namespaces and deletes them and the bridge, and a new [`Net`] first removes what a run
//! that was interrupted (its process gone) left behind. It only builds and breaks links; what
//! hookd must do about a broken one is for the tests to assert.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Networks made by this process so far: part of every name, so a test's names are its own.
static NETS: AtomicUsize = AtomicUsize::new(0);

/// Run a command, failing the test with its output if it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`{}` could not run ({e}): the network fault tests need iproute2 (`ip`, \
                 `bridge`; apt-get install iproute2) and root",
                args.join(" ")
            )
        });
    assert!(
        out.status.success(),
        "`{}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command whose failure does not matter (clean-up of what may already be gone).
fn try_run(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// Whether the process `pid` still runs.
fn alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// Kill everything running in namespace `ns`, then delete it (its veth ends go with it).
fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            try_run(&["kill", "-9", pid]);
        }
    }
    try_run(&["ip", "netns", "del", ns]);
}

/// Remove namespaces and links that a run whose process is gone left behind.
fn remove_leftovers() {
    for line in run(&["ip", "netns", "list"]).lines() {
        let ns = line.split_whitespace().next().unwrap_or("");
        if let Some(pid) = ns.strip_prefix("hkd-").and_then(|r| r.split('-').next())
            && !alive(pid)
        {
            remove_namespace(ns);
        }
    }
    for line in run(&["ip", "-o", "link", "show"]).lines() {
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if let Some(pid) = name.strip_prefix("hk").and_then(|r| r.split('-').next())
            && pid.chars().all(|c| c.is_ascii_digit())
            && !alive(pid)
        {
            try_run(&["ip", "link", "del", name]);
        }
    }
}

/// A /24 (its first three octets) that no address on the machine is in yet.
fn free_subnet() -> String {
    let taken = run(&["ip", "-o", "-4", "addr", "show"]);
    loop {
        let bits = uuid::Uuid::new_v4().as_u128();
        let subnet = format!("10.{}.{}", 100 + (bits % 150), (bits >> 8) % 256);
        if !taken.contains(&format!(" {subnet}.")) {
            return subnet;
        }
    }
}

/// One host: a network namespace with one interface (`eth0`) on the test's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace, for `ip netns exec`.
    pub ns: String,
    /// Its address on the test's network.
    pub ip: String,
    /// The root namespace's end of its veth pair, the bridge port: its "cable".
    link: String,
}

impl Host {
    /// `program` to be run on this host (`ip netns exec <ns> <program>`: the same process,
    /// since `ip` execs it, so its pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Pull the cable: the host's link goes down and it reaches nobody, nobody reaches it.
    pub fn cut(&self) {
        run(&["ip", "link", "set", &self.link, "down"]);
    }

    /// Make the link slow and lossy toward this host (`tc qdisc ... netem delay <ms> loss
    /// <percent>` on its bridge port): true if done, false if the kernel has no `sch_netem`
    /// (some VMs and containers), for the test to use a [`super::Relay`] instead.
    pub fn degrade(&self, delay_ms: u64, loss_percent: f64) -> bool {
        let out = Command::new("tc")
            .args(["qdisc", "add", "dev", &self.link, "root", "netem", "delay"])
            .arg(format!("{delay_ms}ms"))
            .arg("loss")
            .arg(format!("{loss_percent}%"))
            .output()
            .expect("the tc command is required (apt-get install iproute2)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("qdisc kind is unknown"),
            "tc qdisc add ... netem: {err}"
        );
        out.status.success()
    }

    /// End a [`Host::degrade`].
    pub fn restore(&self) {
        run(&["tc", "qdisc", "del", "dev", &self.link, "root"]);
    }

    /// Plug the cable back in.
    pub fn reconnect(&self) {
        run(&["ip", "link", "set", &self.link, "up"]);
    }
}

/// A test's network: a bridge and the hosts on it. Dropping it removes everything.
pub struct Net {
    /// The bridge's address (the root namespace's, where the test runs): servers the test runs
    /// itself, such as a recording target, listen here to be reachable from every host.
    pub gateway: String,
    prefix: String,
    subnet: String,
    bridge: String,
    hosts: Vec<Host>,
}

impl Net {
    /// A new bridge on a free /24. Fails the test, saying why, if network namespaces cannot be
    /// made here.
    pub fn new() -> Self {
        let probe = Command::new("ip").args(["netns", "list"]).output();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        assert!(
            probe.as_ref().is_ok_and(|o| o.status.success()) && root,
            "the network fault tests put each hookd part on a host of its own (a network \
             namespace) and need root and iproute2's `ip netns` (apt-get install iproute2; run \
             the tests as root, or in a container with CAP_NET_ADMIN and CAP_SYS_ADMIN); root: \
             {root}, `ip netns list`: {probe:?}"
        );
        remove_leftovers();
        let n = NETS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let subnet = free_subnet();
        let net = Self {
            gateway: format!("{subnet}.1"),
            prefix: format!("{pid}-{n}"),
            bridge: format!("hk{pid}-{n}b"),
            subnet,
            hosts: Vec::new(),
        };
        run(&["ip", "link", "add", &net.bridge, "type", "bridge"]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", net.gateway),
            "dev",
            &net.bridge,
        ]);
        run(&["ip", "link", "set", &net.bridge, "up"]);
        net
    }

    /// A new host named `name` (for the namespace's name) on the bridge.
    pub fn host(&mut self, name: &str) -> Host {
        let k = self.hosts.len() + 2;
        let host = Host {
            ns: format!("hkd-{}-{name}", self.prefix),
            ip: format!("{}.{k}", self.subnet),
            link: format!("hk{}v{k}", self.prefix),
        };
        let inner = format!("hk{}p{k}", self.prefix);
        run(&["ip", "netns", "add", &host.ns]);
        // Recorded before it is complete, so a failure below still cleans it up.
        self.hosts.push(host.clone());
        run(&[
            "ip", "link", "add", &host.link, "type", "veth", "peer", "name", &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &host.ns]);
        let inside = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &host.ns];
            all.extend_from_slice(args);
            run(&all);
        };
        inside(&["ip", "link", "set", &inner, "name", "eth0"]);
        inside(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", host.ip),
            "dev",
            "eth0",
        ]);
        inside(&["ip", "link", "set", "eth0", "up"]);
        inside(&["ip", "link", "set", "lo", "up"]);
        run(&["ip", "link", "set", &host.link, "master", &self.bridge]);
        run(&["ip", "link", "set", &host.link, "up"]);
        host
    }

    /// Partition `a` from `b` (and only them): their bridge ports are isolated, and isolated
    /// ports forward nothing to each other; both still reach every other host.
    pub fn partition(&self, a: &Host, b: &Host) {
        for h in [a, b] {
            run(&["bridge", "link", "set", "dev", &h.link, "isolated", "on"]);
        }
    }

    /// End a [`Net::partition`].
    pub fn heal(&self, a: &Host, b: &Host) {
        for h in [a, b] {
            run(&["bridge", "link", "set", "dev", &h.link, "isolated", "off"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            remove_namespace(&h.ns);
            // A namespace lives on while a socket in it does (a connection still sending its
            // last bytes to a host already gone); deleting the link now takes both ends of the
            // pair with it rather than leave them until the kernel lets the namespace go.
            try_run(&["ip", "link", "del", &h.link]);
        }
        try_run(&["ip", "link", "del", &self.bridge]);
    }
}
