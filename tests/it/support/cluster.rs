//! A private Redis Cluster on loopback, made with Debian's redis-server and redis-cli: masters
//! and replicas on free ports, a short node timeout so a killed master fails over in seconds.
//! Every node is killed when the cluster is dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

/// One node of a [`LocalCluster`].
pub struct ClusterNode {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl ClusterNode {
    fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1500"])
            // Replicas sync at once rather than after Redis's default 5 s wait.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--cluster-config-file")
            .arg(dir.path().join("nodes.conf"))
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required");
        Self {
            port,
            _dir: dir,
            child,
        }
    }

    /// `redis-cli -p <port> <args>`'s output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli is required");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether it answers as a master (a killed node answers nothing).
    pub fn is_master(&self) -> bool {
        self.cli(&["role"]).lines().next() == Some("master")
    }

    /// SIGKILL, at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `masters` masters with `replicas` replicas each.
pub struct LocalCluster {
    pub nodes: Vec<ClusterNode>,
}

impl LocalCluster {
    pub async fn start(masters: usize, replicas: usize) -> Self {
        let nodes: Vec<ClusterNode> = (0..masters * (1 + replicas))
            .map(|_| ClusterNode::start())
            .collect();
        for n in &nodes {
            let _listening = eventually(
                format!("cluster node {} to listen", n.port),
                Duration::from_secs(10),
                || async { std::net::TcpStream::connect(("127.0.0.1", n.port)).map(drop) },
                Result::is_ok,
            )
            .await;
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli is required");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_ok(Duration::from_secs(30)).await;
        // A replica that has never synced does not take over (its data is too old).
        eventually(
            "every replica to be in sync with its master",
            Duration::from_secs(30),
            || async {
                cluster
                    .nodes
                    .iter()
                    .filter(|n| {
                        n.cli(&["info", "replication"])
                            .contains("master_link_status:up")
                    })
                    .count()
            },
            |synced| *synced == masters * replicas,
        )
        .await;
        cluster
    }

    /// SIGKILL a master and wait until one of its replicas has taken over its slots. Returns
    /// the index of the killed node.
    pub async fn kill_a_master(&mut self) -> usize {
        let masters = self.nodes.iter().filter(|n| n.is_master()).count();
        let i = self
            .nodes
            .iter()
            .position(ClusterNode::is_master)
            .expect("a master");
        self.nodes[i].kill();
        eventually(
            "a replica to take over the killed master's slots",
            Duration::from_secs(30),
            || async {
                let live = self.nodes.iter().filter(|n| n.is_master()).count();
                let ok = self
                    .nodes
                    .iter()
                    .filter(|n| n.is_master())
                    .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
                (live, ok)
            },
            |(live, ok)| *live == masters && *ok,
        )
        .await;
        i
    }

    /// Wait until every node still running says `cluster_state:ok` (after a failover too).
    async fn wait_ok(&self, within: Duration) {
        eventually(
            "every cluster node to say cluster_state:ok",
            within,
            || async {
                self.nodes
                    .iter()
                    .filter(|n| std::net::TcpStream::connect(("127.0.0.1", n.port)).is_ok())
                    .map(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
                    .collect::<Vec<_>>()
            },
            |ok| ok.iter().all(|&ok| ok),
        )
        .await;
    }

    /// Every node's URL (what `REDIS_CLUSTER_NODES` lists).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The slot of a key, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap()
    }
}
