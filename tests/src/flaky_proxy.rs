//! A TCP front for an S3 server that answers the first connections with `503 SlowDown` (what
//! S3 says when it throttles) and forwards the rest byte for byte: the retry path of a real
//! client against a real server, without touching either.

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
    stop: Arc<AtomicBool>,
}

impl FlakyProxy {
    /// Listens on a loopback port, throttles the first `throttle_first` connections and
    /// forwards the others to `upstream` (`host:port`).
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start(upstream: &str, throttle_first: usize) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the proxy")?;
        let address = listener.local_addr()?.to_string();
        let throttled = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (counter, stopped) = (throttled.clone(), stop.clone());
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
                    let upstream = upstream.clone();
                    thread::spawn(move || forward(client, &upstream));
                }
            }
        });
        Ok(Self { address, throttled, stop })
    }

    /// `http://127.0.0.1:PORT`, to use as the S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Connections answered with 503 so far.
    pub fn throttled(&self) -> usize {
        self.throttled.load(Ordering::Relaxed)
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

/// Copies bytes both ways until either side closes.
fn forward(client: TcpStream, upstream: &str) {
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upload = thread::spawn(move || pipe(client_reader, server));
    pipe(server_reader, client);
    let _ = upload.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
