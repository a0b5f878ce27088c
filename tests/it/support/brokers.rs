//! The brokers' side of broker-step tests: a RabbitMQ exchange and queue of the test's own on
//! the shared RabbitMQ, a JetStream stream of its own on the shared NATS or on a private
//! `nats-server` the test stops and restarts, a Redis stream key, each with a consumer that
//! reads back the exact bytes and headers; and a gate in front of a broker that the test opens,
//! closes (every connection cut, new ones refused) or makes deaf (requests pass, answers are
//! dropped). Real brokers throughout.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{eventually, free_port, unique_prefix};

/// The shared RabbitMQ (guest/guest on the default vhost).
pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The shared NATS server, with JetStream.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// One message as a consumer read it back: its bytes and its headers as text.
#[derive(Debug, Clone)]
pub struct BrokerMessage {
    pub body: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// A direct exchange and a queue bound to it, both named for one test, on the shared RabbitMQ.
pub struct RabbitQueue {
    pub exchange: String,
    pub queue: String,
    channel: Channel,
    _conn: Connection,
}

impl RabbitQueue {
    /// Declare the exchange and, when `routing_key` is given, a queue bound with it.
    pub async fn new(routing_key: Option<&str>) -> Self {
        let conn = Connection::connect(RABBITMQ_URL, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| {
                panic!("RabbitMQ is required at 127.0.0.1:5672 (guest/guest): {e}")
            });
        let channel = conn.create_channel().await.unwrap();
        let name = unique_prefix();
        let exchange = format!("{name}.x");
        let queue = format!("{name}.q");
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let rq = Self {
            exchange,
            queue,
            channel,
            _conn: conn,
        };
        if let Some(key) = routing_key {
            rq.bind(key).await;
        }
        rq
    }

    /// Declare the queue (exclusive to this test's connection) and bind it with `routing_key`.
    pub async fn bind(&self, routing_key: &str) {
        self.channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        self.channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }

    /// Take every message in the queue now.
    pub async fn drain(&self) -> Vec<BrokerMessage> {
        let mut out = Vec::new();
        while let Some(m) = self
            .channel
            .basic_get(self.queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let props = &m.delivery.properties;
            let mut headers = BTreeMap::new();
            for (k, v) in props.headers().iter().flat_map(|t| t.inner()) {
                if let AMQPValue::LongString(s) = v {
                    headers.insert(
                        k.to_string(),
                        String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    );
                }
            }
            if let Some(mode) = props.delivery_mode() {
                headers.insert("amqp.delivery_mode".into(), mode.to_string());
            }
            if let Some(id) = props.message_id() {
                headers.insert("amqp.message_id".into(), id.to_string());
            }
            if let Some(ct) = props.content_type() {
                headers.insert("amqp.content_type".into(), ct.to_string());
            }
            out.push(BrokerMessage {
                body: m.delivery.data.clone(),
                headers,
            });
        }
        out
    }

    /// Wait until `n` messages arrived in all (taking them), and return them.
    pub async fn wait(&self, n: usize, within: Duration) -> Vec<BrokerMessage> {
        let deadline = std::time::Instant::now() + within;
        let mut all = Vec::new();
        loop {
            all.extend(self.drain().await);
            if all.len() >= n {
                return all;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited {within:?} for {n} messages in queue {}; got {all:#?}",
                self.queue
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RabbitQueue {
    fn drop(&mut self) {
        // The queue is exclusive (it goes with the connection); the exchange is deleted here.
        let (channel, exchange) = (self.channel.clone(), self.exchange.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = channel
                    .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                    .await;
            });
        }
    }
}

/// A JetStream stream of the test's own, taking `<prefix>.>`.
pub struct NatsStream {
    pub name: String,
    /// Subjects under it: `<prefix>.anything`.
    pub prefix: String,
    js: async_nats::jetstream::Context,
}

impl NatsStream {
    /// Create a stream of a new name on the NATS server at `url`.
    pub async fn create(url: &str) -> Self {
        Self::create_as(url, unique_prefix()).await
    }

    /// Create the stream `name`, taking `<name>.>`, on the NATS server at `url`, with a
    /// two-minute duplicate window.
    pub async fn create_as(url: &str, name: String) -> Self {
        let stream = Self::open(url, name).await;
        stream
            .js
            .create_stream(async_nats::jetstream::stream::Config {
                name: stream.name.clone(),
                subjects: vec![format!("{}.>", stream.prefix)],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
        stream
    }

    /// The stream `name` that exists on the NATS server at `url`, through a new connection.
    pub async fn open(url: &str, name: String) -> Self {
        let client = async_nats::connect(url)
            .await
            .unwrap_or_else(|e| panic!("NATS with JetStream is required at {url}: {e}"));
        let js = async_nats::jetstream::new(client);
        Self {
            prefix: name.clone(),
            name,
            js,
        }
    }

    /// Messages stored in the stream.
    pub async fn count(&self) -> u64 {
        let mut stream = self.js.get_stream(&self.name).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// The message with sequence number `seq` (from 1).
    pub async fn message(&self, seq: u64) -> (String, BrokerMessage) {
        let stream = self.js.get_stream(&self.name).await.unwrap();
        let m = stream.get_raw_message(seq).await.unwrap();
        let headers = m
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.first().map(|v| v.as_str().to_owned()).unwrap_or_default(),
                )
            })
            .collect();
        (
            m.subject.to_string(),
            BrokerMessage {
                body: m.payload.to_vec(),
                headers,
            },
        )
    }

    /// Delete the stream (the shared server keeps streams across tests otherwise).
    pub async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}

/// A `nats-server` with JetStream of the test's own, storing in a folder of its own, so it can
/// be killed and started again with its streams.
pub struct PrivateNats {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    /// A port and a folder, the server not started.
    pub fn reserve() -> Self {
        Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start (or restart) it and wait until it accepts clients.
    pub async fn up(&mut self) {
        let child = Command::new("/usr/sbin/nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is required (/usr/sbin/nats-server)");
        self.child = Some(child);
        let url = self.url();
        let _ = eventually(
            format!("the private nats-server at {url} to accept clients"),
            Duration::from_secs(20),
            || async { async_nats::connect(&url).await.is_ok() },
            |ok| *ok,
        )
        .await;
    }

    /// kill -9: whatever it acknowledged is on disk in its folder.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The entries of the Redis stream `key` at `url`: each entry's fields, the body as bytes.
pub async fn redis_stream_entries(url: &str, key: &str) -> Vec<BrokerMessage> {
    let mut conn = super::redis_conn(url).await;
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|entry| {
            let mut body = Vec::new();
            let mut headers = BTreeMap::new();
            for (field, value) in entry.map {
                let bytes = match value {
                    redis::Value::BulkString(b) => b,
                    other => panic!("field {field} is not a string: {other:?}"),
                };
                if field == "body" {
                    body = bytes;
                } else {
                    headers.insert(field, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            BrokerMessage { body, headers }
        })
        .collect()
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const DEAF: u8 = 2;

/// A TCP gate in front of a broker: open (relays both ways), closed (every connection cut, new
/// ones accepted and dropped at once: a broker that is down), or deaf (what clients send
/// reaches the broker, its answers are dropped: the broker acted, the client never hears).
pub struct Gate {
    /// `127.0.0.1:<port>`: where clients connect instead of the broker.
    pub addr: String,
    mode: Arc<AtomicU8>,
    cut: watch::Sender<u64>,
    open_connections: Arc<AtomicUsize>,
}

impl Gate {
    /// A gate in front of `upstream`, open.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mode = Arc::new(AtomicU8::new(OPEN));
        let (cut, _) = watch::channel(0u64);
        let open_connections = Arc::new(AtomicUsize::new(0));
        let (m, c, upstream) = (mode.clone(), cut.clone(), upstream.to_owned());
        let count = open_connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if m.load(Ordering::SeqCst) == CLOSED {
                    continue;
                }
                let (m, upstream, rx) = (m.clone(), upstream.clone(), c.subscribe());
                let count = count.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pump(cr, sw, None, rx.clone());
                        let down = pump(sr, cw, Some(m), rx);
                        tokio::select! { _ = up => {}, _ = down => {} }
                        count.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            addr,
            mode,
            cut,
            open_connections,
        }
    }

    /// Connections relayed now (a client closing its side ends one).
    pub fn connections(&self) -> usize {
        self.open_connections.load(Ordering::SeqCst)
    }

    /// Cut every connection and refuse new ones.
    pub fn close(&self) {
        self.mode.store(CLOSED, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Relay again.
    pub fn open(&self) {
        self.mode.store(OPEN, Ordering::SeqCst);
    }

    /// Let requests through and drop the answers, on every connection.
    pub fn deafen(&self) {
        self.mode.store(DEAF, Ordering::SeqCst);
    }
}

/// Copy one direction until either side closes or the gate cuts; answers (`deaf` given) are
/// dropped while the gate is deaf.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    deaf: Option<Arc<AtomicU8>>,
    mut cut: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = cut.changed() => return,
        };
        if deaf
            .as_ref()
            .is_some_and(|m| m.load(Ordering::SeqCst) == DEAF)
        {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
