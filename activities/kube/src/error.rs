//! The crate's error type and its retry classification.

use std::fmt;

/// How the caller's step policy should treat a failed activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Trying again later can succeed (connection trouble, 429, 5xx, conflicts, "not ready yet").
    Retryable,
    /// Trying again will fail the same way (bad input, forbidden, invalid object).
    Permanent,
}

/// Everything that can go wrong in this crate.
///
/// Messages never contain the Hetzner token: the `hcloud` Secret is applied through
/// [`crate::KubeClient::apply_hcloud_secret`], whose errors carry only the HTTP status and reason.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The in-memory kubeconfig could not be parsed or turned into a client configuration.
    #[error("kubeconfig is not usable: {message}")]
    Kubeconfig {
        /// What kube-rs said about it.
        message: String,
    },
    /// Building the HTTP client from a valid kubeconfig failed.
    #[error("cannot build kubernetes client")]
    BuildClient(#[source] kube::Error),
    /// A manifest object lacks `apiVersion`, `kind` or `metadata.name`, or has the wrong shape.
    #[error("invalid manifest object {object}: {reason}")]
    InvalidManifest {
        /// `kind/name` or an index when the name is missing.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Discovery could not map an `apiVersion`/`kind` to a served resource.
    #[error("api discovery for {api_version} {kind} failed")]
    Discovery {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A server-side apply was rejected or did not reach the API server.
    #[error("server-side apply of {object} failed")]
    Apply {
        /// `Kind namespace/name`.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Applying the `hcloud` Secret failed. Only status and reason are kept, never the body.
    #[error("applying secret kube-system/hcloud failed: http {code} {reason}")]
    ApplySecret {
        /// HTTP status, 0 when the request never got a response.
        code: u16,
        /// Kubernetes reason (`Forbidden`, `Invalid`, ...) or the transport error kind.
        reason: String,
    },
    /// Reading objects (nodes, deployments, CSRs, ...) failed.
    #[error("listing {what} failed")]
    List {
        /// What was being read.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Approving a certificate signing request failed.
    #[error("approving csr {name} failed")]
    ApproveCsr {
        /// CSR name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating an object (smoke test) failed.
    #[error("creating {object} failed")]
    Create {
        /// What was being created.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an object failed.
    #[error("deleting {object} failed")]
    Delete {
        /// What was being deleted.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A named wait condition does not hold yet; the message says what is missing.
    #[error("{0}")]
    NotReady(NotReady),
}

/// What a wait condition found missing; retryable by nature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// The condition's name, e.g. `nodes_ready`.
    pub condition: &'static str,
    /// Human summary, e.g. `2 of 5 nodes not Ready: demo-worker-1 (NotReady), ...`.
    pub summary: String,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.condition, self.summary)
    }
}

impl KubeError {
    /// Retry classification for the caller's step policy.
    pub fn class(&self) -> ErrorClass {
        match self {
            KubeError::Kubeconfig { .. } | KubeError::InvalidManifest { .. } => {
                ErrorClass::Permanent
            }
            KubeError::NotReady(_) => ErrorClass::Retryable,
            KubeError::ApplySecret { code, .. } => class_of_code(*code),
            KubeError::BuildClient(e) => class_of(e),
            KubeError::Discovery { source, .. } => match source {
                // A kind the server does not serve (yet) may appear once a CRD is established.
                kube::Error::Api(s) if s.code == 404 => ErrorClass::Retryable,
                other => class_of(other),
            },
            KubeError::Apply { source, .. }
            | KubeError::List { source, .. }
            | KubeError::ApproveCsr { source, .. }
            | KubeError::Create { source, .. }
            | KubeError::Delete { source, .. } => class_of(source),
        }
    }
}

/// Classifies a kube-rs error.
pub(crate) fn class_of(e: &kube::Error) -> ErrorClass {
    match e {
        kube::Error::Api(status) => class_of_code(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ErrorClass::Retryable
        }
        _ => ErrorClass::Permanent,
    }
}

/// Classifies an HTTP status from the API server (0 = no response).
pub(crate) fn class_of_code(code: u16) -> ErrorClass {
    match code {
        0 | 408 | 409 | 429 | 500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "Reason").with_code(code),
        ))
    }

    #[test]
    fn api_codes_are_classified() {
        for (code, class) in [
            (429, ErrorClass::Retryable),
            (409, ErrorClass::Retryable),
            (503, ErrorClass::Retryable),
            (500, ErrorClass::Retryable),
            (400, ErrorClass::Permanent),
            (403, ErrorClass::Permanent),
            (422, ErrorClass::Permanent),
            (404, ErrorClass::Permanent),
        ] {
            let err = KubeError::Apply {
                object: "x".into(),
                source: api(code),
            };
            assert_eq!(err.class(), class, "code {code}");
        }
    }

    #[test]
    fn unknown_kind_during_discovery_is_retryable() {
        let err = KubeError::Discovery {
            api_version: "cilium.io/v2".into(),
            kind: "CiliumNode".into(),
            source: api(404),
        };
        assert_eq!(err.class(), ErrorClass::Retryable);
    }

    #[test]
    fn not_ready_is_retryable_and_names_the_condition() {
        let err = KubeError::NotReady(NotReady {
            condition: "nodes_ready",
            summary: "1 of 3 nodes not Ready: a (NotReady)".into(),
        });
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert_eq!(
            err.to_string(),
            "nodes_ready: 1 of 3 nodes not Ready: a (NotReady)"
        );
    }
}
