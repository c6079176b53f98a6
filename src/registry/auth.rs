//! Registry authentication as docker does it: anonymous first; on a 401 the
//! `WWW-Authenticate` challenge says what to do next. `Basic` -> HTTP basic
//! credentials. `Bearer realm,service,scope` -> a token from the realm (with
//! basic credentials, or the identity token as an OAuth2 refresh token),
//! cached per scope set until shortly before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::docker_config::{Credential, CredentialError, CredentialSource};
use super::Secret;

/// Getting a token failed for a reason other than wrong credentials
/// (those are [`RegistryError::Unauthorized`](super::RegistryError::Unauthorized)).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("registry {host} sent a WWW-Authenticate challenge imgraph does not understand: `{challenge}`")]
    Challenge { host: String, challenge: String },
    #[error("token service {realm} for registry {host} is unreachable: {source}")]
    TokenTransport {
        host: String,
        realm: String,
        source: Box<ureq::Error>,
    },
    #[error("token service {realm} for registry {host} answered {status}")]
    TokenStatus {
        host: String,
        realm: String,
        status: u16,
    },
    #[error(
        "token service {realm} for registry {host} answered without a `token` or `access_token`"
    )]
    TokenBody { host: String, realm: String },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// What failed while authenticating a request.
#[derive(Debug)]
pub(crate) enum AuthFailure {
    /// Credentials missing or refused: the caller reports `Unauthorized { host }`.
    Unauthorized,
    Other(AuthError),
}

impl From<AuthError> for AuthFailure {
    fn from(e: AuthError) -> Self {
        AuthFailure::Other(e)
    }
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: Option<String>,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header (RFC 7235: `scheme k=v, k="v, quoted"`,
/// possibly several challenges). Bearer wins over Basic.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut found: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // scheme
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let scheme = rest[..end].to_ascii_lowercase();
        rest = rest[end..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        let mut params = HashMap::new();
        // params: key=value pairs until something that is not key=
        while let Some(eq) = rest.find('=') {
            let key = &rest[..eq];
            if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
                break;
            }
            let key = key.to_ascii_lowercase();
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &q[end.min(q.len())..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.insert(key, value);
            rest = remaining.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        }
        if !scheme.is_empty() {
            found.push((scheme, params));
        }
    }
    let bearer = found
        .iter()
        .find(|(s, p)| s == "bearer" && p.contains_key("realm"));
    if let Some((_, p)) = bearer {
        return Some(Challenge::Bearer {
            realm: p["realm"].clone(),
            service: p.get("service").cloned(),
            scope: p.get("scope").cloned(),
        });
    }
    found
        .iter()
        .find(|(s, _)| s == "basic")
        .map(|(_, p)| Challenge::Basic {
            realm: p.get("realm").cloned(),
        })
}

/// `Basic base64(user:password)`.
pub(crate) fn basic_header(username: &str, password: &Secret) -> Secret {
    let raw = format!("{username}:{}", password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

/// Bearer tokens per scope set, dropped a little before they expire.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
}

impl TokenCache {
    const MARGIN: Duration = Duration::from_secs(10);

    pub(crate) fn get(&self, key: &str) -> Option<Secret> {
        let map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .filter(|(_, exp)| *exp > Instant::now() + Self::MARGIN)
            .map(|(t, _)| t.clone())
    }

    pub(crate) fn put(&self, key: String, token: Secret, lifetime: Duration) {
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(key, (token, Instant::now() + lifetime));
    }

    pub(crate) fn remove(&self, key: &str) {
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(key);
    }
}

/// Per-registry authentication state, shared by all requests of a client.
pub(crate) struct Authenticator {
    host: String,
    source: CredentialSource,
    credential: Mutex<Option<Option<Credential>>>,
    challenge: Mutex<Option<Challenge>>,
    tokens: TokenCache,
}

#[derive(serde::Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    access_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s.join(" ")
}

impl Authenticator {
    pub(crate) fn new(host: String, source: CredentialSource) -> Self {
        Authenticator {
            host,
            source,
            credential: Mutex::new(None),
            challenge: Mutex::new(None),
            tokens: TokenCache::default(),
        }
    }

    /// The configured credential for this host, looked up once.
    fn credential(&self) -> Result<Option<Credential>, AuthFailure> {
        let mut slot = self
            .credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let c = self.source.lookup(&self.host).map_err(AuthError::from)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Whether a credential is configured for this host (an unreadable config
    /// counts as none: that error has been reported on the way here).
    pub(crate) fn has_credential(&self) -> bool {
        matches!(self.credential(), Ok(Some(_)))
    }

    /// The config file credentials are looked up in, for messages.
    pub(crate) fn config_location(&self) -> String {
        self.source.location()
    }

    /// The `Authorization` value for a request needing `scopes`, once a
    /// challenge is known; `None` before (the first request is anonymous).
    pub(crate) fn authorization(
        &self,
        agent: &ureq::Agent,
        scopes: &[String],
    ) -> Result<Option<Secret>, AuthFailure> {
        let challenge = self
            .challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => match self.credential()? {
                Some(Credential::Basic { username, password }) => {
                    Ok(Some(basic_header(&username, &password)))
                }
                _ => Ok(None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scope_key(scopes);
                if let Some(t) = self.tokens.get(&key) {
                    return Ok(Some(Secret::new(format!("Bearer {}", t.expose()))));
                }
                let (token, lifetime) =
                    self.fetch_token(agent, &realm, service.as_deref(), scopes)?;
                self.tokens.put(key, token.clone(), lifetime);
                Ok(Some(Secret::new(format!("Bearer {}", token.expose()))))
            }
        }
    }

    /// A request got a 401 with this `WWW-Authenticate`. Decide whether one
    /// more try can succeed: `Ok` = retry with [`Self::authorization`].
    pub(crate) fn on_unauthorized(
        &self,
        header: Option<&str>,
        scopes: &[String],
        sent_auth: bool,
    ) -> Result<(), AuthFailure> {
        let Some(header) = header else {
            return Err(AuthFailure::Unauthorized);
        };
        let challenge = parse_challenge(header).ok_or_else(|| {
            AuthFailure::Other(AuthError::Challenge {
                host: self.host.clone(),
                challenge: header.chars().take(200).collect(),
            })
        })?;
        match &challenge {
            Challenge::Basic { .. } => {
                if sent_auth || !matches!(self.credential()?, Some(Credential::Basic { .. })) {
                    return Err(AuthFailure::Unauthorized);
                }
            }
            Challenge::Bearer { .. } => self.tokens.remove(&scope_key(scopes)),
        }
        *self
            .challenge
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(challenge);
        Ok(())
    }

    fn fetch_token(
        &self,
        agent: &ureq::Agent,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(Secret, Duration), AuthFailure> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(AuthError::Challenge {
                host: self.host.clone(),
                challenge: format!("realm={realm}"),
            }
            .into());
        }
        let transport = |source: ureq::Error| AuthError::TokenTransport {
            host: self.host.clone(),
            realm: realm.to_owned(),
            source: Box::new(source),
        };
        let credential = self.credential()?;
        let response = match &credential {
            Some(Credential::IdentityToken { token, .. }) => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose()),
                    ("client_id", "imgraph"),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let scope = scopes.join(" ");
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
                agent.post(realm).send_form(form).map_err(transport)?
            }
            other => {
                let mut req = agent.get(realm);
                if let Some(s) = service {
                    req = req.query("service", s);
                }
                for s in scopes {
                    req = req.query("scope", s);
                }
                if let Some(Credential::Basic { username, password }) = other {
                    req = req.query("account", username);
                    let mut value = ureq::http::HeaderValue::from_str(
                        basic_header(username, password).expose(),
                    )
                    .map_err(|_| AuthFailure::Unauthorized)?;
                    value.set_sensitive(true);
                    req = req.header("Authorization", value);
                }
                req.call().map_err(transport)?
            }
        };
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(AuthFailure::Unauthorized);
        }
        if status != 200 {
            return Err(AuthError::TokenStatus {
                host: self.host.clone(),
                realm: realm.to_owned(),
                status,
            }
            .into());
        }
        let body_err = || AuthError::TokenBody {
            host: self.host.clone(),
            realm: realm.to_owned(),
        };
        let bytes = response
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|_| body_err())?;
        let reply: TokenReply = serde_json::from_slice(&bytes).map_err(|_| body_err())?;
        let token = reply
            .token
            .filter(|t| !t.is_empty())
            .or(reply.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(body_err)?;
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(60).max(60));
        Ok((token, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn parses_basic_and_prefers_bearer() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: Some("Registry Realm".into())
            })
        );
        let c = parse_challenge(r#"Basic realm="x", Bearer realm="https://t/\"q\"", service=svc"#);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://t/\"q\"".into(),
                service: Some("svc".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn basic_header_is_redacted() {
        let h = basic_header("u", &Secret::new("p"));
        assert_eq!(h.expose(), "Basic dTpw");
        assert_eq!(format!("{h:?}"), "<redacted>");
    }

    #[test]
    fn token_cache_expires() {
        let c = TokenCache::default();
        c.put("a".into(), Secret::new("t"), Duration::from_secs(5));
        assert!(c.get("a").is_none(), "inside the safety margin");
        c.put("a".into(), Secret::new("t"), Duration::from_secs(300));
        assert_eq!(c.get("a").unwrap().expose(), "t");
        c.remove("a");
        assert!(c.get("a").is_none());
    }
}
