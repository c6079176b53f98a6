//! `imgraph library IMAGE`: the docker-library manifest file (RFC 2822, as the
//! `generate-stackbrew-library.sh` scripts write it) for an image whose per-arch
//! layouts are committed to git, for `Builder: oci-import`.
//!
//! Everything but the maintainers comes from git: `<arch>-GitCommit` is the last
//! commit that changed that arch's layout folder, so a change to one arch moves
//! one line, and docker-library rebuilds that arch alone.

use std::path::{Path, PathBuf};

use crate::manifest::Manifest;

/// Why the file cannot be written (all exit 1: the fix is in the repository).
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// A layout folder does not exist.
    #[error("{} does not exist: run `imgraph build {label}` and commit the layout", path.display())]
    Missing {
        /// The folder.
        path: PathBuf,
        /// `image:dist/arch`.
        label: String,
    },
    /// A layout folder is not inside a git work tree.
    #[error("{} is not in a git repository: docker-library reads the layouts from a commit; commit them to the repository it clones (or point `[settings] library = {{ out = \"...\" }}` at that checkout)", path.display())]
    NotInGit {
        /// The folder.
        path: PathBuf,
    },
    /// A layout folder differs from what is committed.
    #[error("{} has uncommitted changes ({line}): commit the folder first, its last commit is what the file names", path.display())]
    Uncommitted {
        /// The folder.
        path: PathBuf,
        /// The first `git status --porcelain` line.
        line: String,
    },
    /// No commit holds a layout folder.
    #[error("{} was never committed (is it in .gitignore? then `git add -f` it): commit the folder first", path.display())]
    NeverCommitted {
        /// The folder.
        path: PathBuf,
    },
    /// Neither a remote nor the setting says where the repository lives.
    #[error("{} has no `origin` remote to name as GitRepo: add one (`git remote add origin URL`) or set `[settings] library = {{ git_repo = \"https://...\" }}`", top.display())]
    NoGitRepo {
        /// The repository's top level.
        top: PathBuf,
    },
    /// git could not run or failed.
    #[error("git {args} in {}: {message}", dir.display())]
    Git {
        /// Where.
        dir: PathBuf,
        /// What was asked.
        args: String,
        /// Its error.
        message: String,
    },
}

/// The file, and what it lacks (printed as warnings, exit 0).
#[derive(Debug)]
pub struct LibraryFile {
    /// The RFC 2822 text.
    pub text: String,
    /// E.g. no maintainers configured.
    pub warnings: Vec<String>,
}

/// Runs git in `dir`: its stdout, trimmed; `Ok(None)` when git says no (exit
/// status not 0) and `quiet_failure` allows it.
fn git(dir: &Path, args: &[&str], quiet_failure: bool) -> Result<Option<String>, LibraryError> {
    let failed = |message: String| LibraryError::Git {
        dir: dir.to_path_buf(),
        args: args.join(" "),
        message,
    };
    let out = crate::git::output(dir, args).map_err(failed)?;
    if !out.status.success() {
        if quiet_failure {
            return Ok(None);
        }
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// `git@host:path` and `ssh://[user@]host/path` as the `https://` url
/// docker-library clones; credentials in an http(s) url are dropped; other
/// urls as they are.
fn https_url(remote: &str) -> String {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = remote.strip_prefix(scheme) {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            return format!("{scheme}{host}/{path}");
        }
    }
    if let Some(rest) = remote.strip_prefix("ssh://") {
        let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
        return format!("https://{rest}");
    }
    if let Some((user_host, path)) = remote.split_once(':') {
        if let Some((_, host)) = user_host.split_once('@') {
            if !user_host.contains('/') {
                return format!("https://{host}/{path}");
            }
        }
    }
    remote.to_string()
}

/// One arch of one dist: its folder, relative path and last commit.
struct ArchEntry {
    arch: &'static str,
    directory: String,
    commit: String,
}

/// The manifest file for `image` (only `dist` when given).
pub fn library_file(
    manifest: &Manifest,
    image: &str,
    dist: Option<&str>,
) -> Result<LibraryFile, LibraryError> {
    let settings = &manifest.settings.library;
    let root = settings.out.as_ref().unwrap_or(&manifest.settings.out);
    let dists: Vec<_> = manifest
        .dists
        .iter()
        .filter(|d| d.image == image && dist.is_none_or(|x| x == d.dist))
        .collect();
    let mut top: Option<PathBuf> = None;
    let mut paragraphs = Vec::new();
    for d in &dists {
        let mut entries = Vec::new();
        for arch in &d.arches {
            let dir = root.join(&d.image).join(&d.dist).join(arch.name);
            if !dir.join("index.json").is_file() {
                return Err(LibraryError::Missing {
                    path: dir,
                    label: format!("{}:{}/{}", d.image, d.dist, arch.name),
                });
            }
            let repo = match &top {
                Some(t) => t.clone(),
                None => {
                    let t = git(&dir, &["rev-parse", "--show-toplevel"], true)?
                        .ok_or_else(|| LibraryError::NotInGit { path: dir.clone() })?;
                    let t = PathBuf::from(t);
                    top = Some(t.clone());
                    t
                }
            };
            let canonical = dir.canonicalize().map_err(|e| LibraryError::Git {
                dir: dir.clone(),
                args: "rev-parse".into(),
                message: e.to_string(),
            })?;
            let repo_canonical = repo.canonicalize().unwrap_or_else(|_| repo.clone());
            let Ok(rel) = canonical.strip_prefix(&repo_canonical) else {
                return Err(LibraryError::NotInGit { path: dir });
            };
            let rel = rel.to_string_lossy().into_owned();
            let status = git(
                &repo,
                &["status", "--porcelain", "--untracked-files=all", "--", &rel],
                false,
            )?
            .unwrap_or_default();
            if let Some(line) = status.lines().next() {
                return Err(LibraryError::Uncommitted {
                    path: dir,
                    line: line.trim().to_string(),
                });
            }
            let commit = git(&repo, &["log", "-1", "--format=%H", "--", &rel], true)?
                .filter(|c| !c.is_empty())
                .ok_or_else(|| LibraryError::NeverCommitted { path: dir.clone() })?;
            // Ignored and never added: status and log both say nothing.
            if git(
                &repo,
                &["ls-files", "--", &format!("{rel}/index.json")],
                false,
            )?
            .unwrap_or_default()
            .is_empty()
            {
                return Err(LibraryError::NeverCommitted { path: dir });
            }
            entries.push(ArchEntry {
                arch: arch.name,
                directory: rel,
                commit,
            });
        }
        paragraphs.push(paragraph(&d.tags, &entries));
    }
    let mut warnings = Vec::new();
    let mut text = format!("# generated by `imgraph library {image}`\n\n");
    if settings.maintainers.is_empty() {
        warnings.push(
            "no maintainers: the file has no `Maintainers:` field, which docker-library requires; set `[settings] library = { maintainers = [\"Full Name <email> (@github-handle)\"] }`"
                .to_string(),
        );
    } else {
        let indent = " ".repeat("Maintainers: ".len());
        text.push_str("Maintainers: ");
        text.push_str(&settings.maintainers.join(&format!(",\n{indent}")));
        text.push('\n');
    }
    if let Some(repo) = &top {
        let url = match &settings.git_repo {
            Some(url) => url.clone(),
            None => {
                let remote = git(repo, &["remote", "get-url", "origin"], true)?
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| LibraryError::NoGitRepo { top: repo.clone() })?;
                https_url(&remote)
            }
        };
        text.push_str(&format!("GitRepo: {url}\n"));
        // bashbrew fetches refs/heads/master unless told otherwise.
        if let Some(branch) = git(repo, &["symbolic-ref", "-q", "--short", "HEAD"], true)?
            .filter(|b| !b.is_empty() && b != "master")
        {
            text.push_str(&format!("GitFetch: refs/heads/{branch}\n"));
        }
    }
    for p in paragraphs {
        text.push('\n');
        text.push_str(&p);
    }
    Ok(LibraryFile { text, warnings })
}

/// One dist's paragraph.
fn paragraph(tags: &[String], entries: &[ArchEntry]) -> String {
    let arches: Vec<&str> = entries.iter().map(|e| e.arch).collect();
    let mut p = format!(
        "Tags: {}\nArchitectures: {}\n",
        tags.join(", "),
        arches.join(", ")
    );
    for e in entries {
        p.push_str(&format!(
            "{arch}-GitCommit: {commit}\n{arch}-Directory: {dir}\n",
            arch = e.arch,
            commit = e.commit,
            dir = e.directory
        ));
    }
    p.push_str("Builder: oci-import\nFile: index.json\n");
    p
}

#[cfg(test)]
mod tests {
    use super::https_url;

    #[test]
    fn ssh_remotes_become_https_urls() {
        assert_eq!(
            https_url("git@github.com:acme/hello.git"),
            "https://github.com/acme/hello.git"
        );
        assert_eq!(
            https_url("ssh://git@github.com/acme/hello.git"),
            "https://github.com/acme/hello.git"
        );
        assert_eq!(
            https_url("https://github.com/acme/hello.git"),
            "https://github.com/acme/hello.git"
        );
        assert_eq!(https_url("/srv/git/hello"), "/srv/git/hello");
        assert_eq!(
            https_url("https://user:secret@example.com/hello.git"),
            "https://example.com/hello.git"
        );
    }
}
