//! Choosing the package set of a Debian root filesystem the way mmdebstrap (and
//! apt under it) chooses it, from parsed `Packages` indexes, with no network.
//!
//! The universe is one native arch plus `all`. Every name has one candidate:
//! its highest version over all suites (apt with equal pin priorities). Only
//! candidates are installable, so a dependency that the candidate does not
//! satisfy is unsatisfiable, as with apt.
//!
//! The selection follows mmdebstrap's two apt runs: first the `Essential: yes`
//! packages (plus `apt` for the `apt` variant, which mmdebstrap gets from apt
//! treating itself as essential) are closed over their dependencies; then the
//! `Priority: required` packages (for `minbase`) and the `include` names are
//! added and closed over, with the first set already installed. mmdebstrap's
//! `minbase` adds no `apt` of its own: in Debian `apt` is `Priority: required`.
//!
//! Dependencies are `Pre-Depends` and `Depends` (mmdebstrap installs no
//! Recommends). Within a closure, every dependency with a single alternative is
//! followed first; only then is one pending alternative group `a | b` decided:
//! a group already satisfied by the selection keeps that (apt's rule), else the
//! first alternative with an installable candidate is taken; then the single
//! dependencies that choice brings are followed before the next group. So
//! groups are decided with as much of the forced selection known as possible,
//! and the result depends only on the indexes and the request.
//!
//! `exclude` (debootstrap's option; mmdebstrap has none) removes names from the
//! seeds and from the alternatives the resolver may choose; a selected package
//! that needs an excluded one with no other way to satisfy it is an error
//! naming the chain. Names `exclude` lists that the universe lacks are ignored,
//! so one list serves every arch.
//!
//! `Conflicts`/`Breaks` between two selected packages are an error naming both
//! chains, not worked around (apt might try another alternative): a lock must
//! never pin a set dpkg would refuse, and the request is better fixed by hand.
//! With one native arch, `Multi-Arch` matters only for `name:any`, which only a
//! `Multi-Arch: allowed` package satisfies; `Architecture: all` packages satisfy
//! plain names like native ones.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use super::packages::{MultiArch, PackageRecord};
use super::relation::{display_group, Relation};

/// One parsed `Packages` index and the suite it came from.
#[derive(Debug, Clone)]
pub struct Index {
    /// The suite (e.g. `bookworm`, `bookworm-security`), shown in messages.
    pub suite: String,
    /// Its records.
    pub records: Vec<PackageRecord>,
}

/// The installable packages of one platform: a candidate per name, looked up by
/// name and by provided name.
#[derive(Debug, Clone)]
pub struct Universe {
    arch: String,
    label: String,
    /// The indexes as given; candidates point into them, so building a universe
    /// moves no records.
    indexes: Vec<Index>,
    /// (index, record) of each name's candidate.
    candidates: Vec<(usize, usize)>,
    by_name: HashMap<String, usize>,
    /// Provided name -> (candidate, position in its `provides`).
    providers: HashMap<String, Vec<(usize, usize)>>,
}

impl Universe {
    /// Builds the universe of native arch `arch` (a Debian arch name such as
    /// `arm64`) from `indexes`; records of other arches are ignored, `all` is kept.
    /// When a name appears more than once the highest version wins; between equal
    /// versions the earlier record wins.
    pub fn new(arch: &str, indexes: Vec<Index>) -> Universe {
        let total: usize = indexes.iter().map(|i| i.records.len()).sum();
        let mut candidates: Vec<(usize, usize)> = Vec::with_capacity(total);
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(total);
        for (x, index) in indexes.iter().enumerate() {
            for (y, record) in index.records.iter().enumerate() {
                if record.architecture != arch && record.architecture != "all" {
                    continue;
                }
                match by_name.get(&record.name) {
                    Some(&i) => {
                        let (cx, cy) = candidates[i];
                        if record.version > indexes[cx].records[cy].version {
                            candidates[i] = (x, y);
                        }
                    }
                    None => {
                        by_name.insert(record.name.clone(), candidates.len());
                        candidates.push((x, y));
                    }
                }
            }
        }
        let mut providers: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, &(x, y)) in candidates.iter().enumerate() {
            for (j, p) in indexes[x].records[y].provides.iter().enumerate() {
                providers.entry(p.name.clone()).or_default().push((i, j));
            }
        }
        let mut suites: Vec<&str> = Vec::new();
        for index in &indexes {
            if !suites.contains(&index.suite.as_str()) {
                suites.push(&index.suite);
            }
        }
        let label = format!("{}/{arch}", suites.join(","));
        Universe {
            arch: arch.to_string(),
            label,
            indexes,
            candidates,
            by_name,
            providers,
        }
    }

    /// The native arch.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// `suite[,suite...]/arch`, as messages name the universe.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The candidate named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&PackageRecord> {
        self.by_name.get(name).map(|&i| self.record(i))
    }

    /// How many names have a candidate.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// Whether there are no candidates at all.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    fn record(&self, i: usize) -> &PackageRecord {
        let (x, y) = self.candidates[i];
        &self.indexes[x].records[y]
    }

    fn suite(&self, i: usize) -> &str {
        &self.indexes[self.candidates[i].0].suite
    }

    /// Whether candidate `i` meets `rel`'s arch qualifier: `:any` needs
    /// `Multi-Arch: allowed`; `:native` or `:<arch>` need that arch (or `all`).
    fn arch_ok(&self, i: usize, rel: &Relation) -> bool {
        let r = self.record(i);
        match rel.arch.as_deref() {
            None => true,
            Some("any") => r.multi_arch == MultiArch::Allowed,
            Some("native") => true,
            Some(a) => a == r.architecture || (r.architecture == "all" && a == self.arch),
        }
    }

    /// Every candidate satisfying `rel`: the real package first, then providers.
    /// A versioned relation is met by a provider only through a versioned
    /// `Provides` whose version matches.
    fn satisfiers<'a>(&'a self, rel: &'a Relation) -> impl Iterator<Item = usize> + 'a {
        let real = self.by_name.get(&rel.name).copied().filter(|&i| {
            self.arch_ok(i, rel)
                && rel
                    .constraint
                    .as_ref()
                    .is_none_or(|c| c.matches(&self.record(i).version))
        });
        let provided = self
            .providers
            .get(&rel.name)
            .into_iter()
            .flatten()
            .filter(move |&&(i, j)| {
                self.arch_ok(i, rel)
                    && match &rel.constraint {
                        None => true,
                        Some(c) => self.record(i).provides[j]
                            .constraint
                            .as_ref()
                            .is_some_and(|p| c.matches(&p.version)),
                    }
            })
            .map(|&(i, _)| i);
        real.into_iter().chain(provided)
    }

    /// Why nothing installable satisfies `rel`, for messages.
    fn why_not(&self, rel: &Relation) -> String {
        if self.satisfiers(rel).next().is_some() {
            // Something satisfies it, so `choose` found it excluded.
            return "excluded by the request".into();
        }
        if let Some(&i) = self.by_name.get(&rel.name) {
            let r = self.record(i);
            if !self.arch_ok(i, rel) {
                return format!(
                    "{} {} in {} is Multi-Arch: {}, which does not satisfy :{}",
                    r.name,
                    r.version,
                    self.label,
                    r.multi_arch.as_str(),
                    rel.arch.as_deref().unwrap_or("")
                );
            }
            return format!("{} has {} {}", self.label, r.name, r.version);
        }
        if self.providers.contains_key(&rel.name) {
            return format!("no provider in {} has a matching version", self.label);
        }
        format!("not found in {}", self.label)
    }
}

/// What to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Every `Essential: yes` package.
    Essential,
    /// Essential plus `apt`.
    Apt,
    /// Essential plus every `Priority: required` package (mmdebstrap's
    /// `minbase`/`required`, debootstrap's `minbase`).
    Minbase,
}

impl Variant {
    /// Its name in `images.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Essential => "essential",
            Variant::Apt => "apt",
            Variant::Minbase => "minbase",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A variant name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant {0:?}: use \"essential\", \"apt\" or \"minbase\"")]
pub struct UnknownVariant(pub String);

impl FromStr for Variant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "essential" => Ok(Variant::Essential),
            "apt" => Ok(Variant::Apt),
            "minbase" => Ok(Variant::Minbase),
            _ => Err(UnknownVariant(s.to_string())),
        }
    }
}

/// What to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The base set.
    pub variant: Variant,
    /// Extra package names (a virtual name is resolved like a dependency).
    pub include: Vec<String>,
    /// Names never to choose.
    pub exclude: Vec<String>,
}

/// Why a package is in the set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `Essential: yes`.
    Essential,
    /// `Priority: required` (the `minbase` variant).
    Required,
    /// Named by the request: `include`, or `apt` for the `apt` variant.
    Requested,
    /// A dependency of this package (the first selected one that needed it).
    Dependency(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Essential => f.write_str("essential"),
            Reason::Required => f.write_str("priority required"),
            Reason::Requested => f.write_str("requested"),
            Reason::Dependency(of) => write!(f, "dependency of {of}"),
        }
    }
}

/// One chosen package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its record.
    pub record: PackageRecord,
    /// The suite its candidate came from.
    pub suite: String,
    /// Why it was chosen.
    pub reason: Reason,
}

/// The chosen set, sorted by package name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every selected package, by name.
    pub packages: Vec<Selected>,
}

/// Why no set could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A dependency no installable package satisfies. Renders as
    /// `ca-certificates -> openssl (>= 3.0) -> not found in bookworm/arm64`.
    #[error("{}", render_chain(chain, relation, problem))]
    Unsatisfiable {
        /// Package names from what the request chose down to the one whose
        /// dependency fails (empty when a requested name itself fails).
        chain: Vec<String>,
        /// The failing dependency group as written.
        relation: String,
        /// Why nothing satisfies it.
        problem: String,
    },
    /// Two selected packages that must not be installed together.
    #[error(transparent)]
    Conflict(Box<Conflict>),
}

/// `Conflicts`/`Breaks` between two selected packages, with how each was selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{package} {field}: {relation}, but {other} is selected too ({} and {}) in {label}",
    render_path(package_chain),
    render_path(other_chain)
)]
pub struct Conflict {
    /// The package declaring the conflict (`name version`).
    pub package: String,
    /// `Conflicts` or `Breaks`.
    pub field: &'static str,
    /// The relation as written.
    pub relation: String,
    /// The selected package it hits (`name version`).
    pub other: String,
    /// Why `package` was selected, then the names down to it.
    pub package_chain: Vec<String>,
    /// Why `other` was selected, then the names down to it.
    pub other_chain: Vec<String>,
    /// The universe's label.
    pub label: String,
}

fn render_chain(chain: &[String], relation: &str, problem: &str) -> String {
    let mut parts: Vec<&str> = chain.iter().map(String::as_str).collect();
    parts.push(relation);
    parts.push(problem);
    parts.join(" -> ")
}

fn render_path(chain: &[String]) -> String {
    chain.join(" -> ")
}

/// The resolver's working state.
struct Resolver<'u> {
    u: &'u Universe,
    excluded: HashSet<usize>,
    reason: HashMap<usize, (Reason, Option<usize>)>,
    order: Vec<usize>,
}

impl<'u> Resolver<'u> {
    fn selected(&self, i: usize) -> bool {
        self.reason.contains_key(&i)
    }

    fn satisfied(&self, group: &[Relation]) -> bool {
        group
            .iter()
            .any(|rel| self.u.satisfiers(rel).any(|i| self.selected(i)))
    }

    /// The candidate to install for `rel`: the real package if it satisfies,
    /// else the provider with the highest priority, then the first by name.
    fn choose(&self, rel: &Relation) -> Option<usize> {
        let mut options: Vec<usize> = self
            .u
            .satisfiers(rel)
            .filter(|i| !self.excluded.contains(i))
            .collect();
        let real = self.u.by_name.get(&rel.name).copied();
        if let Some(r) = real.filter(|r| options.contains(r)) {
            return Some(r);
        }
        options.sort_by_key(|&i| {
            let r = self.u.record(i);
            (priority_rank(r.priority.as_deref()), r.name.as_str())
        });
        options.first().copied()
    }

    fn chain(&self, mut i: usize) -> Vec<String> {
        let mut out = vec![self.u.record(i).name.clone()];
        while let Some((_, Some(parent))) = self.reason.get(&i) {
            i = *parent;
            out.push(self.u.record(i).name.clone());
        }
        out.reverse();
        out
    }

    fn select(&mut self, i: usize, reason: Reason, parent: Option<usize>, queue: &mut Vec<usize>) {
        if self.selected(i) {
            return;
        }
        self.reason.insert(i, (reason, parent));
        self.order.push(i);
        queue.push(i);
    }

    /// Closes the selection over the dependencies of `queue` (see the module
    /// docs for the order).
    fn close(&mut self, mut queue: Vec<usize>) -> Result<(), ResolveError> {
        let mut pending: Vec<(usize, &'u [Relation])> = Vec::new();
        let mut next = 0;
        loop {
            while next < queue.len() {
                let p = queue[next];
                next += 1;
                let rec = self.u.record(p);
                for group in rec.pre_depends.iter().chain(&rec.depends) {
                    if group.len() > 1 {
                        pending.push((p, group));
                    } else {
                        self.require(p, group, &mut queue)?;
                    }
                }
            }
            pending.retain(|(_, g)| !self.satisfied(g));
            if pending.is_empty() {
                return Ok(());
            }
            let (p, group) = pending.remove(0);
            self.require(p, group, &mut queue)?;
        }
    }

    /// Makes `group` (a dependency of `p`) satisfied, or fails with the chain.
    fn require(
        &mut self,
        p: usize,
        group: &[Relation],
        queue: &mut Vec<usize>,
    ) -> Result<(), ResolveError> {
        if self.satisfied(group) {
            return Ok(());
        }
        match group.iter().find_map(|rel| self.choose(rel)) {
            Some(i) => {
                let of = self.u.record(p).name.clone();
                self.select(i, Reason::Dependency(of), Some(p), queue);
                Ok(())
            }
            None => Err(ResolveError::Unsatisfiable {
                chain: self.chain(p),
                relation: display_group(group),
                problem: self.why_none(group),
            }),
        }
    }

    fn why_none(&self, group: &[Relation]) -> String {
        if let [rel] = group {
            return self.u.why_not(rel);
        }
        group
            .iter()
            .map(|rel| format!("{rel}: {}", self.u.why_not(rel)))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A requested name: chosen like a dependency of the request itself.
    fn request(&mut self, name: &str, queue: &mut Vec<usize>) -> Result<(), ResolveError> {
        let rel = Relation {
            name: name.to_string(),
            arch: None,
            constraint: None,
        };
        if self.u.satisfiers(&rel).any(|i| self.selected(i)) {
            return Ok(());
        }
        match self.choose(&rel) {
            Some(i) => {
                self.select(i, Reason::Requested, None, queue);
                Ok(())
            }
            None => Err(ResolveError::Unsatisfiable {
                chain: Vec::new(),
                relation: name.to_string(),
                problem: self.u.why_not(&rel),
            }),
        }
    }

    /// Fails on the first `Conflicts`/`Breaks` between two selected packages
    /// (a package never conflicts with itself, e.g. through its own Provides).
    fn check_conflicts(&self) -> Result<(), ResolveError> {
        let mut order = self.order.clone();
        order.sort_by(|&a, &b| self.u.record(a).name.cmp(&self.u.record(b).name));
        for &p in &order {
            let rec = self.u.record(p);
            let fields = [("Conflicts", &rec.conflicts), ("Breaks", &rec.breaks)];
            for (field, rels) in fields {
                for rel in rels.iter() {
                    if let Some(o) = self.u.satisfiers(rel).find(|&o| o != p && self.selected(o)) {
                        let other = self.u.record(o);
                        return Err(ResolveError::Conflict(Box::new(Conflict {
                            package: format!("{} {}", rec.name, rec.version),
                            field,
                            relation: rel.to_string(),
                            other: format!("{} {}", other.name, other.version),
                            package_chain: self.chain_with_root(p),
                            other_chain: self.chain_with_root(o),
                            label: self.u.label.clone(),
                        })));
                    }
                }
            }
        }
        Ok(())
    }

    /// The chain to `i`, starting with the reason its root was chosen.
    fn chain_with_root(&self, i: usize) -> Vec<String> {
        let chain = self.chain(i);
        let root = self.u.by_name[&chain[0]];
        let why = match &self.reason[&root].0 {
            Reason::Dependency(_) => unreachable!("a root has no parent"),
            r => r.to_string(),
        };
        std::iter::once(why).chain(chain).collect()
    }
}

/// Lower is more important; unknown and absent last.
fn priority_rank(p: Option<&str>) -> u8 {
    match p {
        Some("required") => 0,
        Some("important") => 1,
        Some("standard") => 2,
        Some("optional") => 3,
        Some("extra") => 4,
        _ => 5,
    }
}

/// Chooses the package set `request` asks for from `universe`.
pub fn resolve(universe: &Universe, request: &Request) -> Result<Resolution, ResolveError> {
    let excluded: HashSet<usize> = request
        .exclude
        .iter()
        .filter_map(|n| universe.by_name.get(n).copied())
        .collect();
    let mut r = Resolver {
        u: universe,
        excluded,
        reason: HashMap::new(),
        order: Vec::new(),
    };
    // Seeds in name order so the result does not depend on index order.
    let seeds = |pred: &dyn Fn(&PackageRecord) -> bool| {
        let mut v: Vec<usize> = (0..universe.candidates.len())
            .filter(|&i| pred(universe.record(i)) && !r.excluded.contains(&i))
            .collect();
        v.sort_by(|&a, &b| universe.record(a).name.cmp(&universe.record(b).name));
        v
    };
    let essential = seeds(&|p| p.essential);
    let required = if request.variant == Variant::Minbase {
        seeds(&|p| !p.essential && p.priority.as_deref() == Some("required"))
    } else {
        Vec::new()
    };

    // First run: the essential set (and apt for the apt variant).
    let mut queue = Vec::new();
    for i in essential {
        r.select(i, Reason::Essential, None, &mut queue);
    }
    if request.variant == Variant::Apt {
        r.request("apt", &mut queue)?;
    }
    r.close(queue)?;

    // Second run: required packages and includes, on top of the first.
    let mut queue = Vec::new();
    for i in required {
        r.select(i, Reason::Required, None, &mut queue);
    }
    for name in &request.include {
        r.request(name, &mut queue)?;
    }
    r.close(queue)?;
    r.check_conflicts()?;

    let mut packages: Vec<Selected> = r
        .order
        .iter()
        .map(|&i| Selected {
            record: universe.record(i).clone(),
            suite: universe.suite(i).to_string(),
            reason: r.reason[&i].0.clone(),
        })
        .collect();
    packages.sort_by(|a, b| a.record.name.cmp(&b.record.name));
    Ok(Resolution { packages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_index;

    /// An index from short paragraphs: `Filename`, `Size` and `SHA256` are added,
    /// `Architecture` defaults to amd64.
    fn index(suite: &str, text: &str) -> Index {
        index_of("amd64", suite, text)
    }

    fn index_of(arch: &str, suite: &str, text: &str) -> Index {
        let full: String = text
            .trim()
            .split("\n\n")
            .map(|p| {
                let p = p.trim();
                let arch = if p.contains("Architecture:") {
                    String::new()
                } else {
                    format!("\nArchitecture: {arch}")
                };
                format!(
                    "{p}{arch}\nFilename: pool/x.deb\nSize: 1\nSHA256: {}\n\n",
                    "ab".repeat(32)
                )
            })
            .collect();
        Index {
            suite: suite.into(),
            records: parse_index(&full).unwrap(),
        }
    }

    fn universe(text: &str) -> Universe {
        Universe::new("amd64", vec![index("bookworm", text)])
    }

    fn request(variant: Variant, include: &[&str], exclude: &[&str]) -> Request {
        Request {
            variant,
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `name version` of every selected package.
    fn set(u: &Universe, req: &Request) -> Vec<String> {
        resolve(u, req)
            .unwrap_or_else(|e| panic!("{e}"))
            .packages
            .iter()
            .map(|s| format!("{} {}", s.record.name, s.record.version))
            .collect()
    }

    fn error(u: &Universe, req: &Request) -> String {
        resolve(u, req).unwrap_err().to_string()
    }

    fn essential(include: &[&str]) -> Request {
        request(Variant::Essential, include, &[])
    }

    #[test]
    fn closes_over_depends_and_pre_depends_with_versions_and_reasons() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nPre-Depends: b\nDepends: c (>= 2)\n\n\
             Package: b\nVersion: 1\nDepends: d\n\n\
             Package: c\nVersion: 2.0\n\n\
             Package: d\nVersion: 1\n\n\
             Package: unrelated\nVersion: 1\nPriority: required",
        );
        let r = resolve(&u, &essential(&[])).unwrap();
        let got: Vec<(String, String)> = r
            .packages
            .iter()
            .map(|s| (s.record.name.clone(), s.reason.to_string()))
            .collect();
        let want = [
            ("a", "essential"),
            ("b", "dependency of a"),
            ("c", "dependency of a"),
            ("d", "dependency of b"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        assert_eq!(r.packages[0].suite, "bookworm");
    }

    #[test]
    fn variants_essential_apt_minbase() {
        let u = universe(
            "Package: e\nVersion: 1\nEssential: yes\n\n\
             Package: apt\nVersion: 2\nPriority: important\n\n\
             Package: r\nVersion: 1\nPriority: required\n\n\
             Package: o\nVersion: 1\nPriority: optional",
        );
        assert_eq!(set(&u, &essential(&[])), ["e 1"]);
        assert_eq!(set(&u, &request(Variant::Apt, &[], &[])), ["apt 2", "e 1"]);
        assert_eq!(
            set(&u, &request(Variant::Minbase, &[], &[])),
            ["e 1", "r 1"]
        );
        assert_eq!(
            set(&u, &request(Variant::Minbase, &["o"], &[])),
            ["e 1", "o 1", "r 1"]
        );
        assert_eq!("minbase".parse::<Variant>(), Ok(Variant::Minbase));
        assert!("buildd"
            .parse::<Variant>()
            .unwrap_err()
            .to_string()
            .contains("\"minbase\""));
    }

    #[test]
    fn alternatives_prefer_the_selected_else_the_first_satisfiable() {
        let u = universe(
            "Package: e1\nVersion: 1\nEssential: yes\nDepends: x | y\n\n\
             Package: e2\nVersion: 1\nEssential: yes\nDepends: y\n\n\
             Package: e3\nVersion: 1\nEssential: yes\nDepends: missing | z (>= 2) | w | v\n\n\
             Package: x\nVersion: 1\n\nPackage: y\nVersion: 1\n\n\
             Package: z\nVersion: 1\n\nPackage: w\nVersion: 1\n\nPackage: v\nVersion: 1",
        );
        // y is forced by e2, so e1's `x | y` keeps it; e3 takes w, the first
        // alternative with an installable candidate.
        assert_eq!(
            set(&u, &essential(&[])),
            ["e1 1", "e2 1", "e3 1", "w 1", "y 1"]
        );
    }

    #[test]
    fn minbase_decides_the_essential_set_before_the_required_one() {
        // mmdebstrap installs the essential set in a first apt run: e's `x | y`
        // is decided then, before the required y exists in the selection.
        let u = universe(
            "Package: e\nVersion: 1\nEssential: yes\nDepends: x | y\n\n\
             Package: x\nVersion: 1\n\n\
             Package: y\nVersion: 1\nPriority: required",
        );
        assert_eq!(
            set(&u, &request(Variant::Minbase, &[], &[])),
            ["e 1", "x 1", "y 1"]
        );
    }

    #[test]
    fn virtual_packages_through_provides() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nDepends: mta, foo\n\n\
             Package: p-optional\nVersion: 1\nPriority: optional\nProvides: mta\n\n\
             Package: p-important\nVersion: 1\nPriority: important\nProvides: mta\n\n\
             Package: foo\nVersion: 1\n\n\
             Package: bar\nVersion: 1\nPriority: required\nProvides: foo",
        );
        // The real foo beats a provider; among providers the higher priority wins.
        assert_eq!(set(&u, &essential(&[])), ["a 1", "foo 1", "p-important 1"]);
        // An include may name a virtual package too.
        assert_eq!(
            set(&u, &request(Variant::Essential, &["mta"], &["a"])),
            ["p-important 1"]
        );
    }

    #[test]
    fn versioned_dependencies_need_versioned_provides() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nDepends: libx (>= 2)\n\n\
             Package: plain\nVersion: 9\nProvides: libx\n\n\
             Package: versioned\nVersion: 1\nProvides: libx (= 2.1)",
        );
        assert_eq!(set(&u, &essential(&[])), ["a 1", "versioned 1"]);
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nDepends: libx (>= 2)\n\n\
             Package: plain\nVersion: 9\nProvides: libx\n\n\
             Package: old\nVersion: 1\nProvides: libx (= 1.5)",
        );
        assert_eq!(
            error(&u, &essential(&[])),
            "a -> libx (>= 2) -> no provider in bookworm/amd64 has a matching version"
        );
    }

    #[test]
    fn multi_arch_any_and_arch_all() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nDepends: perl:any, data\n\n\
             Package: perl\nVersion: 5.36\nMulti-Arch: allowed\n\n\
             Package: data\nVersion: 1\nArchitecture: all\n\n\
             Package: b\nVersion: 1\nDepends: tool:any\n\n\
             Package: tool\nVersion: 1\n\n\
             Package: armonly\nVersion: 1\nArchitecture: arm64",
        );
        assert_eq!(set(&u, &essential(&[])), ["a 1", "data 1", "perl 5.36"]);
        assert_eq!(
            error(&u, &essential(&["b"])),
            "b -> tool:any -> tool 1 in bookworm/amd64 is Multi-Arch: no, which does not satisfy :any"
        );
        // Another arch's records are not part of an amd64 universe.
        assert!(u.get("armonly").is_none());
        assert_eq!(
            error(&u, &essential(&["armonly"])),
            "armonly -> not found in bookworm/amd64"
        );
    }

    #[test]
    fn across_suites_the_highest_version_wins() {
        let base =
            "Package: a\nVersion: 1.0-1\nEssential: yes\n\nPackage: b\nVersion: 2\nEssential: yes";
        let updates = "Package: a\nVersion: 1.0-1+deb12u1\nEssential: yes\n\nPackage: b\nVersion: 1\nEssential: yes";
        for order in [[base, updates], [updates, base]] {
            let suites = if order[0] == base {
                ["bookworm", "bookworm-updates"]
            } else {
                ["bookworm-updates", "bookworm"]
            };
            let u = Universe::new(
                "amd64",
                vec![index(suites[0], order[0]), index(suites[1], order[1])],
            );
            let r = resolve(&u, &essential(&[])).unwrap();
            let got: Vec<String> = r
                .packages
                .iter()
                .map(|s| format!("{} {} {}", s.record.name, s.record.version, s.suite))
                .collect();
            assert_eq!(got, ["a 1.0-1+deb12u1 bookworm-updates", "b 2 bookworm"]);
        }
    }

    #[test]
    fn exclude_drops_seeds_and_alternatives_and_fails_when_needed() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nDepends: b | c\n\n\
             Package: b\nVersion: 1\n\nPackage: c\nVersion: 1\n\n\
             Package: d\nVersion: 1\nEssential: yes\n\n\
             Package: e\nVersion: 1\nDepends: f\n\nPackage: f\nVersion: 1",
        );
        assert_eq!(
            set(
                &u,
                &request(Variant::Essential, &[], &["b", "d", "not-here"])
            ),
            ["a 1", "c 1"]
        );
        assert_eq!(
            error(&u, &request(Variant::Essential, &["e"], &["f"])),
            "e -> f -> excluded by the request"
        );
        assert_eq!(
            error(&u, &request(Variant::Essential, &[], &["b", "c"])),
            "a -> b | c -> b: excluded by the request; c: excluded by the request"
        );
    }

    #[test]
    fn unsatisfiable_names_the_chain() {
        let text = "Package: app\nVersion: 1\nDepends: ca-certificates\n\n\
                    Package: ca-certificates\nVersion: 1\nDepends: openssl (>= 3.0)";
        let arm64 = |t: &str| Universe::new("arm64", vec![index_of("arm64", "bookworm", t)]);
        let u = arm64(text);
        assert_eq!(
            error(&u, &essential(&["ca-certificates"])),
            "ca-certificates -> openssl (>= 3.0) -> not found in bookworm/arm64"
        );
        assert_eq!(
            error(&u, &essential(&["app"])),
            "app -> ca-certificates -> openssl (>= 3.0) -> not found in bookworm/arm64"
        );
        let u = arm64(&format!("{text}\n\nPackage: openssl\nVersion: 1.1.1n-0"));
        assert_eq!(
            error(&u, &essential(&["app"])),
            "app -> ca-certificates -> openssl (>= 3.0) -> bookworm/arm64 has openssl 1.1.1n-0"
        );
        match resolve(&u, &essential(&["app"])).unwrap_err() {
            ResolveError::Unsatisfiable {
                chain, relation, ..
            } => {
                assert_eq!(chain, ["app", "ca-certificates"]);
                assert_eq!(relation, "openssl (>= 3.0)");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn conflicts_and_breaks_among_the_selection_are_errors() {
        let u = universe(
            "Package: a\nVersion: 1\nEssential: yes\nConflicts: b\nBreaks: c (<< 2)\n\n\
             Package: b\nVersion: 1\n\n\
             Package: c\nVersion: 1.5\n\n\
             Package: wrap\nVersion: 1\nDepends: c\n\n\
             Package: mta\nVersion: 1\nProvides: mail-transport-agent\nConflicts: mail-transport-agent",
        );
        // A package never conflicts with itself, even through what it provides.
        assert_eq!(set(&u, &essential(&["mta"])), ["a 1", "mta 1"]);
        assert_eq!(
            error(&u, &essential(&["b"])),
            "a 1 Conflicts: b, but b 1 is selected too (essential -> a and requested -> b) in bookworm/amd64"
        );
        assert_eq!(
            error(&u, &essential(&["wrap"])),
            "a 1 Breaks: c (<< 2), but c 1.5 is selected too (essential -> a and requested -> wrap -> c) in bookworm/amd64"
        );
        let ok = universe(
            "Package: a\nVersion: 1\nEssential: yes\nBreaks: c (<< 2)\nDepends: c\n\n\
             Package: c\nVersion: 2",
        );
        assert_eq!(set(&ok, &essential(&[])), ["a 1", "c 2"]);
    }
}
