//! Errors of the Talos client and their retry classification.

use std::net::SocketAddr;

use tonic::Code;

/// Whether retrying the failed operation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: the node is booting, rebooting, unreachable or overloaded.
    Retryable,
    /// Retrying the same request cannot succeed.
    Permanent,
}

/// An error of a Talos API operation.
///
/// No variant carries machine configuration bytes or key material.
#[derive(Debug, thiserror::Error)]
pub enum TalosError {
    /// The TLS credentials (CA, client certificate or key PEM) could not be loaded.
    #[error("load talos credentials: {what}")]
    LoadCredentials {
        /// Which input was bad.
        what: &'static str,
        /// The cause, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The `node` target is not a valid gRPC metadata value.
    #[error("invalid node target {node:?}")]
    InvalidNode {
        /// The rejected target.
        node: String,
    },
    /// The TCP connection or TLS handshake with the node failed.
    #[error("connect to talos api at {addr}")]
    Connect {
        /// Address dialled.
        addr: SocketAddr,
        /// The transport error (its chain holds the io error, e.g. connection refused).
        #[source]
        source: tonic::transport::Error,
    },
    /// The RPC returned a gRPC error status.
    #[error("talos rpc {rpc} failed: {}: {}", .status.code(), .status.message())]
    Rpc {
        /// RPC name, e.g. `Bootstrap`.
        rpc: &'static str,
        /// The status returned by the node.
        #[source]
        status: tonic::Status,
    },
    /// The RPC did not finish within the client's per-call deadline.
    #[error("talos rpc {rpc} timed out after {timeout:?}")]
    Timeout {
        /// RPC name.
        rpc: &'static str,
        /// The deadline that passed.
        timeout: std::time::Duration,
    },
    /// A one-to-many response carried a per-node error in its metadata.
    #[error("talos rpc {rpc} failed on node {hostname:?}: {message}")]
    NodeError {
        /// RPC name.
        rpc: &'static str,
        /// Node that reported the error.
        hostname: String,
        /// The node's error text.
        message: String,
        /// The node's gRPC status code, when reported.
        code: Option<Code>,
    },
    /// The response had no message for the targeted node.
    #[error("talos rpc {rpc} returned no message")]
    EmptyResponse {
        /// RPC name.
        rpc: &'static str,
    },
    /// The kubeconfig archive could not be unpacked.
    #[error("unpack kubeconfig archive")]
    UnpackKubeconfig {
        /// The archive error.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig archive held no `kubeconfig` file.
    #[error("kubeconfig archive holds no kubeconfig file")]
    KubeconfigMissing,
    /// A COSI resource's YAML spec did not have the shape of its type.
    #[error("talos resource {resource}: spec is not the expected YAML: {message}")]
    ResourceSpec {
        /// `<namespace>/<type>/<id>`.
        resource: String,
        /// The parser's message.
        message: String,
    },
}

impl TalosError {
    /// The gRPC status code behind this error, when there is one.
    ///
    /// A per-call timeout reports `DeadlineExceeded`; connection failures report `Unavailable`.
    pub fn code(&self) -> Option<Code> {
        match self {
            TalosError::Rpc { status, .. } => Some(status.code()),
            TalosError::NodeError { code, .. } => *code,
            TalosError::Timeout { .. } => Some(Code::DeadlineExceeded),
            TalosError::Connect { .. } => Some(Code::Unavailable),
            _ => None,
        }
    }

    /// Classifies the error for retry decisions.
    ///
    /// - `InvalidArgument` (config rejected by validation), `PermissionDenied`, `Unauthenticated`,
    ///   `Unimplemented`, `NotFound`, `AlreadyExists`, `OutOfRange`, `DataLoss` → permanent.
    /// - `FailedPrecondition` → permanent when the node said the call needs a control plane
    ///   node, retryable otherwise (Talos uses it for "bootstrap is not available yet" and
    ///   "time is not in sync yet", which clear by themselves).
    /// - `Unavailable`, `DeadlineExceeded`, `Aborted`, `ResourceExhausted`, `Cancelled`,
    ///   `Internal`, `Unknown`, connection failures (refused, reset, TLS handshake while the node
    ///   still runs its maintenance certificate) and timeouts → retryable.
    /// - Bad local credentials, a bad node target and an unreadable kubeconfig → permanent.
    /// - A TLS alert sent by the node (it refused our client certificate, or demanded one from a
    ///   maintenance-mode client: [`TalosError::needs_client_certificate`]) → permanent: the same
    ///   credentials will be refused again. (Our own rejection of the node's certificate, e.g.
    ///   while it still serves its maintenance certificate, is a `Connect` error: retryable.)
    pub fn class(&self) -> ErrorClass {
        if self.tls_alert().is_some() {
            return ErrorClass::Permanent;
        }
        match self {
            TalosError::Connect { .. } | TalosError::Timeout { .. } => ErrorClass::Retryable,
            TalosError::Rpc { status, .. } => classify(status.code(), status.message()),
            TalosError::NodeError { code, message, .. } => match code {
                Some(code) => classify(*code, message),
                None => ErrorClass::Retryable,
            },
            TalosError::EmptyResponse { .. } => ErrorClass::Retryable,
            TalosError::LoadCredentials { .. }
            | TalosError::InvalidNode { .. }
            | TalosError::UnpackKubeconfig { .. }
            | TalosError::KubeconfigMissing
            | TalosError::ResourceSpec { .. } => ErrorClass::Permanent,
        }
    }

    /// The TLS alert the node sent, when the failure is one (e.g. `CertificateRequired`,
    /// `BadCertificate`, `DecryptError` for a client certificate from another CA).
    pub fn tls_alert(&self) -> Option<rustls::AlertDescription> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if let Some(rustls::Error::AlertReceived(alert)) = err.downcast_ref::<rustls::Error>() {
                return Some(*alert);
            }
            // io::Error::source() skips its payload; rustls's reader also reports alerts as a
            // plain io::Error text "received fatal alert: <Alert>".
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(rustls::Error::AlertReceived(alert)) =
                    io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
                {
                    return Some(*alert);
                }
                if let Some(name) = io.to_string().strip_prefix("received fatal alert: ") {
                    return alert_named(name.trim());
                }
            }
            source = err.source();
        }
        None
    }

    /// True when the node demanded a client certificate: a maintenance-mode client reached a
    /// node that is already configured (switch to [`crate::TalosClient::secure`]).
    pub fn needs_client_certificate(&self) -> bool {
        self.tls_alert() == Some(rustls::AlertDescription::CertificateRequired)
    }

    /// True when the failure is a refused TCP connection (nothing listens on the port yet).
    pub fn is_connection_refused(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return true;
            }
            source = err.source();
        }
        false
    }
}

/// The alert whose `Debug` name is `name` (rustls's text form), for the alerts a Talos node
/// sends when it refuses a client.
fn alert_named(name: &str) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    [
        A::CertificateRequired,
        A::BadCertificate,
        A::UnsupportedCertificate,
        A::CertificateRevoked,
        A::CertificateExpired,
        A::CertificateUnknown,
        A::UnknownCA,
        A::DecryptError,
        A::HandshakeFailure,
        A::AccessDenied,
        A::IllegalParameter,
        A::ProtocolVersion,
        A::NoApplicationProtocol,
        A::InternalError,
    ]
    .into_iter()
    .find(|a| format!("{a:?}") == name)
}

/// Retry class of a gRPC status code (and, for `FailedPrecondition`, its message).
pub fn classify(code: Code, message: &str) -> ErrorClass {
    match code {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented
        | Code::NotFound
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::DataLoss => ErrorClass::Permanent,
        Code::FailedPrecondition => {
            if message.contains("control plane") {
                ErrorClass::Permanent
            } else {
                ErrorClass::Retryable
            }
        }
        // The Upgrade RPC's installer pull: an image that does not exist will not appear.
        Code::Unknown
            if message.contains("error validating installer image")
                && message.contains("not found") =>
        {
            ErrorClass::Permanent
        }
        Code::Ok
        | Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Internal
        | Code::Unknown => ErrorClass::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installer_that_does_not_exist_is_permanent() {
        let missing = "error validating installer image \"factory.talos.dev/hcloud-installer/ab:v1.11.6\": failed to resolve reference: not found";
        assert_eq!(classify(Code::Unknown, missing), ErrorClass::Permanent);
        assert_eq!(
            classify(
                Code::Unknown,
                "error validating installer image: i/o timeout"
            ),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn invalid_argument_is_permanent_and_unavailable_retryable() {
        let err = TalosError::Rpc {
            rpc: "ApplyConfiguration",
            status: tonic::Status::invalid_argument("cluster controlplane endpoint is required"),
        };
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(err.code(), Some(Code::InvalidArgument));
        let err = TalosError::Rpc {
            rpc: "Version",
            status: tonic::Status::unavailable("connection reset"),
        };
        assert_eq!(err.class(), ErrorClass::Retryable);
        let err = TalosError::Timeout {
            rpc: "Version",
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(err.code(), Some(Code::DeadlineExceeded));
    }

    #[test]
    fn failed_precondition_depends_on_message() {
        assert_eq!(
            classify(
                Code::FailedPrecondition,
                "bootstrap can only be performed on a control plane node"
            ),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify(Code::FailedPrecondition, "bootstrap is not available yet"),
            ErrorClass::Retryable
        );
    }
}
