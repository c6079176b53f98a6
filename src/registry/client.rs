//! The HTTP side of the distribution spec: one [`Client`] per registry host,
//! requests authenticated by [`auth`](super::auth), retried by
//! [`retry`](super::retry), manifests and blobs verified against their digest.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;
use ureq::http::{HeaderValue, Method, Response};

use super::auth::{AuthError, AuthFailure, Authenticator};
use super::docker_config::{CredentialError, CredentialSource};
use super::retry::{parse_retry_after, RetryPolicy, Verdict};
use super::{sha256_digest, MANIFEST_MEDIA_TYPES};
use crate::manifest::reference::{validate_digest, ReferenceError};

/// A registry: `host[:port]`, and whether it speaks plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP instead of HTTPS (loopback test registries).
    pub insecure: bool,
}

/// Anything that went wrong talking to a registry. Every variant names the
/// host; none holds a credential or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {host} rejected the credentials for {repository} (401 Unauthorized); check `docker login {host}` or the `auths`/credential helpers of $DOCKER_CONFIG/config.json")]
    Unauthorized { host: String, repository: String },
    /// A 401 when no credential is configured for the host: the fix is a
    /// login, not a different password.
    #[error("registry {host} asks for credentials and none were found in {config}: run `docker login {host}`")]
    NoCredentials {
        host: String,
        /// The config file looked at (it may not exist).
        config: String,
    },
    /// TLS was sent and plain HTTP came back (rustls: `InvalidContentType`).
    /// Not transient: every retry would meet the same server.
    #[error("cannot reach registry {host} over TLS ({request}): server speaks plain HTTP: set insecure = true for this registry (or write its url as http://{host}/...)")]
    PlainHttp {
        host: String,
        /// `METHOD /path`, without the query.
        request: String,
    },
    #[error("registry {host} denied access to {repository} (403 Forbidden); the account may lack push rights")]
    Denied { host: String, repository: String },
    #[error("cannot reach registry {host} ({request}): {source}")]
    Transport {
        host: String,
        /// `METHOD /path`, without the query.
        request: String,
        source: Box<ureq::Error>,
    },
    #[error("registry {host} answered {status} to {request}{}", message_suffix(.message))]
    Status {
        host: String,
        /// `METHOD /path`, without the query.
        request: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("manifest {reference} not found in {host}/{repository}")]
    ManifestNotFound {
        host: String,
        repository: String,
        reference: String,
    },
    #[error("blob {digest} not found in {host}/{repository}")]
    BlobNotFound {
        host: String,
        repository: String,
        digest: String,
    },
    #[error("content from {host}/{repository} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        host: String,
        repository: String,
        expected: String,
        actual: String,
    },
    #[error("registry {host} sent no usable Location for the upload of {digest} to {repository}")]
    BadLocation {
        host: String,
        repository: String,
        digest: String,
    },
    #[error(
        "blob {digest} for {host}/{repository}: {path} is {actual} bytes, expected {expected}"
    )]
    BlobSize {
        host: String,
        repository: String,
        digest: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("cannot read blob {digest} from {path}: {source}")]
    ReadBlob {
        digest: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write blob {digest} from {host}/{repository}: {source}")]
    WriteBlob {
        host: String,
        repository: String,
        digest: String,
        source: std::io::Error,
    },
    /// The referrers fallback tag holds something that is not an image index.
    #[error("{host}/{repository}:{tag} should hold the image index of referrers but {reason}; another tool wrote it: delete the tag or fix it, then push again")]
    BadReferrersIndex {
        host: String,
        repository: String,
        tag: String,
        reason: String,
    },
    /// The cosign signature tag holds something that is not an image manifest.
    #[error("{host}/{repository}:{tag} should hold cosign signatures but {reason}; delete the tag or fix it, then push again")]
    BadSignatureManifest {
        host: String,
        repository: String,
        tag: String,
        reason: String,
    },
    /// A local blob file is not the blob it is named after (caught as it streamed).
    #[error("blob {digest} at {} is corrupt (its content hashes to {found}); its upload was stopped", path.display())]
    LocalBlobCorrupt {
        digest: String,
        path: PathBuf,
        found: String,
    },
    #[error("push to {host}/{repository} was cancelled after another blob failed")]
    Cancelled { host: String, repository: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl RegistryError {
    /// Whether trying again later may succeed (connection trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { source, .. } => matches!(
                **source,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
                    | ureq::Error::BodyStalled
            ),
            RegistryError::Status { status, .. } => is_transient_status(*status),
            RegistryError::Auth(AuthError::TokenTransport { .. }) => true,
            RegistryError::Auth(AuthError::TokenStatus { status, .. }) => {
                is_transient_status(*status)
            }
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// For [`RetryPolicy::run`].
    pub(crate) fn verdict(&self) -> Verdict {
        if self.is_transient() {
            Verdict::Retry {
                after: self.retry_after(),
            }
        } else {
            Verdict::Fatal
        }
    }
}

fn is_transient_status(status: u16) -> bool {
    status == 429 || ((500..=599).contains(&status) && status != 501)
}

/// A request body that can be produced again for a retry.
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `path` from `offset`, streamed.
    File {
        path: &'a Path,
        digest: &'a str,
        offset: u64,
        len: u64,
        /// Hashes the bytes as they go (each blob hashed once, on upload).
        check: Option<&'a super::stream_check::StreamCheck>,
        /// Told the blob offset reached each time bytes are handed to the
        /// connection (a progress display; `None`: nobody is watching).
        sent: Option<&'a (dyn Fn(u64) + Sync)>,
    },
}

/// One request, rebuilt on every attempt.
pub(crate) struct Request<'a> {
    pub(crate) method: Method,
    /// Absolute URL.
    pub(crate) url: String,
    pub(crate) repository: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body<'a>,
    pub(crate) follow_redirects: bool,
}

/// A client for one registry. Cheap to share across threads (`&Client` is `Sync`).
pub struct Client {
    pub(crate) registry: Registry,
    agent: ureq::Agent,
    auth: Authenticator,
    pub(crate) retry: RetryPolicy,
    /// Blobs up to this size go in one `PUT`; larger ones in `PATCH`es.
    pub(crate) monolithic_max: u64,
    /// Size of one `PATCH` chunk; by default a blob goes in one `PATCH`.
    pub(crate) chunk_size: u64,
    /// Blobs uploaded at once.
    pub(crate) parallel: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

const MANIFEST_LIMIT: u64 = 8 << 20;

impl Client {
    /// A client for `registry`, authenticating with credentials from `creds`
    /// when the registry asks for them. HTTPS with the platform's roots,
    /// unless `registry.insecure`.
    pub fn new(registry: Registry, creds: CredentialSource) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!registry.insecure)
            .tls_config(tls)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(concat!("imgraph/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .timeout_per_write(Some(Duration::from_secs(60)))
            .build()
            .into();
        let auth = Authenticator::new(registry.host.clone(), creds);
        Client {
            registry,
            agent,
            auth,
            retry: RetryPolicy::default(),
            monolithic_max: 8 << 20,
            // One streamed PATCH per blob, as skopeo and crane send: chunks buy
            // nothing (a failed upload starts over either way) and cost the
            // registry a request, a hash-state save and reload each (docker-registry
            // spent 5-12% more CPU ingesting 8 MiB chunks in row e. of BENCHMARKS.md).
            chunk_size: u64::MAX,
            parallel: 3,
        }
    }

    /// Use this retry policy instead of the default (5 attempts, 250 ms doubling, 10 s cap).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Blobs larger than `monolithic_max` go in `PATCH` chunks of `chunk_size`
    /// bytes (defaults: 8 MiB, and the whole blob in one `PATCH`).
    pub fn with_chunking(mut self, monolithic_max: u64, chunk_size: u64) -> Self {
        self.monolithic_max = monolithic_max;
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Upload up to `n` blobs at once (default 3).
    pub fn with_parallel_uploads(mut self, n: usize) -> Self {
        self.parallel = n.max(1);
        self
    }

    /// The registry this client talks to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.registry.insecure {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.registry.host)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Resolve an upload `Location` (absolute, or relative to the registry).
    pub(crate) fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            self.url(location)
        } else {
            self.url(&format!("/v2/{location}"))
        }
    }

    fn same_origin(&self, url: &str) -> bool {
        url.strip_prefix(&self.base_url())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
    }

    pub(crate) fn pull_scope(repository: &str) -> String {
        format!("repository:{repository}:pull")
    }

    fn send_once(
        &self,
        req: &Request<'_>,
        authorization: Option<&super::Secret>,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method.clone())
            .uri(&req.url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        if let Some(a) = authorization {
            if self.same_origin(&req.url) {
                let mut value = HeaderValue::from_str(a.expose())
                    .map_err(|_| self.unauthorized(req.repository))?;
                value.set_sensitive(true);
                builder = builder.header("Authorization", value);
            }
        }
        let transport = |source: ureq::Error| {
            if !self.registry.insecure && is_plain_http_reply(&source) {
                return RegistryError::PlainHttp {
                    host: self.registry.host.clone(),
                    request: request_line(&req.method, &req.url),
                };
            }
            RegistryError::Transport {
                host: self.registry.host.clone(),
                request: request_line(&req.method, &req.url),
                source: Box::new(source),
            }
        };
        let redirects = if req.follow_redirects { 5 } else { 0 };
        let result = match req.body {
            Body::Empty => {
                let has_body = matches!(req.method, Method::POST | Method::PUT | Method::PATCH);
                if has_body {
                    builder = builder.header("Content-Length", "0");
                }
                let r = builder.body(()).map_err(|e| transport(e.into()))?;
                let r = self
                    .agent
                    .configure_request(r)
                    .max_redirects(redirects)
                    .build();
                self.agent.run(r)
            }
            Body::Bytes(bytes) => {
                let r = builder.body(bytes).map_err(|e| transport(e.into()))?;
                let r = self
                    .agent
                    .configure_request(r)
                    .max_redirects(redirects)
                    .build();
                self.agent.run(r)
            }
            Body::File {
                path,
                digest,
                offset,
                len,
                check,
                sent,
            } => {
                let read_err = |source| RegistryError::ReadBlob {
                    digest: digest.to_owned(),
                    path: path.to_owned(),
                    source,
                };
                let mut file = File::open(path).map_err(read_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
                let mut reader = super::stream_check::CheckedReader {
                    inner: file.take(len),
                    offset,
                    check,
                    sent,
                };
                builder = builder.header("Content-Length", len.to_string());
                let r = builder
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(|e| transport(e.into()))?;
                let r = self
                    .agent
                    .configure_request(r)
                    .max_redirects(redirects)
                    .build();
                self.agent.run(r)
            }
        };
        result.map_err(transport)
    }

    /// A 401 that one more try cannot fix: `NoCredentials` when none are
    /// configured for this host, else `Unauthorized`.
    fn unauthorized(&self, repository: &str) -> RegistryError {
        if !self.auth.has_credential() {
            return RegistryError::NoCredentials {
                host: self.registry.host.clone(),
                config: self.auth.config_location(),
            };
        }
        RegistryError::Unauthorized {
            host: self.registry.host.clone(),
            repository: repository.to_owned(),
        }
    }

    fn auth_failure(&self, repository: &str, f: AuthFailure) -> RegistryError {
        match f {
            AuthFailure::Unauthorized => self.unauthorized(repository),
            AuthFailure::Other(e) => RegistryError::Auth(e),
        }
    }

    /// One HEAD of blob `digest` in `repo`, with no retry of its own (callers
    /// run it inside theirs): whether the registry has it.
    pub(super) fn head_blob_once(
        &self,
        repo: &str,
        digest: &str,
        scopes: &[String],
    ) -> Result<bool, RegistryError> {
        let req = self.request(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            scopes,
        );
        let response = self.attempt(&req)?;
        match response.status().as_u16() {
            200 => {
                drain(response);
                Ok(true)
            }
            404 => {
                drain(response);
                Ok(false)
            }
            _ => Err(self.status_error(&req, response)),
        }
    }

    /// One attempt, with at most one re-send after a 401 challenge.
    /// Transient statuses (5xx, 429) come back as errors; others as responses.
    pub(crate) fn attempt(&self, req: &Request<'_>) -> Result<Response<ureq::Body>, RegistryError> {
        let mut challenged = false;
        loop {
            let authorization = self
                .auth
                .authorization(&self.agent, req.scopes)
                .map_err(|f| self.auth_failure(req.repository, f))?;
            let response = self.send_once(req, authorization.as_ref())?;
            let status = response.status().as_u16();
            if status == 401 {
                if challenged {
                    return Err(self.unauthorized(req.repository));
                }
                challenged = true;
                let header = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                drain(response);
                self.auth
                    .on_unauthorized(header.as_deref(), req.scopes, authorization.is_some())
                    .map_err(|f| self.auth_failure(req.repository, f))?;
                continue;
            }
            if status == 403 {
                drain(response);
                return Err(RegistryError::Denied {
                    host: self.registry.host.clone(),
                    repository: req.repository.to_owned(),
                });
            }
            if is_transient_status(status) {
                return Err(self.status_error(req, response));
            }
            return Ok(response);
        }
    }

    /// [`Self::attempt`] under the client's retry policy (for idempotent requests).
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response<ureq::Body>, RegistryError> {
        self.retry
            .run(|_| self.attempt(req), RegistryError::verdict)
    }

    /// An error for an unexpected status, with the registry's error message.
    pub(crate) fn status_error(
        &self,
        req: &Request<'_>,
        response: Response<ureq::Body>,
    ) -> RegistryError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 10)
            .read_to_vec()
            .unwrap_or_default();
        RegistryError::Status {
            host: self.registry.host.clone(),
            request: request_line(&req.method, &req.url),
            status,
            message: error_message(&body),
            retry_after,
        }
    }

    pub(crate) fn request<'a>(
        &self,
        method: Method,
        path_or_url: &str,
        repository: &'a str,
        scopes: &'a [String],
    ) -> Request<'a> {
        let url = if path_or_url.starts_with('/') {
            self.url(path_or_url)
        } else {
            path_or_url.to_owned()
        };
        Request {
            method,
            url,
            repository,
            scopes,
            headers: Vec::new(),
            body: Body::Empty,
            follow_redirects: false,
        }
    }

    /// The digest `reference` (a tag or digest) points at in `repo`, or `None`
    /// if there is no such manifest.
    pub fn head_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        let scopes = [Self::pull_scope(repo)];
        let mut req = self.request(
            Method::HEAD,
            &format!("/v2/{repo}/manifests/{reference}"),
            repo,
            &scopes,
        );
        req.headers
            .push(("Accept", MANIFEST_MEDIA_TYPES.join(", ")));
        let response = self.send(&req)?;
        match response.status().as_u16() {
            200 => {
                let digest = response
                    .headers()
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match digest {
                    Some(d) if validate_digest(&d).is_ok() => Ok(Some(d)),
                    // No (usable) header: fetch the bytes and hash them.
                    _ => {
                        let (_, bytes, _) = self.fetch_manifest(repo, reference)?;
                        Ok(Some(sha256_digest(&bytes)))
                    }
                }
            }
            404 => Ok(None),
            _ => Err(self.status_error(&req, response)),
        }
    }

    pub(crate) fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(String, Vec<u8>, Option<String>), RegistryError> {
        let scopes = [Self::pull_scope(repo)];
        let mut req = self.request(
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
            repo,
            &scopes,
        );
        req.headers
            .push(("Accept", MANIFEST_MEDIA_TYPES.join(", ")));
        let read = |attempt_req: &Request<'_>| -> Result<(String, Vec<u8>, Option<String>), RegistryError> {
            let response = self.attempt(attempt_req)?;
            match response.status().as_u16() {
                200 => {}
                404 => {
                    return Err(RegistryError::ManifestNotFound {
                        host: self.registry.host.clone(),
                        repository: repo.to_owned(),
                        reference: reference.to_owned(),
                    })
                }
                _ => return Err(self.status_error(attempt_req, response)),
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let media_type = header("content-type").unwrap_or_default();
            let digest = header("docker-content-digest");
            let bytes = response
                .into_body()
                .with_config()
                .limit(MANIFEST_LIMIT)
                .read_to_vec()
                .map_err(|source| RegistryError::Transport {
                    host: self.registry.host.clone(),
                    request: request_line(&attempt_req.method, &attempt_req.url),
                    source: Box::new(source),
                })?;
            Ok((media_type, bytes, digest))
        };
        self.retry.run(|_| read(&req), RegistryError::verdict)
    }

    /// The manifest `digest` of `repo`: its media type and bytes, whose
    /// sha256 is checked against `digest`.
    pub fn get_manifest(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<(String, Vec<u8>), RegistryError> {
        validate_digest(digest)?;
        let (media_type, bytes, _) = self.fetch_manifest(repo, digest)?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok((media_type, bytes))
    }

    /// Stream blob `digest` of `repo` into `out`, checking its sha256 as it
    /// goes; returns the size. On a mismatch `out` has received bad bytes:
    /// write to a temporary file and rename it only on success.
    pub fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        out: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        validate_digest(digest)?;
        let scopes = [Self::pull_scope(repo)];
        let mut req = self.request(
            Method::GET,
            &format!("/v2/{repo}/blobs/{digest}"),
            repo,
            &scopes,
        );
        req.follow_redirects = true;
        // Not retried once bytes went out: a retry would append to `out`.
        let response = self.send(&req)?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::BlobNotFound {
                    host: self.registry.host.clone(),
                    repository: repo.to_owned(),
                    digest: digest.to_owned(),
                })
            }
            _ => return Err(self.status_error(&req, response)),
        }
        let mut reader = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(RegistryError::Transport {
                        host: self.registry.host.clone(),
                        request: request_line(&req.method, &req.url),
                        source: Box::new(ureq::Error::Io(e)),
                    })
                }
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|source| RegistryError::WriteBlob {
                    host: self.registry.host.clone(),
                    repository: repo.to_owned(),
                    digest: digest.to_owned(),
                    source,
                })?;
            total += n as u64;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                host: self.registry.host.clone(),
                repository: repo.to_owned(),
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(total)
    }
}

/// Whether a transport error is rustls reading a plain-HTTP answer to its TLS
/// hello (the first byte, `H` of `HTTP/1.1 400`, is no TLS record type). ureq
/// passes it on either directly or inside the `io::Error` of the TLS stream.
fn is_plain_http_reply(e: &ureq::Error) -> bool {
    let tls = match e {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(
        tls,
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

/// Read and drop a response's (small) body so the connection can be reused.
pub(crate) fn drain(response: Response<ureq::Body>) {
    let _ = response
        .into_body()
        .with_config()
        .limit(64 << 10)
        .read_to_vec();
}

/// `METHOD /path` of a request, for error messages.
pub(crate) fn request_line(method: &Method, url: &str) -> String {
    format!("{method} {}", path_of(url))
}

/// The path of a URL, without scheme, host or query (for error messages).
pub(crate) fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    path.split('?').next().unwrap_or(path).to_owned()
}

/// `CODE: message` from a distribution error body, else a short text excerpt.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<One>,
    }
    #[derive(serde::Deserialize)]
    struct One {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        return e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(200)
        .collect()
}

/// Percent-encode a query value (keeps RFC 3986 unreserved characters).
pub(crate) fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `key=value` appended to its query.
pub(crate) fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", encode_query_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(insecure: bool) -> Client {
        Client::new(
            Registry {
                host: "reg.example:5000".into(),
                insecure,
            },
            CredentialSource::anonymous(),
        )
    }

    #[test]
    fn locations_resolve() {
        let c = client(true);
        assert_eq!(
            c.resolve_location("/v2/a/blobs/uploads/u?_state=x"),
            "http://reg.example:5000/v2/a/blobs/uploads/u?_state=x"
        );
        assert_eq!(
            c.resolve_location("https://cdn.example/u"),
            "https://cdn.example/u"
        );
        assert_eq!(client(false).url("/v2/"), "https://reg.example:5000/v2/");
        assert!(c.same_origin("http://reg.example:5000/v2/x"));
        assert!(!c.same_origin("http://reg.example:50001/v2/x"));
        assert!(!c.same_origin("https://reg.example:5000/v2/x"));
    }

    #[test]
    fn query_and_paths() {
        assert_eq!(
            with_query("http://h/u", "digest", "sha256:ab"),
            "http://h/u?digest=sha256%3Aab"
        );
        assert_eq!(
            with_query("http://h/u?x=1", "d", "a b"),
            "http://h/u?x=1&d=a%20b"
        );
        assert_eq!(
            path_of("http://h:1/v2/a/blobs/uploads/u?_state=s"),
            "/v2/a/blobs/uploads/u"
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match","detail":"x"}]}"#),
            "DIGEST_INVALID: provided digest did not match"
        );
        assert_eq!(error_message(b" oops "), "oops");
    }

    #[test]
    fn transient_statuses() {
        assert!(is_transient_status(503) && is_transient_status(429) && is_transient_status(500));
        assert!(
            !is_transient_status(501) && !is_transient_status(404) && !is_transient_status(400)
        );
    }
}
