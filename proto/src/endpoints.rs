//! A client channel over the replicas a client knows, following the leader.
//!
//! Clients (bkctl, workers) are given one or more replica endpoints. A call goes to the current
//! one; when it answers UNAVAILABLE with a leader hint, the call is retried at the leader; when it
//! cannot be reached, the next endpoint is tried. Channels are opened lazily, once per endpoint.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::tls::endpoint_uri;
use crate::LEADER_ADDR_METADATA;

/// The endpoints of a coordinator cluster, with the one currently believed to be the leader.
#[derive(Debug)]
pub struct ReplicaEndpoints {
    /// `(address, lazily connected channel)` per known replica.
    ///
    /// A std mutex: held only to read or swap entries, never across an `.await`.
    replicas: Mutex<Vec<(String, Channel)>>,
    /// Index into `replicas` of the endpoint calls go to first.
    current: Mutex<usize>,
    /// Deadline of one attempt: a replica that stops answering (a dead machine, a half-open
    /// connection) costs at most this before the next endpoint is tried.
    attempt_timeout: Duration,
    /// TLS settings for every channel (also those opened for a leader hint); `None`: plaintext.
    tls: Option<ClientTlsConfig>,
}

/// Default deadline of one call attempt (long-polls wait 10 s at most, well inside it).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Returned when an endpoint string cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid coordinator endpoint `{endpoint}`: {reason}")]
pub struct EndpointError {
    endpoint: String,
    reason: String,
}

impl ReplicaEndpoints {
    /// Parses a comma-separated list (`host:port`, `http://host:port` or `https://host:port`).
    /// With `tls`, a bare `host:port` is reached over `https`.
    ///
    /// # Errors
    /// Returns [`EndpointError`] for an empty list or an address that is not a valid URI.
    pub fn parse(list: &str, tls: Option<ClientTlsConfig>) -> Result<Self, EndpointError> {
        let addresses: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(|address| endpoint_uri(address, tls.is_some()))
            .collect();
        if addresses.is_empty() {
            return Err(EndpointError {
                endpoint: list.to_string(),
                reason: "no endpoint given: pass `--endpoint host:port` or set `BK_ENDPOINTS`"
                    .to_string(),
            });
        }
        let mut replicas = Vec::with_capacity(addresses.len());
        for address in addresses {
            let channel = lazy_channel(&address, tls.as_ref())?;
            replicas.push((address, channel));
        }
        Ok(Self {
            replicas: Mutex::new(replicas),
            current: Mutex::new(0),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            tls,
        })
    }

    /// The endpoint calls go to first.
    pub fn current_address(&self) -> String {
        let replicas = self.replicas.lock().unwrap_or_else(|poison| poison.into_inner());
        let current = *self.current.lock().unwrap_or_else(|poison| poison.into_inner());
        replicas[current % replicas.len()].0.clone()
    }

    fn current_channel(&self) -> (usize, Channel) {
        let replicas = self.replicas.lock().unwrap_or_else(|poison| poison.into_inner());
        let current = *self.current.lock().unwrap_or_else(|poison| poison.into_inner());
        let index = current % replicas.len();
        (index, replicas[index].1.clone())
    }

    /// Makes `address` the current endpoint, adding it if it is new.
    fn follow_leader(&self, address: &str) {
        let address = endpoint_uri(address, self.tls.is_some());
        let mut replicas = self.replicas.lock().unwrap_or_else(|poison| poison.into_inner());
        let index = match replicas.iter().position(|(known, _)| *known == address) {
            Some(index) => index,
            None => match lazy_channel(&address, self.tls.as_ref()) {
                Ok(channel) => {
                    replicas.push((address, channel));
                    replicas.len() - 1
                }
                Err(_) => return,
            },
        };
        *self.current.lock().unwrap_or_else(|poison| poison.into_inner()) = index;
    }

    fn rotate_from(&self, failed_index: usize) {
        let len = self.replicas.lock().unwrap_or_else(|poison| poison.into_inner()).len();
        let mut current = self.current.lock().unwrap_or_else(|poison| poison.into_inner());
        if *current % len == failed_index {
            *current = (failed_index + 1) % len;
        }
    }

    /// Runs `call` against the current endpoint, following leader hints and rotating through the
    /// known endpoints on UNAVAILABLE, for up to `attempts` tries.
    ///
    /// Only safe for calls that may be repeated: every bk RPC is (writes are fenced or keyed).
    ///
    /// # Errors
    /// Returns the last status when every attempt failed, or the first non-UNAVAILABLE status.
    pub async fn call<T, F, Fut>(&self, attempts: u32, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut last_status = Status::unavailable("no attempt made");
        for attempt in 0..attempts.max(1) {
            let (index, channel) = self.current_channel();
            let outcome = match tokio::time::timeout(self.attempt_timeout, call(channel)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    Err(Status::unavailable(format!("no answer within {:?}", self.attempt_timeout)))
                }
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(status) if status.code() == Code::Unavailable => {
                    match leader_hint(&status) {
                        Some(leader) => self.follow_leader(&leader),
                        None => {
                            self.rotate_from(index);
                            if attempt > 0 {
                                tokio::time::sleep(backoff(attempt)).await;
                            }
                        }
                    }
                    last_status = status;
                }
                Err(status) => return Err(status),
            }
        }
        Err(last_status)
    }
}

/// A status's message followed by the errors underneath it (`transport error: connection
/// error: …`), which is where a refused TLS handshake or a reset connection is explained.
pub fn status_with_causes(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads the leader address a follower attached to an UNAVAILABLE status.
pub fn leader_hint(status: &Status) -> Option<String> {
    let value = status.metadata().get(LEADER_ADDR_METADATA)?;
    let leader = value.to_str().ok()?;
    (!leader.is_empty()).then(|| leader.to_string())
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)))
}

fn lazy_channel(address: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, EndpointError> {
    let invalid = |error: tonic::transport::Error| EndpointError {
        endpoint: address.to_string(),
        reason: error.to_string(),
    };
    let mut endpoint = Endpoint::from_shared(address.to_string()).map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
    }
    // HTTP/2 keep-alive notices a peer that vanished without closing the connection.
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_empty_endpoint_list_names_the_fix() {
        let error = ReplicaEndpoints::parse(" , ", None).unwrap_err().to_string();
        assert!(error.contains("BK_ENDPOINTS"), "{error}");
    }

    #[tokio::test]
    async fn test_leader_hint_switches_the_current_endpoint() {
        let endpoints = ReplicaEndpoints::parse("127.0.0.1:1,127.0.0.1:2", None).unwrap();
        let mut status = Status::unavailable("not the leader");
        status.metadata_mut().insert(LEADER_ADDR_METADATA, "127.0.0.1:2".parse().unwrap());
        let mut calls = 0;
        let result: Result<(), Status> = endpoints
            .call(2, |_channel| {
                calls += 1;
                let status = status.clone();
                async move { Err(status) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 2);
        assert_eq!(endpoints.current_address(), "http://127.0.0.1:2");
    }
}
