//! Reading a Debian archive over HTTP: a suite's signed `InRelease`, then the
//! `Packages` indexes it vouches for.
//!
//! The trust chain is the archive's own: the keyring verifies `InRelease`, whose
//! `SHA256` list verifies each index. That is why plain `http://` mirrors (Debian's
//! default) are fine. An index is hashed while it downloads and compared with
//! Release before anything parses or caches it; verified indexes are kept in the
//! cache's blob store under their sha256, so an index shared by two images or two
//! runs is downloaded once, and a re-lock whose `InRelease` is unchanged downloads
//! nothing but `InRelease`.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cache::{CacheError, Store};
use crate::debian::missing::{index_missing_hint, unknown_suite_hint, KnownSuite, ReleaseNow};
use crate::debian::release::{Release, ReleaseError};
use crate::debian::signature::{Keyring, SignatureError};
use crate::digest::HashingWriter;
use crate::registry::retry::{RetryPolicy, Verdict};

/// Indexes fetched at once by [`Mirror::packages_many`]: enough to hide latency,
/// few enough to be polite to a public mirror.
const PARALLEL: usize = 4;

/// `InRelease` files larger than this are refused (Debian's are ~150 KB).
const INRELEASE_LIMIT: u64 = 64 << 20;

/// How far past its listed size an index is read: far enough that a swapped file
/// is hashed whole (so the error names its real digest), not so far that a
/// hostile mirror can stream forever.
const INDEX_SLACK: u64 = 16 << 20;

/// A failed archive access; every variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The mirror URL is not `http://` or `https://`.
    #[error("mirror {url:?} is not an http:// or https:// URL")]
    BadMirror {
        /// What was given.
        url: String,
    },
    /// No HTTP response (connection refused, DNS, TLS, timeout), after retries.
    #[error("fetching {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// ureq's error.
        source: Box<ureq::Error>,
    },
    /// The connection broke while the body was read (after retries).
    #[error("fetching {url}: the mirror stopped sending after {received} bytes: {source}")]
    Interrupted {
        /// The URL.
        url: String,
        /// Bytes received before it broke.
        received: u64,
        /// The read error.
        source: io::Error,
    },
    /// An HTTP error status (5xx after retries, 4xx).
    #[error("fetching {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// `dists/SUITE/InRelease` is not there: the mirror has no such suite.
    #[error("{url}: HTTP 404: there is no suite {suite:?} on {mirror}; {}", unknown_suite_hint(.known, .probed))]
    UnknownSuite {
        /// The `InRelease` URL.
        url: String,
        /// The suite asked for.
        suite: String,
        /// The mirror.
        mirror: String,
        /// The well-known suites the mirror has.
        known: Vec<KnownSuite>,
        /// Every alias probed for them.
        probed: Vec<String>,
    },
    /// An index the verified Release lists is not on the mirror.
    #[error("fetching {url}: HTTP 404: {release_url} lists it but the mirror does not have it; {}", index_missing_hint(.now))]
    IndexMissing {
        /// The index URL.
        url: String,
        /// The `InRelease` that lists it.
        release_url: String,
        /// The mirror's `InRelease` now, compared with the one fetched.
        now: ReleaseNow,
    },
    /// `InRelease` did not verify.
    #[error("{url}: {source}")]
    Signature {
        /// The `InRelease` URL.
        url: String,
        /// Why.
        source: SignatureError,
    },
    /// The verified Release is unusable, expired, or lacks what was asked for.
    #[error("{url}: {source}")]
    Release {
        /// The `InRelease` URL.
        url: String,
        /// Why.
        source: ReleaseError,
    },
    /// The `InRelease` served for one suite is another suite's (a replay).
    #[error("{url}: asked for suite {requested} but the signed Release is for Suite {suite:?}, Codename {codename:?}")]
    WrongSuite {
        /// The `InRelease` URL.
        url: String,
        /// The suite asked for.
        requested: String,
        /// The Release's `Suite`.
        suite: Option<String>,
        /// The Release's `Codename`.
        codename: Option<String>,
    },
    /// A downloaded index is not the one Release lists: nothing was parsed or cached.
    #[error("{url}: sha256 mismatch: Release lists sha256:{expected} ({expected_size} bytes), the mirror sent sha256:{actual} ({actual_size} bytes); nothing was cached")]
    DigestMismatch {
        /// The index URL.
        url: String,
        /// What Release lists (hex).
        expected: String,
        /// What arrived (hex).
        actual: String,
        /// The size Release lists.
        expected_size: u64,
        /// Bytes received (reading stops 16 MiB past the listed size; the digest is
        /// then of what was read).
        actual_size: u64,
    },
    /// A verified index does not decompress.
    #[error("{url}: cannot decompress: {source}")]
    Decompress {
        /// The index URL.
        url: String,
        /// The decoder's error.
        source: io::Error,
    },
    /// What arrived could not be written where it was going (a temp file in the cache).
    #[error("fetching {url}: storing what arrived: {source}")]
    Sink {
        /// The URL.
        url: String,
        /// The write error.
        source: io::Error,
    },
    /// The cache could not be read or written.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl FetchError {
    fn verdict(&self) -> Verdict {
        match self {
            FetchError::Transport { source, .. } => match **source {
                ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::HostNotFound
                | ureq::Error::Protocol(_)
                | ureq::Error::BodyStalled => Verdict::Retry { after: None },
                _ => Verdict::Fatal,
            },
            FetchError::Interrupted { .. } => Verdict::Retry { after: None },
            FetchError::Status { status, .. }
                if *status == 429 || ((500..=599).contains(status) && *status != 501) =>
            {
                Verdict::Retry { after: None }
            }
            _ => Verdict::Fatal,
        }
    }
}

/// One mirror (`http://deb.debian.org/debian`): one keep-alive HTTP agent shared
/// by every request and thread.
#[derive(Clone)]
pub struct Mirror {
    base: String,
    agent: ureq::Agent,
    retry: RetryPolicy,
    progress: Option<Arc<Progress>>,
}

/// Told the size of every chunk of body received, from any thread.
type Progress = dyn Fn(u64) + Send + Sync;

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("base", &self.base)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A suite's verified and parsed `InRelease`, and what a lock records of it.
#[derive(Debug, Clone)]
pub struct SuiteRelease {
    /// The suite as requested (`bookworm`, `bookworm-updates`).
    pub suite: String,
    /// The `InRelease` URL.
    pub url: String,
    /// `sha256:<hex>` of the `InRelease` bytes as served.
    pub inrelease_sha256: String,
    /// Primary-key fingerprint of the key whose signature verified first.
    pub fingerprint: String,
    /// Every primary-key fingerprint whose signature verified, in message order.
    pub signers: Vec<String>,
    /// The parsed Release (from the verified text only).
    pub release: Release,
}

/// A verified `Packages` index.
#[derive(Debug, Clone)]
pub struct PackagesIndex {
    /// Component (`main`).
    pub component: String,
    /// Debian arch (`amd64`).
    pub arch: String,
    /// The path Release lists (`main/binary-amd64/Packages.xz`).
    pub path: String,
    /// `sha256:<hex>` of the compressed file (its cache blob).
    pub sha256: String,
    /// Whether it came from the network (false: from the cache).
    pub downloaded: bool,
    /// The decompressed `Packages` text.
    pub data: Vec<u8>,
}

impl Mirror {
    /// A client for the mirror at `url` (trailing `/` optional), with the default
    /// retry policy for connection errors and 5xx.
    pub fn new(url: &str) -> Result<Mirror, FetchError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains(' ') {
            return Err(FetchError::BadMirror {
                url: url.to_string(),
            });
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("imgraph/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build();
        // One DNS lookup per host per build, not one per request (see `dns`).
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            crate::debian::dns::CachingResolver::default(),
        );
        Ok(Mirror {
            base,
            agent,
            retry: RetryPolicy::default(),
            progress: None,
        })
    }

    /// Calls `on_bytes` with the size of every chunk of body received (from the
    /// fetching threads too), so a TTY can show bytes as they arrive.
    pub fn with_progress(mut self, on_bytes: impl Fn(u64) + Send + Sync + 'static) -> Mirror {
        self.progress = Some(Arc::new(on_bytes));
        self
    }

    /// Uses this retry policy instead of the default.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Mirror {
        self.retry = retry;
        self
    }

    /// The mirror's URL, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Fetches `dists/SUITE/InRelease`, verifies it with `keyring`, parses it and
    /// checks `Valid-Until` against `now` (unless `allow_expired`; the signing key
    /// must be valid at `now` regardless). Also refuses a
    /// Release whose `Suite` and `Codename` both differ from `suite`.
    pub fn release(
        &self,
        suite: &str,
        keyring: &Keyring,
        now: SystemTime,
        allow_expired: bool,
    ) -> Result<SuiteRelease, FetchError> {
        let url = format!("{}/dists/{suite}/InRelease", self.base);
        let (bytes, inrelease_sha256, _) = match self.get(&url, INRELEASE_LIMIT) {
            Err(FetchError::Status { status: 404, .. }) => {
                let (known, probed) = self.known_suites(suite);
                return Err(FetchError::UnknownSuite {
                    url,
                    suite: suite.to_string(),
                    mirror: self.base.clone(),
                    known,
                    probed,
                });
            }
            got => got?,
        };
        let verified =
            keyring
                .verify_cleartext(&bytes, now)
                .map_err(|source| FetchError::Signature {
                    url: url.clone(),
                    source,
                })?;
        let release_err = |source| FetchError::Release {
            url: url.clone(),
            source,
        };
        let release = Release::parse(&verified.text, suite).map_err(release_err)?;
        if release.suite.as_deref() != Some(suite) && release.codename.as_deref() != Some(suite) {
            return Err(FetchError::WrongSuite {
                url,
                requested: suite.to_string(),
                suite: release.suite,
                codename: release.codename,
            });
        }
        if !allow_expired {
            release.check_valid(now).map_err(release_err)?;
        }
        Ok(SuiteRelease {
            suite: suite.to_string(),
            url,
            inrelease_sha256,
            fingerprint: verified.fingerprint,
            signers: verified.signers,
            release,
        })
    }

    /// The `Packages` index of `component`/`arch` (`.xz`, else `.gz`, else plain,
    /// by what Release lists), verified against Release's sha256 and size before
    /// anything else happens to it, from the cache when a blob of that sha256 is
    /// there, else downloaded (`by-hash` first when the suite offers it, the plain
    /// path when the mirror lacks the by-hash file) and then cached.
    pub fn packages(
        &self,
        suite: &SuiteRelease,
        component: &str,
        arch: &str,
        store: &Store,
    ) -> Result<PackagesIndex, FetchError> {
        let (path, entry) = suite
            .release
            .packages_index(component, arch)
            .map_err(|source| FetchError::Release {
                url: suite.url.clone(),
                source,
            })?;
        let digest = format!("sha256:{}", entry.sha256);
        let dists = format!("{}/dists/{}", self.base, suite.suite);
        let plain_url = format!("{dists}/{path}");
        let cached = if store.has_blob(&digest) {
            // A blob that fails its digest check is dropped by the store: download it again.
            store.read_blob(&digest).ok()
        } else {
            None
        };
        let (compressed, url, downloaded) = match cached {
            Some(bytes) => (bytes, plain_url, false),
            None => {
                let mut urls = Vec::new();
                if suite.release.acquire_by_hash {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    urls.push(format!("{dists}/{dir}/by-hash/SHA256/{}", entry.sha256));
                }
                urls.push(plain_url);
                let mut fetched = None;
                let mut last_err = None;
                for url in urls {
                    match self.get(&url, entry.size + INDEX_SLACK) {
                        Ok((bytes, actual, _)) => {
                            fetched = Some((bytes, actual, url));
                            break;
                        }
                        // A by-hash file the mirror lacks: the plain path may still match.
                        Err(FetchError::Status { status: 404, .. })
                            if url.contains("/by-hash/") =>
                        {
                            continue
                        }
                        Err(e) => {
                            last_err = Some(e);
                            break;
                        }
                    }
                }
                let Some((bytes, actual, url)) = fetched else {
                    return Err(match last_err.expect("at least the plain URL was tried") {
                        // Mid-update only if the mirror has moved to another Release since.
                        FetchError::Status { url, status: 404 } => FetchError::IndexMissing {
                            url,
                            release_url: suite.url.clone(),
                            now: self.release_now(&suite.suite, &suite.inrelease_sha256),
                        },
                        e => e,
                    });
                };
                if actual != digest || bytes.len() as u64 != entry.size {
                    return Err(FetchError::DigestMismatch {
                        url,
                        expected: entry.sha256.clone(),
                        actual: actual.trim_start_matches("sha256:").to_string(),
                        expected_size: entry.size,
                        actual_size: bytes.len() as u64,
                    });
                }
                store.put_bytes(&bytes)?;
                (bytes, url, true)
            }
        };
        let mut data = Vec::new();
        crate::decompress::decoder(
            crate::decompress::Format::sniff(&compressed),
            &compressed[..],
        )
        .and_then(|mut r| r.read_to_end(&mut data))
        .map_err(|source| FetchError::Decompress { url, source })?;
        Ok(PackagesIndex {
            component: component.to_string(),
            arch: arch.to_string(),
            path: path.to_string(),
            sha256: digest,
            downloaded,
            data,
        })
    }

    /// [`Mirror::packages`] for each `(component, arch)`, a few at a time on
    /// threads; results in the order asked.
    pub fn packages_many(
        &self,
        suite: &SuiteRelease,
        wanted: &[(String, String)],
        store: &Store,
    ) -> Vec<Result<PackagesIndex, FetchError>> {
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Result<PackagesIndex, FetchError>>> =
            (0..wanted.len()).map(|_| None).collect();
        let slots = std::sync::Mutex::new(&mut results);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL.min(wanted.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((component, arch)) = wanted.get(i) else {
                        break;
                    };
                    let r = self.packages(suite, component, arch, store);
                    slots.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                });
            }
        });
        results
            .into_iter()
            .map(|r| r.expect("every index was fetched"))
            .collect()
    }

    /// The URL of a file the mirror serves, by its path from the mirror's root
    /// (a `Filename` of a Packages index: `pool/main/b/bash/bash_5.2_amd64.deb`).
    pub fn file_url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Streams the file at `path` (see [`Mirror::file_url`]) into a writer that
    /// `sink` makes afresh for every attempt, with the retries of the indexes
    /// (connection errors, 5xx, a body cut short); reads at most `limit + 1` bytes.
    /// Returns the writer and the byte count. The writer checks what it got (a
    /// `BlobWriter` hashes as it writes), so a large file (a `.deb`) goes to disk
    /// rather than memory, is hashed once, and is kept only once it has been checked.
    pub fn stream_file<W: Write>(
        &self,
        path: &str,
        limit: u64,
        mut sink: impl FnMut() -> Result<W, FetchError>,
    ) -> Result<(W, u64), FetchError> {
        let url = self.file_url(path);
        self.retry
            .run(|_| self.get_once(&url, limit, sink()?), FetchError::verdict)
    }

    /// GETs `url` whole (with retries), hashing the body as it arrives; reads at
    /// most `limit + 1` bytes, so an endless body fails its size check without
    /// being read to the end. Returns the bytes, `sha256:<hex>` and the length.
    fn get(&self, url: &str, limit: u64) -> Result<(Vec<u8>, String, u64), FetchError> {
        let (out, _) = self.retry.run(
            |_| self.get_once(url, limit, HashingWriter::new(Vec::new())),
            FetchError::verdict,
        )?;
        Ok(out.finish())
    }

    /// GETs `url` once, no retries, keeping at most `limit` bytes: a probe for a
    /// message (see `missing`), whose answer is not trusted for anything else.
    pub(super) fn peek(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let (out, _) = self.get_once(url, limit, Vec::new())?;
        Ok(out)
    }

    /// GETs `url` whole (up to the `InRelease` limit, with retries), unverified:
    /// the bytes and their `sha256:<hex>`, to compare with what was fetched before.
    pub(super) fn get_unverified(&self, url: &str) -> Result<(Vec<u8>, String), FetchError> {
        let (bytes, sha256, _) = self.get(url, INRELEASE_LIMIT)?;
        Ok((bytes, sha256))
    }

    fn get_once<W: Write>(
        &self,
        url: &str,
        limit: u64,
        mut out: W,
    ) -> Result<(W, u64), FetchError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|source| FetchError::Transport {
                url: url.to_string(),
                source: Box::new(source),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        let mut reader = response.into_body().into_reader().take(limit + 1);
        let mut received = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.write_all(&buf[..n])
                        .map_err(|source| FetchError::Sink {
                            url: url.to_string(),
                            source,
                        })?;
                    received += n as u64;
                    if let Some(progress) = &self.progress {
                        progress(n as u64);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FetchError::Interrupted {
                        url: url.to_string(),
                        received,
                        source,
                    })
                }
            }
        }
        Ok((out, received))
    }
}
