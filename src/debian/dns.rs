//! One DNS lookup per mirror host per build, shared by every archive client.
//!
//! ureq resolves the host before every request, even one that then reuses a
//! keep-alive connection, and a build fetches ~100 `.deb`s per platform, each
//! through a fresh lookup. glibc sends the A and AAAA queries together; when a
//! resolver drops one of the two replies (as this project's CI resolver does
//! now and then) the lookup waits out resolv.conf's 5 s timeout. With a lookup
//! per request that stall hit a 12-platform build dozens of times, and it was
//! most of the wall time of fetching (measured in BENCHMARKS.md, row h). So the
//! answer is kept for [`TTL`], process-wide: every [`crate::debian::fetch::Mirror`]
//! (one per rootfs step) shares it, and concurrent first lookups of one host
//! wait for one answer instead of racing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long an answer is reused: a build's length, not a record's TTL (a
/// mirror that moves mid-build fails over on the next build, as apt does with
/// its one connection per host).
const TTL: Duration = Duration::from_secs(120);

/// `scheme://host:port` -> when it was resolved, and the addresses.
type Answers = HashMap<String, (Instant, ResolvedSocketAddrs)>;

fn answers() -> &'static Mutex<Answers> {
    static ANSWERS: OnceLock<Mutex<Answers>> = OnceLock::new();
    ANSWERS.get_or_init(Mutex::default)
}

/// ureq's own resolver behind a process-wide cache of its answers (failures
/// are not cached: the next request asks again).
#[derive(Debug, Default)]
pub(crate) struct CachingResolver {
    inner: DefaultResolver,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map(|a| a.as_str()).unwrap_or("")
        );
        // Held while resolving: the other threads asking for the same host get
        // this answer rather than each waiting on the network.
        let mut cache = answers().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, addrs)) = cache.get(&key) {
            if at.elapsed() < TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        cache.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_resolved_once_and_its_answer_reused() {
        // A name only the cache can answer the second time: resolve a real
        // loopback name, then check the cached entry is what comes back.
        let r = CachingResolver::default();
        let uri: Uri = "http://localhost:9/x".parse().unwrap();
        let config = Config::default();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let first = r.resolve(&uri, &config, timeout).unwrap();
        assert!(!first.is_empty());
        let key = "http://localhost:9".to_string();
        let marked: ResolvedSocketAddrs = {
            let mut v = r.empty();
            v.push("127.0.0.2:9".parse().unwrap());
            v
        };
        answers()
            .lock()
            .unwrap()
            .insert(key.clone(), (Instant::now(), marked));
        let second = r.resolve(&uri, &config, timeout).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0], "127.0.0.2:9".parse().unwrap());
        // An expired answer is looked up again.
        answers().lock().unwrap().get_mut(&key).unwrap().0 = Instant::now() - TTL;
        let third = r.resolve(&uri, &config, timeout).unwrap();
        assert!(third.iter().all(|a| *a != "127.0.0.2:9".parse().unwrap()));
    }
}
