//! A TCP relay that can make a link slow and lossy, for kernels without `sch_netem` (`tc qdisc
//! ... netem` answers "Specified qdisc kind is unknown" there and no module can be loaded). It
//! stands where a router would, between the clients and one server: while degraded, every chunk
//! in either direction arrives `delay / 2` later (so a round trip takes `delay` longer) and a
//! `loss` share of chunks arrives a retransmission timeout later still, with everything behind
//! it held back in order, which is what a lost TCP segment looks like to the programs on both
//! ends. It only relays; what the programs must do about a bad link is for the tests to assert.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Linux's minimum retransmission timeout plus the degraded round trip: how late a chunk whose
/// segment was "lost" arrives.
const RETRANSMIT: Duration = Duration::from_millis(400);

struct Link {
    degraded: AtomicBool,
    delay: Duration,
    /// Chunks "lost", per million.
    loss_ppm: u64,
    /// A xorshift state: which chunks are "lost".
    dice: AtomicU64,
    lost: AtomicU64,
}

impl Link {
    /// How much later than now a chunk read now arrives.
    fn lateness(&self) -> Duration {
        if !self.degraded.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let mut x = self.dice.load(Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.dice.store(x, Ordering::SeqCst);
        if x % 1_000_000 < self.loss_ppm {
            self.lost.fetch_add(1, Ordering::SeqCst);
            self.delay / 2 + RETRANSMIT
        } else {
            self.delay / 2
        }
    }
}

/// A relay listening on `addr` in front of one server.
pub struct Relay {
    /// Where clients connect instead of the server (`ip:port`).
    pub addr: String,
    link: Arc<Link>,
}

impl Relay {
    /// Relay connections to `ip` (bound on `ip`, a free port) to `upstream`; `delay` is added
    /// to each round trip and `loss` (0 to 1) of the chunks are late by a retransmission while
    /// [`Relay::degrade`] is on.
    pub async fn start(ip: &str, upstream: String, delay: Duration, loss: f64) -> Self {
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let link = Arc::new(Link {
            degraded: AtomicBool::new(false),
            delay,
            loss_ppm: (loss * 1_000_000.0) as u64,
            dice: AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1),
            lost: AtomicU64::new(0),
        });
        let l = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (l, upstream) = (l.clone(), upstream.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pump(cr, sw, l.clone()), pump(sr, cw, l));
                    }
                });
            }
        });
        Self { addr, link }
    }

    /// Make the link slow and lossy (true) or clean again (false).
    pub fn degrade(&self, on: bool) {
        self.link.degraded.store(on, Ordering::SeqCst);
    }

    /// Chunks that were "lost" (delivered a retransmission late) so far.
    pub fn lost(&self) -> u64 {
        self.link.lost.load(Ordering::SeqCst)
    }
}

/// Copy one direction: a reader stamps each chunk with when it may arrive (never before the one
/// ahead of it), a writer delivers them at those times.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut last = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last = last.max(Instant::now() + link.lateness());
        if tx.send((last, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
