//! Maintainer scripts, read instead of guessed: each package's `preinst` and
//! `postinst` are parsed with a real shell parser ([`parse`]), walked as dpkg runs
//! them on a first install ([`eval`]), and every command reached is classified
//! ([`classify`]) as an effect the installer reproduces, a no-op on a first
//! install, or **not reproduced**. The last kind is the report: per package,
//! script and line, shown by `build`, `explain` and `--json`, and fatal with
//! `debian = { scripts = "strict" }`. Packages whose `triggers` file declares an
//! interest that another package (or a shipped file) activates have their
//! postinst walked again as `postinst triggered NAME`, as dpkg runs it.
//!
//! Each `.deb`'s findings are cached by its sha256 in `cache/scripts/`, with
//! every question the walk asked about the package set (does `/usr/bin/x`
//! exist, is `_apt` a base-passwd user) and its answer: a later build reuses them
//! when the answers are the same, so a script is parsed once per `.deb`.

mod classify;
mod eval;
mod parse;
mod world;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::debian::deb::Deb;
use classify::Class;
use eval::{FileTest, Reached};
use world::PackageSet;

/// Bumped when the walk or the classes change, so cached findings are redone
/// (and rootfs steps rerun: it is part of their key).
pub const FORMAT: u32 = 1;

/// One command a maintainer script runs on a first install whose effect the
/// image does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReproduced {
    /// The package.
    pub package: String,
    /// `preinst`, `postinst`, or `postinst triggered NAME`.
    pub script: String,
    /// 1-based line in the script.
    pub line: usize,
    /// The command, its words expanded as far as they are known (`?` where not).
    pub command: String,
    /// The debhelper tool whose `# Automatically added by` block holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debhelper: Option<String>,
}

impl std::fmt::Display for NotReproduced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A long `update-alternatives --install` with its slaves: the start
        // says what it is (the whole command is in --json).
        let command = match self.command.char_indices().nth(160) {
            Some((at, _)) => format!("{} ...", &self.command[..at]),
            None => self.command.clone(),
        };
        write!(
            f,
            "{} {} line {}: {command}",
            self.package, self.script, self.line
        )?;
        if let Some(dh) = &self.debhelper {
            write!(f, " (from {dh})")?;
        }
        Ok(())
    }
}

/// `scripts = "strict"` and some maintainer-script commands are not reproduced.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} maintainer-script command{} not reproduced (debian scripts = \"strict\"):{}\n  = help: the image would lack their effect; remove the package from `include`, or set scripts = \"report\" to build it and list them", found.len(), if found.len() == 1 { " is" } else { "s are" }, found.iter().map(|f| format!("\n  {f}")).collect::<String>())]
pub struct StrictError {
    /// Every command not reproduced.
    pub found: Vec<NotReproduced>,
}

/// A question the walk asked about the package set, and what it was told.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Probe {
    File(FileTest, String),
    Account(bool, String),
    /// A sourced file's text (its blake3, `-` when absent).
    Content(String, String),
    /// A folder's names, joined by `/`, for a glob.
    List(String, String),
}

/// A `.deb`'s cached findings.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    format: u32,
    probes: Vec<(Probe, bool)>,
    found: Vec<NotReproduced>,
}

/// Answers the walk's questions from the package set, noting each one.
struct Recorder<'a> {
    set: &'a PackageSet<'a>,
    asked: RefCell<BTreeMap<Probe, bool>>,
}

impl Recorder<'_> {
    fn ask(&self, probe: Probe) -> bool {
        let answer = self.set.answer(&probe);
        self.asked.borrow_mut().insert(probe, answer);
        answer
    }
}

impl eval::World for Recorder<'_> {
    fn test_file(&self, test: FileTest, path: &str) -> bool {
        self.ask(Probe::File(test, path.to_string()))
    }
    fn read(&self, path: &str) -> Option<String> {
        let text = self.set.read(path);
        let probe = Probe::Content(path.to_string(), world::content_hash(text.as_deref()));
        self.asked.borrow_mut().insert(probe, true);
        text
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let names = self.set.list(dir);
        let probe = Probe::List(dir.to_string(), names.join("/"));
        self.asked.borrow_mut().insert(probe, true);
        names
    }
}

impl classify::Facts for Recorder<'_> {
    fn file(&self, test: FileTest, path: &str) -> bool {
        self.ask(Probe::File(test, path.to_string()))
    }
    fn account(&self, group: bool, name: &str) -> bool {
        self.ask(Probe::Account(group, name.to_string()))
    }
}

/// Collects the commands one script reaches that are not reproduced.
struct Collect<'a> {
    package: &'a str,
    script: &'a str,
    blocks: Vec<Option<String>>,
    facts: &'a Recorder<'a>,
    found: Vec<NotReproduced>,
}

impl eval::Sink for Collect<'_> {
    fn command(&mut self, reached: Reached) {
        if classify::classify(self.package, &reached, self.facts) == Class::NotReproduced {
            // `ldconfig || ldconfig --verbose`: one effect, named once.
            let name = reached.words[0].as_deref();
            if self
                .found
                .iter()
                .any(|f| f.line == reached.line && f.command.split(' ').next() == name)
            {
                return;
            }
            self.found.push(NotReproduced {
                package: self.package.to_string(),
                script: self.script.to_string(),
                line: reached.line,
                command: reached.text(),
                debhelper: self.blocks.get(reached.line).cloned().flatten(),
            });
        }
    }
}

/// Walks `text` as `script` of `package` run with `args`.
fn walk(
    package: &str,
    script: &str,
    text: &str,
    args: &[&str],
    facts: &Recorder<'_>,
) -> Vec<NotReproduced> {
    let program = match parse::parse(text) {
        Ok(p) => p,
        Err(parse::SyntaxError(e)) => {
            return vec![NotReproduced {
                package: package.to_string(),
                script: script.to_string(),
                line: 1,
                command: format!("(the script does not parse as shell: {e})"),
                debhelper: None,
            }]
        }
    };
    let mut sink = Collect {
        package,
        script,
        blocks: parse::debhelper_blocks(text),
        facts,
        found: Vec::new(),
    };
    eval::run(&program, args, facts, &mut sink);
    sink.found
}

/// A control member's text.
fn member<'a>(deb: &'a Deb, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    deb.extra_members()
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, b)| String::from_utf8_lossy(b))
}

fn package_name(deb: &Deb) -> &str {
    deb.control().get("Package").unwrap_or("")
}

/// The first-install findings of one `.deb` (`preinst install`, `postinst
/// configure`), from `cache_dir` when the cached answers still hold.
fn first_install(
    deb: &Deb,
    sha256: &str,
    set: &PackageSet<'_>,
    cache_dir: Option<&Path>,
) -> Vec<NotReproduced> {
    let cached_path = cache_dir.map(|d| d.join(format!("{}.json", sha256.to_ascii_lowercase())));
    if let Some(cached) = cached_path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
    {
        if cached.format == FORMAT && cached.probes.iter().all(|(p, a)| set.answer(p) == *a) {
            return cached.found;
        }
    }
    let facts = Recorder {
        set,
        asked: RefCell::new(BTreeMap::new()),
    };
    let package = package_name(deb);
    let mut found = Vec::new();
    for (script, arg) in [("preinst", "install"), ("postinst", "configure")] {
        if let Some(text) = member(deb, script) {
            found.extend(walk(package, script, &text, &[script, arg], &facts));
        }
    }
    if let Some(path) = cached_path {
        let cached = Cached {
            format: FORMAT,
            probes: facts.asked.into_inner().into_iter().collect(),
            found: found.clone(),
        };
        // A cache write that fails only costs a parse next time.
        if let Ok(bytes) = serde_json::to_vec(&cached) {
            let _ = std::fs::create_dir_all(crate::atomic_file::parent_dir(&path));
            let _ = crate::atomic_file::write_file(&path, &bytes);
        }
    }
    found
}

/// Every command the maintainer scripts of `debs` (each with its locked sha256)
/// run on a first install that the installer does not reproduce, in the lock's
/// order. `cache_dir` keeps each `.deb`'s findings (None: not kept).
pub fn report(debs: &[(&Deb, &str)], cache_dir: Option<&Path>) -> Vec<NotReproduced> {
    let all: Vec<&Deb> = debs.iter().map(|(d, _)| *d).collect();
    let set = PackageSet::new(&all);
    let mut found = Vec::new();
    for (deb, sha256) in debs {
        found.extend(first_install(deb, sha256, &set, cache_dir));
    }
    // Triggers: an interested package's postinst runs as `triggered NAME`.
    for (deb, _) in debs {
        let Some(triggers) = member(deb, "triggers") else {
            continue;
        };
        let Some(postinst) = member(deb, "postinst") else {
            continue;
        };
        let names: Vec<String> = triggers
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let directive = w.next()?;
                let name = w.next()?;
                (directive.starts_with("interest") && set.trigger_activated(name))
                    .then(|| name.to_string())
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        let facts = Recorder {
            set: &set,
            asked: RefCell::new(BTreeMap::new()),
        };
        let script = format!("postinst triggered {}", names.join(" "));
        let arg = names.join(" ");
        let package = package_name(deb);
        // What the configure run already reported is not said twice.
        let again = walk(
            package,
            &script,
            &postinst,
            &["postinst", "triggered", &arg],
            &facts,
        );
        let new: Vec<_> = again
            .into_iter()
            .filter(|t| {
                !found
                    .iter()
                    .any(|f| f.package == t.package && f.line == t.line && f.command == t.command)
            })
            .collect();
        found.extend(new);
    }
    found
}

#[cfg(test)]
mod tests;
