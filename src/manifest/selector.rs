//! `IMAGE[:DIST[/ARCH]]`: which part of the manifest a command works on.

use std::fmt;

use super::diagnostic::did_you_mean;
use super::model::{DistSpec, Manifest, PlatformSpec};

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Image name.
    pub image: String,
    /// Dist, if given.
    pub dist: Option<String>,
    /// Arch, if given.
    pub arch: Option<String>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.image)?;
        if let Some(d) = &self.dist {
            write!(f, ":{d}")?;
        }
        if let Some(a) = &self.arch {
            write!(f, "/{a}")?;
        }
        Ok(())
    }
}

/// A selector that does not parse or matches nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// What is wrong, with a hint.
    pub message: String,
}

impl Selector {
    /// Parses `IMAGE[:DIST[/ARCH]]`.
    ///
    /// An image name may be a repository path (`team/base`), so it ends at the first
    /// `:`; the arch follows the `/` after the dist: `team/base:one/amd64`.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let bad = || {
            SelectorError {
            message: format!("bad selector {s:?}: write IMAGE, IMAGE:DIST or IMAGE:DIST/ARCH (e.g. minideb:bookworm/arm64v8 or team/base:one/amd64)"),
        }
        };
        let (image, rest) = match s.split_once(':') {
            Some((i, r)) => (i, Some(r)),
            None => (s, None),
        };
        let (dist, arch) = match rest {
            None => (None, None),
            Some(r) => match r.split_once('/') {
                Some((d, a)) => (Some(d), Some(a)),
                None => (Some(r), None),
            },
        };
        let word = |x: &str| !x.is_empty() && !x.contains([':', '/']);
        let image_ok = image.split('/').all(word);
        if !image_ok || dist.is_some_and(|d| !word(d)) || arch.is_some_and(|a| !word(a)) {
            return Err(bad());
        }
        Ok(Selector {
            image: image.into(),
            dist: dist.map(Into::into),
            arch: arch.map(Into::into),
        })
    }

    /// Whether a platform is selected.
    pub fn matches_platform(&self, p: &PlatformSpec) -> bool {
        self.image == p.image
            && self.dist.as_ref().is_none_or(|d| *d == p.dist)
            && self.arch.as_ref().is_none_or(|a| a == p.arch.name)
    }

    /// Whether a dist (index) is selected; an arch selector selects no index.
    pub fn matches_dist(&self, d: &DistSpec) -> bool {
        self.image == d.image
            && self.dist.as_ref().is_none_or(|x| *x == d.dist)
            && self.arch.is_none()
    }

    /// Errors when the selector names nothing in the manifest, with a suggestion.
    pub fn check(&self, m: &Manifest) -> Result<(), SelectorError> {
        let images: Vec<&str> = m.dists.iter().map(|d| d.image.as_str()).collect();
        if !images.contains(&self.image.as_str()) {
            let hint = did_you_mean(&self.image, images.iter().copied()).map_or_else(
                || format!("images in the manifest: {}", dedup(&images).join(", ")),
                |b| format!("did you mean {b:?}?"),
            );
            return Err(SelectorError {
                message: format!("selector {self}: no image {:?}; {hint}", self.image),
            });
        }
        if let Some(dist) = &self.dist {
            let dists: Vec<&str> = m
                .dists
                .iter()
                .filter(|d| d.image == self.image)
                .map(|d| d.dist.as_str())
                .collect();
            if !dists.contains(&dist.as_str()) {
                return Err(SelectorError {
                    message: format!(
                        "selector {self}: image {:?} has no dist {dist:?}; its dists: {}",
                        self.image,
                        dists.join(", ")
                    ),
                });
            }
        }
        if self.arch.is_some() && !m.platforms.iter().any(|p| self.matches_platform(p)) {
            let arches: Vec<&str> = m
                .platforms
                .iter()
                .filter(|p| p.image == self.image && Some(&p.dist) == self.dist.as_ref())
                .map(|p| p.arch.name)
                .collect();
            let arch = self.arch.as_deref().unwrap_or("");
            let hint = match super::Arch::suggest(arch, &arches) {
                Some(best) => format!(
                    "; did you mean {}?",
                    Selector {
                        arch: Some(best.to_string()),
                        ..self.clone()
                    }
                ),
                None => String::new(),
            };
            return Err(SelectorError {
                message: format!(
                    "selector {self}: no such arch; this dist's arches: {}{hint}",
                    arches.join(", ")
                ),
            });
        }
        Ok(())
    }
}

fn dedup<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = v.to_vec();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(Selector::parse("minideb").unwrap().dist, None);
        let s = Selector::parse("minideb:bookworm/arm64v8").unwrap();
        assert_eq!(
            (s.dist.as_deref(), s.arch.as_deref()),
            (Some("bookworm"), Some("arm64v8"))
        );
        assert!(Selector::parse("a::b").is_err());
        assert!(Selector::parse(":x").is_err());
        assert!(Selector::parse("a:b/").is_err());
    }

    #[test]
    fn an_image_may_be_a_repository_path() {
        let s = Selector::parse("a/b").unwrap();
        assert_eq!((s.image.as_str(), s.dist, s.arch), ("a/b", None, None));
        let s = Selector::parse("a/b:one").unwrap();
        assert_eq!((s.image.as_str(), s.dist.as_deref()), ("a/b", Some("one")));
        let s = Selector::parse("team/a/b:one/amd64").unwrap();
        assert_eq!(
            (s.image.as_str(), s.dist.as_deref(), s.arch.as_deref()),
            ("team/a/b", Some("one"), Some("amd64"))
        );
        assert_eq!(s.to_string(), "team/a/b:one/amd64");
        for bad in ["a//b", "/a", "a/", "a/b:one/amd64/x", "a/b:"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
