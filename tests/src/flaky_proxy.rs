//! A TCP front for an S3 server that answers the first connections with `503 SlowDown` (what
//! S3 says when it throttles) and forwards the rest byte for byte: the retry path of a real
//! client against a real server, without touching either. It can also damage bodies in transit
//! (one flipped byte in the first uploads to matching paths), as a bad link or NIC would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use anyhow::Context;

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
<Message>Please reduce your request rate.</Message></Error>";

/// The proxy; it stops accepting when dropped.
pub struct FlakyProxy {
    address: String,
    throttled: Arc<AtomicUsize>,
    damage: Arc<Damage>,
    stop: Arc<AtomicBool>,
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
        let upstream = upstream.to_string();
        let (counter, stopped, damaging) = (throttled.clone(), stop.clone(), damage.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                if counter.load(Ordering::Relaxed) < throttle_first {
                    counter.fetch_add(1, Ordering::Relaxed);
                    thread::spawn(move || throttle(client));
                } else {
                    let (upstream, damaging) = (upstream.clone(), damaging.clone());
                    thread::spawn(move || forward(client, &upstream, damaging));
                }
            }
        });
        Ok(Self { address, throttled, damage, stop })
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

/// Copies bytes both ways until either side closes; requests may be damaged on the way up.
fn forward(client: TcpStream, upstream: &str, damage: Arc<Damage>) {
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upload = thread::spawn(move || pipe_requests(client_reader, server, &damage));
    pipe(server_reader, client);
    let _ = upload.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Forwards HTTP/1.1 requests (heads, then `Content-Length` bodies), flipping the eighth byte
/// of a body (or its last, if shorter) when [`Damage`] says so.
fn pipe_requests(mut from: TcpStream, mut to: TcpStream, damage: &Damage) {
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
                if body_left > 0 && damage.applies_to(&text) {
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
