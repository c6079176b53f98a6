//! Registry URLs (`[https://|http://]host[:port]/namespace`, as in `[registries.NAME] url`) and the
//! names the distribution spec allows for repositories, tags and digests.

/// A registry URL from `images.toml` could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("registry url `{url}` is empty; write `host[:port]/namespace`, e.g. `127.0.0.1:5000/bitnami`")]
    Empty { url: String },
    /// Not `https://` or `http://`. The url is left out: it may hold anything.
    #[error("registry url has scheme `{scheme}://`; write `https://`, `http://` (plain HTTP) or no scheme")]
    Scheme { scheme: String },
    /// `user:password@` before the host. Neither the url nor the userinfo is
    /// kept, so the error can be printed anywhere.
    #[error("registry url has credentials before `@{host}`; put credentials in ~/.docker/config.json (run `docker login {host}`), not in images.toml")]
    Credentials { host: String },
    #[error("registry url `{url}`: `{host}` is not a valid host[:port]")]
    Host { url: String, host: String },
    #[error("registry url `{url}`: port {port} is out of range; use 1-65535")]
    Port { url: String, port: String },
    #[error("repository `{repository}` on {host} is not valid: path components are lowercase letters and digits, separated by `.`, `_`, `__` or dashes")]
    Repository { host: String, repository: String },
    #[error("tag `{tag}` is not valid: up to 128 of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`")]
    Tag { tag: String },
    #[error("digest `{digest}` is not valid: expected `sha256:` and 64 lowercase hex digits")]
    Digest { digest: String },
}

/// Docker Hub's names: the API lives on `registry-1.docker.io`, credentials are
/// stored under `https://index.docker.io/v1/`.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Whether `host` is one of Docker Hub's names.
pub fn is_docker_hub(host: &str) -> bool {
    DOCKER_HUB_ALIASES.contains(&host)
}

/// A parsed `[registries.NAME] url`: `[scheme://]host[:port]` and an optional namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    /// `host[:port]` the API is served on (Docker Hub aliases map to `registry-1.docker.io`).
    pub host: String,
    /// Path prefix of every repository, e.g. `bitnami`, or `None`.
    pub namespace: Option<String>,
    /// What the scheme says: `Some(true)` for `http://` (plain HTTP), `Some(false)`
    /// for `https://`, `None` without one (the registry's `insecure` decides).
    pub plain_http: Option<bool>,
}

/// Where one image goes: the registry host and the repository in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRepository {
    pub host: String,
    pub repository: String,
}

impl RegistryUrl {
    /// Parse `[https://|http://]host[:port][/namespace]`.
    pub fn parse(url: &str) -> Result<Self, ReferenceError> {
        let trimmed = url.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ReferenceError::Empty {
                url: url.to_owned(),
            });
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, trimmed),
        };
        // Userinfo first, before any error that would quote the url: `@` is
        // valid in neither a host nor a repository, so any `@` means credentials
        // (a password may itself hold `/` or `@`).
        if let Some((_, after)) = rest.rsplit_once('@') {
            return Err(ReferenceError::Credentials {
                host: after.split('/').next().unwrap_or("").to_owned(),
            });
        }
        let plain_http = match scheme {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("https") => Some(false),
            Some(s) if s.eq_ignore_ascii_case("http") => Some(true),
            Some(s) => {
                return Err(ReferenceError::Scheme {
                    scheme: s.to_owned(),
                })
            }
        };
        let (host, namespace) = match rest.split_once('/') {
            Some((h, ns)) => (h, Some(ns)),
            None => (rest, None),
        };
        check_host(url, host)?;
        let host = if is_docker_hub(host) {
            DOCKER_HUB_API.to_owned()
        } else {
            host.to_owned()
        };
        if let Some(ns) = namespace {
            validate_repository(&host, ns)?;
        }
        Ok(RegistryUrl {
            host,
            namespace: namespace.map(str::to_owned),
            plain_http,
        })
    }

    /// The repository of image `name` under this URL (`<namespace>/<name>`;
    /// Docker Hub's official images get `library/`).
    pub fn repository(&self, name: &str) -> Result<ImageRepository, ReferenceError> {
        let repository = match &self.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None if self.host == DOCKER_HUB_API && !name.contains('/') => format!("library/{name}"),
            None => name.to_owned(),
        };
        validate_repository(&self.host, &repository)?;
        Ok(ImageRepository {
            host: self.host.clone(),
            repository,
        })
    }
}

/// `host[:port]` or `[v6]:port`; a numeric port must be 1-65535.
fn check_host(url: &str, host: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Host {
        url: url.to_owned(),
        host: host.to_owned(),
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        let (v6, tail) = rest.split_once(']').ok_or_else(bad)?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match tail {
            "" => (None, None),
            t => (None, Some(t.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(ReferenceError::Port {
                url: url.to_owned(),
                port: p.to_owned(),
            });
        }
    }
    let Some(name) = name else {
        return Ok(());
    };
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Check a repository name against the distribution spec's grammar
/// (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`).
pub fn validate_repository(host: &str, repository: &str) -> Result<(), ReferenceError> {
    let err = || ReferenceError::Repository {
        host: host.to_owned(),
        repository: repository.to_owned(),
    };
    if repository.is_empty() || repository.len() > 255 {
        return Err(err());
    }
    for component in repository.split('/') {
        if !valid_component(component) {
            return Err(err());
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: `.`, `_`, `__` or one or more `-`
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Check a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag {
            tag: tag.to_owned(),
        })
    }
}

/// Check a digest: `sha256:` + 64 lowercase hex digits (the only algorithm imgraph writes).
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(ReferenceError::Digest {
            digest: digest.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_namespace() {
        let u = RegistryUrl::parse("127.0.0.1:5000/bitnami").unwrap();
        assert_eq!(u.host, "127.0.0.1:5000");
        assert_eq!(u.namespace.as_deref(), Some("bitnami"));
        let r = u.repository("minideb").unwrap();
        assert_eq!(r.repository, "bitnami/minideb");
        let u = RegistryUrl::parse("ghcr.io/org/team/").unwrap();
        assert_eq!(u.repository("x").unwrap().repository, "org/team/x");
        let u = RegistryUrl::parse("localhost:5000").unwrap();
        assert_eq!(u.repository("x").unwrap().repository, "x");
        let u = RegistryUrl::parse("[::1]:5000/ns").unwrap();
        assert_eq!(u.host, "[::1]:5000");
    }

    #[test]
    fn docker_hub_aliases() {
        let u = RegistryUrl::parse("docker.io").unwrap();
        assert_eq!(u.host, DOCKER_HUB_API);
        assert_eq!(u.repository("debian").unwrap().repository, "library/debian");
        let u = RegistryUrl::parse("docker.io/bitnami").unwrap();
        assert_eq!(
            u.repository("minideb").unwrap().repository,
            "bitnami/minideb"
        );
    }

    #[test]
    fn schemes_say_plain_http_or_tls() {
        let u = RegistryUrl::parse("http://127.0.0.1:5000/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.plain_http),
            ("127.0.0.1:5000", Some(true))
        );
        let u = RegistryUrl::parse("HTTPS://x.io/a").unwrap();
        assert_eq!(u.plain_http, Some(false));
        assert_eq!(RegistryUrl::parse("x.io/a").unwrap().plain_http, None);
    }

    #[test]
    fn credentials_are_refused_without_quoting_them() {
        for url in [
            "alice:s3cret@x.io:5000/a",
            "https://alice:s3cret@x.io:5000/a",
            "ftp://alice:s3cret@x.io:5000/a",
            "alice:s3/cret@x.io:5000/a",
        ] {
            let err = RegistryUrl::parse(url).unwrap_err();
            assert!(
                matches!(&err, ReferenceError::Credentials { host } if host == "x.io:5000"),
                "{url}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("s3") && !shown.contains("cret"), "{shown}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            RegistryUrl::parse("ftp://x.io/a"),
            Err(ReferenceError::Scheme { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("x.io:0/a"),
            Err(ReferenceError::Port { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("[::1]:70000"),
            Err(ReferenceError::Port { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse(""),
            Err(ReferenceError::Empty { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("x.io:99999/a"),
            Err(ReferenceError::Port { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("x.io:/a"),
            Err(ReferenceError::Host { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("x.io/Upper"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            RegistryUrl::parse("x.io/a//b"),
            Err(ReferenceError::Repository { .. })
        ));
    }

    #[test]
    fn repository_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a/b/c", "9x"] {
            assert!(validate_repository("h", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a..b", "a___b", "a._b", "A", "a/", "/a", "a b",
        ] {
            assert!(validate_repository("h", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert!(validate_tag("bookworm").is_ok());
        assert!(validate_tag("v1.2-rc_3").is_ok());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(validate_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(validate_digest("sha512:00").is_err());
    }
}
