//! A TCP front for an S3 server that answers the first connections with `503 SlowDown` (what
//! S3 says when it throttles) and forwards the rest byte for byte: the retry path of a real
//! client against a real server, without touching either. It can also damage bodies in transit
//! (one flipped byte in the first uploads to matching paths), as a bad link or NIC would.
//!
//! It can also be switched to a [`ProxyFault`] while it runs (the chaos campaign's S3 faults):
//! every connection answered `503 SlowDown`, connections reset mid-request, a latency spike,
//! every pack upload damaged, every response cut short, or nothing answered at all (a silent
//! partition); switching cuts the connections in flight, so pooled keep-alive connections meet
//! the fault too.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Context;

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message></Error>";

/// The proxy; it stops accepting when dropped.
pub struct FlakyProxy {
    address: String,
    throttled: Arc<AtomicUsize>,
    damage: Arc<Damage>,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
}

/// A fault the proxy can be switched to while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFault {
    /// Forward everything.
    None = 0,
    /// Answer every connection with `503 SlowDown`.
    SlowDown = 1,
    /// Read part of each request, then reset the connection.
    Reset = 2,
    /// Hold each new connection for a second before forwarding it.
    Latency = 3,
    /// Flip a byte in the body of every pack upload (`PUT …/packs/…`).
    DamageUploads = 4,
    /// Cut every response after its first 4 KiB (a body that ends early).
    TruncateResponses = 5,
    /// A partition: connections are accepted and then never answered (requests are read and
    /// dropped), until the fault changes and they are cut. What a client meets when the link
    /// to its store goes silent, not refused: only its own timeouts get it out.
    Unreachable = 6,
}

impl ProxyFault {
    fn from_u8(value: u8) -> ProxyFault {
        match value {
            1 => ProxyFault::SlowDown,
            2 => ProxyFault::Reset,
            3 => ProxyFault::Latency,
            4 => ProxyFault::DamageUploads,
            5 => ProxyFault::TruncateResponses,
            6 => ProxyFault::Unreachable,
            _ => ProxyFault::None,
        }
    }
}

/// The current fault and the connections being forwarded (to cut when a fault starts).
#[derive(Default)]
struct Live {
    fault: AtomicU8,
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, TcpStream>>,
}

impl Live {
    fn fault(&self) -> ProxyFault {
        ProxyFault::from_u8(self.fault.load(Ordering::Relaxed))
    }

    fn register(&self, client: &TcpStream) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clone = client.try_clone().ok()?;
        self.connections.lock().unwrap_or_else(|poison| poison.into_inner()).insert(id, clone);
        Some(id)
    }

    fn forget(&self, id: u64) {
        self.connections.lock().unwrap_or_else(|poison| poison.into_inner()).remove(&id);
    }
}

/// Which uploads get a flipped byte: the first `limit` `PUT`s whose path contains `marker`.
#[derive(Default)]
struct Damage {
    marker: String,
    limit: usize,
    done: AtomicUsize,
}

impl Damage {
    /// Whether the request with this head gets its body damaged (and counts it).
    fn applies_to(&self, head: &str) -> bool {
        let mut words = head.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else { return false };
        method == "PUT"
            && !self.marker.is_empty()
            && path.contains(&self.marker)
            && self
                .done
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
                    (done < self.limit).then_some(done + 1)
                })
                .is_ok()
    }
}

impl FlakyProxy {
    /// Listens on a loopback port, throttles the first `throttle_first` connections and
    /// forwards the others to `upstream` (`host:port`).
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start(upstream: &str, throttle_first: usize) -> anyhow::Result<Self> {
        Self::start_with(upstream, throttle_first, Damage::default())
    }

    /// Listens on a loopback port and forwards everything to `upstream`, flipping one byte in
    /// the body of each of the first `limit` `PUT` requests whose path contains `marker`.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start_damaging(upstream: &str, marker: &str, limit: usize) -> anyhow::Result<Self> {
        let damage = Damage { marker: marker.to_string(), limit, done: AtomicUsize::new(0) };
        Self::start_with(upstream, 0, damage)
    }

    fn start_with(upstream: &str, throttle_first: usize, damage: Damage) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the proxy")?;
        let address = listener.local_addr()?.to_string();
        let throttled = Arc::new(AtomicUsize::new(0));
        let damage = Arc::new(damage);
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let upstream = upstream.to_string();
        let (counter, stopped, damaging) = (throttled.clone(), stop.clone(), damage.clone());
        let switch = live.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let fault = switch.fault();
                if counter.load(Ordering::Relaxed) < throttle_first || fault == ProxyFault::SlowDown
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                    thread::spawn(move || throttle(client));
                } else if fault == ProxyFault::Reset {
                    thread::spawn(move || reset(client));
                } else if fault == ProxyFault::Unreachable {
                    let live = switch.clone();
                    thread::spawn(move || {
                        let id = live.register(&client);
                        swallow(client);
                        if let Some(id) = id {
                            live.forget(id);
                        }
                    });
                } else {
                    let (upstream, damaging, live) =
                        (upstream.clone(), damaging.clone(), switch.clone());
                    thread::spawn(move || {
                        if fault == ProxyFault::Latency {
                            thread::sleep(Duration::from_millis(1000));
                        }
                        let id = live.register(&client);
                        forward(client, &upstream, damaging, &live);
                        if let Some(id) = id {
                            live.forget(id);
                        }
                    });
                }
            }
        });
        Ok(Self { address, throttled, damage, stop, live })
    }

    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Connections answered with 503 so far.
    pub fn throttled(&self) -> usize {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Request bodies damaged so far.
    pub fn damaged(&self) -> usize {
        self.damage.done.load(Ordering::Relaxed)
    }

    /// Switches to `fault` (`ProxyFault::None` heals); every switch cuts the connections in
    /// flight (a fault meets pooled connections at once; healing frees those held silent).
    pub fn set_fault(&self, fault: ProxyFault) {
        self.live.fault.store(fault as u8, Ordering::Relaxed);
        let mut connections =
            self.live.connections.lock().unwrap_or_else(|poison| poison.into_inner());
        for (_, connection) in connections.drain() {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.address);
    }
}

/// Reads the request head, answers 503 SlowDown and closes the connection.
fn throttle(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{SLOW_DOWN}",
        SLOW_DOWN.len()
    );
    let _ = client.write_all(response.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads part of the request, then resets the connection.
fn reset(mut client: TcpStream) {
    let mut some = [0u8; 64];
    let _ = client.read(&mut some);
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads and drops whatever the client sends, answering nothing, until the connection is cut.
fn swallow(mut client: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    while matches!(client.read(&mut buffer), Ok(read) if read > 0) {}
}

/// Copies bytes both ways until either side closes; requests may be damaged on the way up.
fn forward(client: TcpStream, upstream: &str, damage: Arc<Damage>, live: &Arc<Live>) {
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let uploads = live.clone();
    let upload = thread::spawn(move || pipe_requests(client_reader, server, &damage, &uploads));
    pipe_responses(server_reader, client, live);
    let _ = upload.join();
}

/// Copies responses down; while the fault is [`ProxyFault::TruncateResponses`], cuts the
/// connection after 4 KiB of it.
fn pipe_responses(mut from: TcpStream, mut to: TcpStream, live: &Live) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let truncating = live.fault() == ProxyFault::TruncateResponses;
        let keep = if truncating { read.min(4096usize.saturating_sub(sent)) } else { read };
        if to.write_all(&buffer[..keep]).is_err() || keep < read {
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
            return;
        }
        sent += keep;
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Forwards HTTP/1.1 requests (heads, then `Content-Length` bodies), flipping the eighth byte
/// of a body (or its last, if shorter) when [`Damage`] says so.
fn pipe_requests(mut from: TcpStream, mut to: TcpStream, damage: &Damage, live: &Live) {
    let (mut head, mut body_left, mut damage_at) = (Vec::new(), 0usize, None::<usize>);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut out = Vec::with_capacity(read);
        let mut at = 0;
        while at < read {
            if body_left > 0 {
                let take = body_left.min(read - at);
                let start = out.len();
                out.extend_from_slice(&buffer[at..at + take]);
                damage_at = match damage_at {
                    Some(offset) if offset < take => {
                        out[start + offset] ^= 0xff;
                        None
                    }
                    Some(offset) => Some(offset - take),
                    None => None,
                };
                body_left -= take;
                at += take;
                continue;
            }
            head.push(buffer[at]);
            at += 1;
            if head.ends_with(b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&head).to_string();
                body_left = content_length(&text);
                let pack_put = text.starts_with("PUT ")
                    && text.split_whitespace().nth(1).is_some_and(|path| path.contains("/packs/"));
                let damaging = pack_put && live.fault() == ProxyFault::DamageUploads;
                if body_left > 0 && (damaging || damage.applies_to(&text)) {
                    damage_at = Some(7.min(body_left - 1));
                }
                out.append(&mut head);
            }
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that answers every connection with `size` bytes, then closes.
    fn upstream(size: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let address = listener.local_addr().expect("an address").to_string();
        thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                let mut request = [0u8; 16];
                let _ = client.read(&mut request);
                let _ = client.write_all(&vec![7u8; size]);
            }
        });
        address
    }

    fn fetch(proxy: &FlakyProxy) -> usize {
        let mut stream = TcpStream::connect(&proxy.address).expect("the proxy answers");
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("sent");
        let mut body = Vec::new();
        let _ = stream.read_to_end(&mut body);
        body.len()
    }

    #[test]
    fn test_responses_are_cut_short_only_while_the_fault_is_on() {
        let proxy = FlakyProxy::start(&upstream(10_000), 0).expect("the proxy starts");
        assert_eq!(fetch(&proxy), 10_000);
        proxy.set_fault(ProxyFault::TruncateResponses);
        assert_eq!(fetch(&proxy), 4096);
        proxy.set_fault(ProxyFault::None);
        assert_eq!(fetch(&proxy), 10_000);
    }

    #[test]
    fn test_an_unreachable_store_answers_nothing_until_healed() {
        let proxy = FlakyProxy::start(&upstream(100), 0).expect("the proxy starts");
        proxy.set_fault(ProxyFault::Unreachable);
        let mut stream = TcpStream::connect(&proxy.address).expect("the proxy accepts");
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("sent");
        stream.set_read_timeout(Some(Duration::from_millis(300))).expect("a timeout");
        let mut byte = [0u8; 1];
        let silent = stream.read(&mut byte);
        assert!(silent.is_err(), "a partitioned store answered: {silent:?}");
        // Healing cuts the held connection (the client sees it end) and forwards new ones.
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a timeout");
        proxy.set_fault(ProxyFault::None);
        assert!(matches!(stream.read(&mut byte), Ok(0) | Err(_)));
        assert_eq!(fetch(&proxy), 100);
    }
}
