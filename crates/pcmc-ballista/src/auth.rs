//! The cluster's job secret: where it comes from (`PCMC_CLUSTER_TOKEN` or a
//! private file), how every pcmc client carries it, and how every pcmc
//! server checks it (constant time; refusals logged once per peer).
//!
//! Ballista 55 lets an embedder change every gRPC client it makes only
//! through one hook, a function over the client's `tonic` endpoint
//! (`override_create_grpc_client_endpoint` on the scheduler's and
//! executor's configurations, `with_ballista_override_create_grpc_client_endpoint`
//! on a driver's session). The one request header an endpoint sets is
//! `user-agent`, so that is where the secret travels:
//! `user-agent: pcmc-cluster/1 <secret> tonic/…`. The driver's own
//! scheduler requests carry it a second time as `x-pcmc-token` metadata.
//! Without TLS the header crosses the network in clear text: the secret
//! keeps out the other users of the cluster who can reach the ports, not
//! someone who can read the traffic (see the security section of the
//! Ballista guide).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tonic::transport::Endpoint;
use tonic::{Request, Status};

/// The environment variable that holds the secret.
pub const TOKEN_ENV: &str = "PCMC_CLUSTER_TOKEN";
/// The metadata key a driver's scheduler requests also carry it in.
pub const TOKEN_HEADER: &str = "x-pcmc-token";
/// The prefix of the `user-agent` header that carries it.
const AGENT: &str = "pcmc-cluster/1";
/// Fewest characters a secret may have (a generated one has 64).
const MIN_LEN: usize = 32;

/// Why a secret could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No secret given.
    #[error(
        "no cluster secret: set {TOKEN_ENV} or pass --token-file FILE (a file only its owner can read). \
         Make one with `pcmc cluster token > FILE && chmod 600 FILE` and give the same one to the \
         scheduler, every executor and the driver"
    )]
    Missing,
    /// The secret is malformed.
    #[error("{source_name}: {reason}")]
    Malformed {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The token file cannot be used.
    #[error("--token-file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A cluster's job secret.
#[derive(Clone)]
pub struct ClusterToken {
    secret: Arc<str>,
}

impl PartialEq for ClusterToken {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.secret.as_bytes())
    }
}

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterToken(…)")
    }
}

impl ClusterToken {
    /// A fresh secret: 256 bits from the operating system's generator, as
    /// 64 hexadecimal digits.
    ///
    /// # Errors
    /// [`AuthError::Malformed`] if the operating system gives no random bytes.
    pub fn generate() -> Result<ClusterToken, AuthError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AuthError::Malformed {
            source_name: "the operating system's random generator".into(),
            reason: e.to_string(),
        })?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(ClusterToken { secret: hex.into() })
    }

    /// Checks a secret's text: at least 32 characters, every one a visible
    /// ASCII character other than a space (it travels in a header).
    ///
    /// # Errors
    /// [`AuthError::Malformed`] naming `source_name`.
    pub fn parse(source_name: &str, text: &str) -> Result<ClusterToken, AuthError> {
        let t = text.trim();
        let bad = |reason: &str| AuthError::Malformed {
            source_name: source_name.into(),
            reason: reason.into(),
        };
        if t.len() < MIN_LEN {
            return Err(bad(
                "the cluster secret is shorter than 32 characters (make one with `pcmc cluster token`)",
            ));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(
                "the cluster secret has characters other than visible ASCII (make one with `pcmc cluster token`)",
            ));
        }
        Ok(ClusterToken { secret: t.into() })
    }

    /// The secret from `--token-file` when given, else from
    /// `PCMC_CLUSTER_TOKEN`. The file must be a regular file that only its
    /// owner can read or write (mode 0600 or stricter) and that belongs to
    /// the user running pcmc.
    ///
    /// # Errors
    /// [`AuthError::Missing`] when neither is given; the others name the
    /// file or variable and the reason.
    pub fn load(file: Option<&Path>) -> Result<ClusterToken, AuthError> {
        if let Some(path) = file {
            return Self::from_file(path);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(v) => Self::parse(TOKEN_ENV, &v),
            Err(std::env::VarError::NotPresent) => Err(AuthError::Missing),
            Err(std::env::VarError::NotUnicode(_)) => Err(AuthError::Malformed {
                source_name: TOKEN_ENV.into(),
                reason: "is not valid UTF-8".into(),
            }),
        }
    }

    fn from_file(path: &Path) -> Result<ClusterToken, AuthError> {
        use std::os::unix::fs::MetadataExt;
        let err = |reason: String| AuthError::File {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        if !meta.is_file() {
            return Err(err("is not a regular file".into()));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(err(format!(
                "is readable or writable by other users (mode {:04o}): the secret must be private to its owner; `chmod 600 {}`",
                meta.mode() & 0o7777,
                path.display()
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(err(format!(
                "belongs to user id {}, not to the user running pcmc ({me})",
                meta.uid()
            )));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        Self::parse(&format!("--token-file {}", path.display()), &text)
    }

    /// The secret's text (for a child process's environment or a private
    /// file; never for a command line or a log).
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// Whether `candidate` is the secret, compared in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        candidate.len() == self.secret.len() && bool::from(candidate.ct_eq(self.secret.as_bytes()))
    }

    /// The `user-agent` value that carries the secret.
    pub fn user_agent(&self) -> String {
        format!("{AGENT} {}", self.secret)
    }

    /// A client endpoint hook for Ballista's configurations: sets the
    /// `user-agent` that carries the secret on every endpoint it is given.
    pub fn endpoint_hook(&self) -> EndpointHook {
        let agent = self.user_agent();
        Arc::new(move |e: Endpoint| e.user_agent(agent.clone()).map_err(|e| e.into()))
    }

    /// A server-side check for `what` (e.g. "scheduler gRPC").
    pub fn guard(&self, what: &'static str) -> TokenGuard {
        TokenGuard {
            token: self.clone(),
            what,
            logged: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

/// Ballista's endpoint override function type.
pub type EndpointHook = Arc<
    dyn Fn(Endpoint) -> Result<Endpoint, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// A tonic interceptor that lets a request through only when it carries
/// the secret (in `x-pcmc-token` metadata or pcmc's `user-agent`); any
/// other is refused with `Unauthenticated`, and logged once per peer
/// address.
#[derive(Clone)]
pub struct TokenGuard {
    token: ClusterToken,
    what: &'static str,
    logged: Arc<Mutex<HashSet<Option<IpAddr>>>>,
}

impl TokenGuard {
    /// Whether the request metadata carries the secret.
    fn admits(&self, md: &tonic::metadata::MetadataMap) -> bool {
        // Evaluate both, so the time taken does not say which was tried.
        let header = md
            .get(TOKEN_HEADER)
            .is_some_and(|v| self.token.matches(v.as_bytes()));
        let agent = md.get("user-agent").is_some_and(|v| {
            let mut it = v.as_bytes().split(|b| *b == b' ');
            it.next() == Some(AGENT.as_bytes()) && it.next().is_some_and(|s| self.token.matches(s))
        });
        header | agent
    }

    /// Checks a request (see [`TokenGuard`]).
    ///
    /// # Errors
    /// `Unauthenticated` without the secret.
    pub fn check<T>(&self, req: Request<T>) -> Result<Request<T>, Status> {
        if self.admits(req.metadata()) {
            return Ok(req);
        }
        self.refused(req.remote_addr());
        Err(Status::unauthenticated(
            "pcmc cluster: this request does not carry the cluster's secret",
        ))
    }

    fn refused(&self, peer: Option<SocketAddr>) {
        let first = self
            .logged
            .lock()
            .map(|mut s| s.insert(peer.map(|p| p.ip())))
            .unwrap_or(true);
        if first {
            let who = peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string());
            tracing::warn!(
                "{}: refused a request without the cluster secret from {who} (further refusals from this address are not logged)",
                self.what
            );
        }
    }
}

impl tonic::service::Interceptor for TokenGuard {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        self.check(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn token() -> ClusterToken {
        ClusterToken::parse("test", &"ab".repeat(32)).unwrap()
    }

    #[test]
    fn generated_secrets_are_long_and_differ() {
        let a = ClusterToken::generate().unwrap();
        let b = ClusterToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert_ne!(a.expose(), b.expose());
        ClusterToken::parse("generated", a.expose()).unwrap();
    }

    #[test]
    fn short_or_odd_secrets_are_refused() {
        assert!(ClusterToken::parse("x", "short").is_err());
        assert!(
            ClusterToken::parse("x", &format!("{} {}", "a".repeat(20), "b".repeat(20))).is_err()
        );
    }

    #[test]
    fn the_guard_admits_the_secret_only() {
        let g = token().guard("test");
        let with = |k: &'static str, v: String| {
            let mut r = Request::new(());
            r.metadata_mut()
                .insert(k, MetadataValue::try_from(v).unwrap());
            g.check(r).is_ok()
        };
        assert!(with(TOKEN_HEADER, "ab".repeat(32)));
        assert!(with(
            "user-agent",
            format!("{AGENT} {} tonic/0.14.9", "ab".repeat(32))
        ));
        assert!(!with(TOKEN_HEADER, "ab".repeat(31)));
        assert!(!with(TOKEN_HEADER, format!("{}ac", "ab".repeat(31))));
        assert!(!with(
            "user-agent",
            format!("{} tonic/0.14.9", "ab".repeat(32))
        ));
        assert!(!with("user-agent", format!("other/1 {}", "ab".repeat(32))));
        assert!(g.check(Request::new(())).is_err());
    }

    #[test]
    fn token_files_must_be_private_and_own() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "cd".repeat(32)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = ClusterToken::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("mode 0640"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            ClusterToken::load(Some(&p)).unwrap().expose(),
            "cd".repeat(32)
        );
        assert!(ClusterToken::load(Some(&dir.path().join("none"))).is_err());
    }
}
