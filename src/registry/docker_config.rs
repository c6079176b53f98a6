//! Credentials as `docker login` stores them: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`) with `auths` (`auth` = base64 `user:password`,
//! `identitytoken`), `credHelpers` (per host) and `credsStore` (default helper),
//! the helpers being `docker-credential-<name>` executables run as `get`.
//!
//! Lookup order for a host: its `credHelpers` entry, then inline `auths`
//! credentials, then `credsStore`. Helpers run only when a registry asks for
//! credentials (on a 401), and at most once per client.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::Secret;
use crate::manifest::reference::is_docker_hub;

/// Reading credentials failed. No variant ever holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read docker config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Only the position and category of a JSON error: serde's message can quote values.
    #[error(
        "docker config {path} is not valid JSON ({category} error at line {line}, column {column})"
    )]
    Parse {
        path: PathBuf,
        category: &'static str,
        line: usize,
        column: usize,
    },
    #[error("docker config {path}: the `auth` entry for {host} is not base64 of `user:password`")]
    BadAuthField { path: PathBuf, host: String },
    #[error("credential helper `docker-credential-{helper}` for {host} was not found on PATH; install it or remove it from the docker config")]
    HelperNotFound { helper: String, host: String },
    #[error("credential helper `docker-credential-{helper}` for {host} failed to run: {source}")]
    HelperSpawn {
        helper: String,
        host: String,
        source: std::io::Error,
    },
    #[error(
        "credential helper `docker-credential-{helper}` for {host} failed ({status}): {message}"
    )]
    HelperFailed {
        helper: String,
        host: String,
        status: String,
        message: String,
    },
    #[error("credential helper `docker-credential-{helper}` for {host} printed something that is not {{\"Username\",\"Secret\"}} JSON")]
    HelperOutput { helper: String, host: String },
}

/// What to authenticate with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// HTTP basic credentials; also used to get bearer tokens.
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for bearer tokens.
    IdentityToken { username: String, token: Secret },
}

#[derive(serde::Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct RawAuth {
    #[serde(default)]
    auth: Option<Secret>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    identitytoken: Option<Secret>,
}

#[derive(serde::Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret")]
    secret: Secret,
}

/// Where a [`Client`](super::Client) gets credentials from.
#[derive(Clone, Default)]
pub struct CredentialSource {
    path: Option<PathBuf>,
    config: Option<std::sync::Arc<RawConfig>>,
    fixed: Option<Credential>,
    helper_path: Option<OsString>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("path", &self.path)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

impl CredentialSource {
    /// No credentials: anonymous access only.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Always these credentials, whatever the host.
    pub fn fixed(credential: Credential) -> Self {
        CredentialSource {
            fixed: Some(credential),
            ..Self::default()
        }
    }

    /// `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`; a missing file
    /// means anonymous access.
    pub fn from_env() -> Result<Self, CredentialError> {
        let dir = match std::env::var_os("DOCKER_CONFIG") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => match std::env::var_os("HOME") {
                Some(h) => Path::new(&h).join(".docker"),
                None => return Ok(Self::anonymous()),
            },
        };
        Self::from_dir(&dir)
    }

    /// `DIR/config.json`; a missing file means anonymous access.
    pub fn from_dir(dir: &Path) -> Result<Self, CredentialError> {
        Self::from_file(&dir.join("config.json"))
    }

    /// This config file; a missing file means anonymous access.
    pub fn from_file(path: &Path) -> Result<Self, CredentialError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Anonymous, but remembering where it looked, for "no credentials
                // were found in PATH".
                return Ok(CredentialSource {
                    path: Some(path.to_owned()),
                    ..Self::default()
                });
            }
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let config: RawConfig =
            serde_json::from_slice(&text).map_err(|e| CredentialError::Parse {
                path: path.to_owned(),
                category: match e.classify() {
                    serde_json::error::Category::Io => "I/O",
                    serde_json::error::Category::Syntax => "syntax",
                    serde_json::error::Category::Data => "data",
                    serde_json::error::Category::Eof => "unexpected end of file",
                },
                line: e.line(),
                column: e.column(),
            })?;
        Ok(CredentialSource {
            path: Some(path.to_owned()),
            config: Some(std::sync::Arc::new(config)),
            ..Self::default()
        })
    }

    /// The config file this source reads (or would read, had it existed), for
    /// messages; `$DOCKER_CONFIG/config.json` when it reads none.
    pub fn location(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "$DOCKER_CONFIG/config.json".to_owned(),
        }
    }

    /// Search these directories (`PATH` syntax) for `docker-credential-*`
    /// instead of `$PATH`.
    pub fn with_helper_path(mut self, path: impl Into<OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// The credentials for `host` (`host[:port]`), if any are configured.
    /// May run a credential helper.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        if let Some(c) = &self.fixed {
            return Ok(Some(c.clone()));
        }
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let path = self.path.clone().unwrap_or_default();
        let wanted = normalize_key(host);
        if let Some(helper) = config
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == wanted)
            .map(|(_, v)| v)
        {
            return self.run_helper(helper, host);
        }
        for (key, entry) in &config.auths {
            if normalize_key(key) != wanted {
                continue;
            }
            if let Some(c) = inline_credential(entry, &path, host)? {
                return Ok(Some(c));
            }
        }
        match &config.creds_store {
            Some(store) if !store.is_empty() => self.run_helper(store, host),
            _ => Ok(None),
        }
    }

    fn run_helper(&self, helper: &str, host: &str) -> Result<Option<Credential>, CredentialError> {
        let exe_name = format!("docker-credential-{helper}");
        let search = self
            .helper_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))
            .unwrap_or_default();
        let exe = std::env::split_paths(&search)
            .map(|d| d.join(&exe_name))
            .find(|p| p.is_file())
            .ok_or_else(|| CredentialError::HelperNotFound {
                helper: helper.to_owned(),
                host: host.to_owned(),
            })?;
        let spawn_err = |source| CredentialError::HelperSpawn {
            helper: helper.to_owned(),
            host: host.to_owned(),
            source,
        };
        let mut child = Command::new(&exe)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let server_url = if is_docker_hub(host) {
            "https://index.docker.io/v1/".to_owned()
        } else {
            host.to_owned()
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading gives EPIPE: its status tells.
            let _ = stdin.write_all(server_url.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            });
            if text.contains("credentials not found") {
                return Ok(None);
            }
            let message: String = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            return Err(CredentialError::HelperFailed {
                helper: helper.to_owned(),
                host: host.to_owned(),
                status: out.status.to_string(),
                message,
            });
        }
        let reply: HelperReply =
            serde_json::from_slice(&out.stdout).map_err(|_| CredentialError::HelperOutput {
                helper: helper.to_owned(),
                host: host.to_owned(),
            })?;
        if reply.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if reply.username == "<token>" {
            Credential::IdentityToken {
                username: String::new(),
                token: reply.secret,
            }
        } else {
            Credential::Basic {
                username: reply.username,
                password: reply.secret,
            }
        }))
    }
}

fn inline_credential(
    entry: &RawAuth,
    path: &Path,
    host: &str,
) -> Result<Option<Credential>, CredentialError> {
    let mut username = entry.username.clone().unwrap_or_default();
    let mut password = entry.password.clone();
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let bad = || CredentialError::BadAuthField {
            path: path.to_owned(),
            host: host.to_owned(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.expose().trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (u, p) = decoded.split_once(':').ok_or_else(bad)?;
        username = u.to_owned();
        password = Some(Secret::new(p));
    }
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: token.clone(),
        }));
    }
    Ok(match password {
        Some(password) if !username.is_empty() => Some(Credential::Basic { username, password }),
        _ => None,
    })
}

/// `https://host:port/v1/` -> `host:port`; Docker Hub's names -> `index.docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k.split_once("://").map_or(k, |(_, rest)| rest);
    let k = k.split('/').next().unwrap_or("").to_ascii_lowercase();
    if is_docker_hub(&k) {
        "index.docker.io".to_owned()
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(json: &str) -> (tempfile::TempDir, CredentialSource) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        let src = CredentialSource::from_dir(dir.path()).unwrap();
        (dir, src)
    }

    #[test]
    fn auths_base64_and_identitytoken() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let (_d, src) = write_config(&format!(
            r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{auth}"}},
                "tok.example":{{"auth":"","identitytoken":"refresh-me"}},
                "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
        ));
        assert_eq!(
            src.lookup("reg.example:5000").unwrap(),
            Some(Credential::Basic {
                username: "alice".into(),
                password: Secret::new("s3cr:et")
            })
        );
        assert!(matches!(
            src.lookup("tok.example").unwrap(),
            Some(Credential::IdentityToken { .. })
        ));
        assert!(matches!(
            src.lookup("registry-1.docker.io").unwrap(),
            Some(Credential::Basic { .. })
        ));
        assert_eq!(src.lookup("other.example").unwrap(), None);
        assert_eq!(
            src.lookup("reg.example").unwrap(),
            None,
            "port is part of the key"
        );
    }

    #[test]
    fn missing_file_is_anonymous_and_bad_json_hides_values() {
        let dir = tempfile::tempdir().unwrap();
        let src = CredentialSource::from_dir(dir.path()).unwrap();
        assert_eq!(src.lookup("x").unwrap(), None);
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"auths":{"h":"topsecretvalue"}}"#).unwrap();
        let err = CredentialSource::from_dir(dir.path()).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("topsecretvalue"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn bad_auth_field_names_host_not_value() {
        let (_d, src) = write_config(r#"{"auths":{"h.example":{"auth":"!!notbase64secret"}}}"#);
        let err = src.lookup("h.example").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(
            text.contains("h.example") && !text.contains("notbase64secret"),
            "{text}"
        );
    }

    #[test]
    fn normalizes_keys() {
        assert_eq!(
            normalize_key("https://Reg.Example:5000/v2/"),
            "reg.example:5000"
        );
        assert_eq!(normalize_key("docker.io"), "index.docker.io");
        assert_eq!(normalize_key("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
