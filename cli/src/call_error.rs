//! Turning a failed call into an error an operator can act on: the status, what failed
//! underneath it (connection, TLS handshake) and, when the cause is recognisable, the fix.

use bk_proto::endpoints::status_with_causes;
use tonic::{Code, Status};

/// How bkctl was connecting, which decides what a broken connection most likely means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Plain HTTP/2.
    Plaintext,
    /// TLS, without a client certificate.
    Tls,
    /// TLS with a client certificate.
    MutualTls,
}

/// Describes `status`, the failure of a call made over `transport`.
pub(crate) fn call_failed(status: Status, transport: Transport) -> anyhow::Error {
    let text = format!("{} ({:?})", status_with_causes(&status), status.code());
    match hint(&text, status.code(), transport) {
        Some(hint) => anyhow::anyhow!("{text}\nhint: {hint}"),
        None => anyhow::anyhow!("{text}"),
    }
}

fn hint(text: &str, code: Code, transport: Transport) -> Option<&'static str> {
    if !matches!(code, Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled) {
        return None;
    }
    let lower = text.to_lowercase();
    // Under TLS 1.3 a server that rejects the client's certificate (or its absence) does so
    // after the client finished its side of the handshake: the client sees a closed connection.
    // A fatal alert received means the server refused us (our certificate, or its absence).
    let broken = lower.contains("broken pipe")
        || lower.contains("connection reset")
        || lower.contains("connection closed")
        || lower.contains("received fatal alert");
    let mutual_tls_hint = "the coordinator requires mutual TLS: pass a client certificate signed \
         by its client CA with --cert FILE --key FILE (env BK_CLIENT_CERT, BK_CLIENT_KEY)";
    if lower.contains("certificaterequired") || (transport == Transport::Tls && broken) {
        return Some(mutual_tls_hint);
    }
    if transport == Transport::MutualTls && broken {
        return Some(
            "the coordinator closed the connection after the handshake: --cert must be signed by \
             the CA the coordinator trusts for clients (its tls.client_ca_file)",
        );
    }
    if lower.contains("certificate") || lower.contains("alert") || lower.contains("handshake") {
        return Some(
            "the TLS handshake failed: --ca-cert must be the CA that signed the coordinator's \
             certificate, whose names must include the endpoint's host (or pass \
             --tls-server-name)",
        );
    }
    if transport == Transport::Plaintext && (lower.contains("h2 protocol error") || broken) {
        return Some(
            "the coordinator may serve TLS only: pass the CA that signed its certificate with \
             --ca-cert FILE (env BK_CA_CERT)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_hints_name_the_flag_that_fixes_it() {
        let plaintext = hint("h2 protocol error: http2 error", Code::Unknown, Transport::Plaintext);
        assert!(plaintext.is_some_and(|hint| hint.contains("--ca-cert")));
        let mutual = hint("stream closed because of a broken pipe", Code::Unknown, Transport::Tls);
        assert!(mutual.is_some_and(|hint| hint.contains("--cert FILE")));
        for refusal in ["broken pipe", "received fatal alert: UnknownCA", "connection closed"] {
            let rogue = hint(refusal, Code::Unknown, Transport::MutualTls);
            assert!(rogue.is_some_and(|hint| hint.contains("client_ca_file")));
        }
        let untrusted =
            hint("invalid peer certificate: UnknownIssuer", Code::Unknown, Transport::Tls);
        assert!(untrusted.is_some_and(|hint| hint.contains("--ca-cert")));
        assert_eq!(hint("missing bearer token", Code::Unauthenticated, Transport::Tls), None);
    }
}
