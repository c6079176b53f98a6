//! Step ids (`layer:minideb:bookworm/arm64v8`, `push:minideb:bookworm@hub`) and the
//! roles upstream steps play in a key (`layer`, `manifest:arm64v8`): parsed and
//! printed here and nowhere else.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::StepKind;
use crate::manifest::{Arch, Selector};

/// Which step: its kind and what it works on. `kind:image:dist[/arch][@registry]`.
///
/// The rendered text is kept beside the parts, so an id is used as a map key and
/// a file name as cheaply as a string, and reads as one (`Deref<Target = str>`).
/// Equality, order and hash are the text's (the parts follow from it), as
/// `Borrow<str>` requires: a map keyed by ids is looked up by `&str`.
#[derive(Debug, Clone)]
pub struct StepId {
    text: String,
    /// What the step does.
    pub kind: StepKind,
    /// The image.
    pub image: String,
    /// The dist.
    pub dist: String,
    /// For platform steps (rootfs, layer, config, manifest).
    pub arch: Option<&'static Arch>,
    /// For tag and push steps of a registry.
    pub registry: Option<String>,
}

/// A step id that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad step id {text:?}: {problem}; ids look like layer:IMAGE:DIST/ARCH, index:IMAGE:DIST or push:IMAGE:DIST@REGISTRY")]
pub struct StepIdError {
    /// What was given.
    pub text: String,
    /// What is wrong.
    pub problem: String,
}

impl StepId {
    /// A step of one platform.
    pub fn platform(kind: StepKind, image: &str, dist: &str, arch: &'static Arch) -> StepId {
        StepId::new(kind, image, dist, Some(arch), None)
    }

    /// A step of one dist (index), or of one dist and registry (tag, push).
    pub fn dist(kind: StepKind, image: &str, dist: &str, registry: Option<&str>) -> StepId {
        StepId::new(kind, image, dist, None, registry)
    }

    fn new(
        kind: StepKind,
        image: &str,
        dist: &str,
        arch: Option<&'static Arch>,
        registry: Option<&str>,
    ) -> StepId {
        let mut text = format!("{kind}:{image}:{dist}");
        if let Some(a) = arch {
            text.push('/');
            text.push_str(a.name);
        }
        if let Some(r) = registry {
            text.push('@');
            text.push_str(r);
        }
        StepId {
            text,
            kind,
            image: image.to_string(),
            dist: dist.to_string(),
            arch,
            registry: registry.map(str::to_string),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for StepId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for StepId {}

impl std::hash::Hash for StepId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for StepId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StepId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl Deref for StepId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl Borrow<str> for StepId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for StepId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl FromStr for StepId {
    type Err = StepIdError;

    fn from_str(text: &str) -> Result<StepId, StepIdError> {
        let bad = |problem: String| StepIdError {
            text: text.to_string(),
            problem,
        };
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| bad("no `:` after the kind".into()))?;
        let kind = StepKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| {
                let kinds: Vec<_> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
                bad(format!(
                    "unknown kind {kind:?} (one of {})",
                    kinds.join(", ")
                ))
            })?;
        let (target, registry) = match rest.rsplit_once('@') {
            Some((t, r)) if !r.is_empty() => (t, Some(r)),
            Some(_) => return Err(bad("empty registry after `@`".into())),
            None => (rest, None),
        };
        let sel = Selector::parse(target).map_err(|e| bad(e.message))?;
        let Some(dist) = sel.dist else {
            return Err(bad("no dist".into()));
        };
        let arch = match &sel.arch {
            None => None,
            Some(a) => Some(Arch::by_name(a).ok_or_else(|| bad(format!("unknown arch {a:?}")))?),
        };
        match (kind.is_platform(), arch, registry) {
            (true, None, _) => Err(bad(format!("a {kind} step names an arch"))),
            (false, Some(_), _) => Err(bad(format!("a {kind} step names no arch"))),
            (true, _, Some(_)) => Err(bad(format!("a {kind} step names no registry"))),
            (_, arch, registry) => Ok(StepId::new(kind, &sel.image, &dist, arch, registry)),
        }
    }
}

/// The part an upstream step plays in a dependent's key: its kind, and its arch
/// when a dist-level step (an index) reads one step per platform. Stored in key
/// records as text (`layer`, `manifest:arm64v8`), so a miss can name the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// The upstream step's kind.
    pub kind: StepKind,
    /// Its arch, when the dependent has none.
    pub arch: Option<&'static Arch>,
}

impl Role {
    /// The role `up` plays for `step`.
    pub fn of(up: &StepId, step: &StepId) -> Role {
        Role {
            kind: up.kind,
            arch: match (up.arch, step.arch) {
                (Some(a), None) => Some(a),
                _ => None,
            },
        }
    }

    /// The upstream step this role names, seen from `step`.
    pub fn step_of(&self, step: &StepId) -> StepId {
        match (self.arch.or(step.arch), self.kind.is_platform()) {
            (Some(arch), true) => StepId::platform(self.kind, &step.image, &step.dist, arch),
            _ => StepId::dist(self.kind, &step.image, &step.dist, None),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arch {
            Some(a) => write!(f, "{}:{}", self.kind, a.name),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl FromStr for Role {
    type Err = StepIdError;

    fn from_str(text: &str) -> Result<Role, StepIdError> {
        let bad = |problem: &str| StepIdError {
            text: text.to_string(),
            problem: problem.to_string(),
        };
        let (kind, arch) = match text.split_once(':') {
            Some((k, a)) => (
                k,
                Some(Arch::by_name(a).ok_or_else(|| bad("unknown arch"))?),
            ),
            None => (text, None),
        };
        let kind = StepKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| bad("unknown kind"))?;
        Ok(Role { kind, arch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str) -> &'static Arch {
        Arch::by_name(name).unwrap()
    }

    #[test]
    fn ids_print_and_parse_back() {
        for id in [
            StepId::platform(StepKind::Layer, "minideb", "bookworm", arch("arm64v8")),
            StepId::platform(StepKind::Rootfs, "team/base", "one", arch("amd64")),
            StepId::dist(StepKind::Index, "hello", "one", None),
            StepId::dist(StepKind::Push, "a/b/c", "1.0", Some("hub")),
            StepId::dist(StepKind::Tag, "hello", "one", None),
        ] {
            let parsed: StepId = id.as_str().parse().unwrap();
            assert_eq!(parsed, id);
            assert_eq!(parsed.to_string(), id.as_str());
        }
        assert_eq!(
            StepId::dist(StepKind::Push, "a", "b", Some("hub")).as_str(),
            "push:a:b@hub"
        );
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        for (text, needle) in [
            ("layr:a:b/amd64", "unknown kind"),
            ("layer:a:b", "names an arch"),
            ("index:a:b/amd64", "names no arch"),
            ("layer:a:b/amd46", "unknown arch"),
            ("layer:a:b/amd64@hub", "names no registry"),
            ("push:a:b@", "empty registry"),
            ("index:a", "no dist"),
            ("index", "no `:`"),
        ] {
            let e = text.parse::<StepId>().unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn roles_name_their_upstream_step() {
        let manifest = StepId::platform(StepKind::Manifest, "h", "one", arch("s390x"));
        let index = StepId::dist(StepKind::Index, "h", "one", None);
        let role = Role::of(&manifest, &index);
        assert_eq!(role.to_string(), "manifest:s390x");
        assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        assert_eq!(role.step_of(&index), manifest);
        let layer = StepId::platform(StepKind::Layer, "h", "one", arch("s390x"));
        let role = Role::of(&layer, &manifest);
        assert_eq!(role.to_string(), "layer");
        assert_eq!(role.step_of(&manifest), layer);
        let tag = StepId::dist(StepKind::Tag, "h", "one", Some("r"));
        let index_role = Role {
            kind: StepKind::Index,
            arch: None,
        };
        assert_eq!(index_role.step_of(&tag), index);
    }
}
