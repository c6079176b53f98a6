//! Reading `images.toml`: parse with spans, then check everything a build would
//! trip over later, and report all problems at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::arch::{self, Arch};
use super::created;
use super::diagnostic::{did_you_mean, Diagnostic, Diagnostics, SourceFile};
use super::model::*;
use super::raw::{RawDebian, RawImage, RawManifest, RawRegistry, RawRootfs, S};
use super::reference::{ReferenceError, RegistryUrl};
use super::schema::{DEBIAN_PACKAGE, DEBIAN_SCRIPTS, DEBIAN_VARIANTS};
use super::structure;
use super::template::{self, TemplateError, Vars};
use super::ManifestError;

/// Knobs that come from the command line rather than the manifest.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// With `created = "git"`, accept uncommitted changes to a platform's inputs.
    pub allow_dirty: bool,
    /// Leave `created = "git"` undated (0) and read no history: `lock` writes the
    /// lock that dates `debian` platforms (the first one in a new repository, with
    /// no commit yet) and needs no date itself.
    pub skip_git_dates: bool,
}

/// Reads and validates a manifest.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let root = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let root = std::path::absolute(root).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut manifest = parse(path, &text, &root, opts)?;
    manifest.lock = super::lock::Lock::read(&manifest.lock_path())?;
    Ok(manifest)
}

/// Validates manifest text as if it were read from `path` in folder `root`.
pub fn parse(
    path: &Path,
    text: &str,
    root: &Path,
    opts: &LoadOptions,
) -> Result<Manifest, ManifestError> {
    let source = SourceFile {
        path: path.to_path_buf(),
        text: Arc::from(text),
    };
    // Every unknown key and wrong type, then (on the neutralised manifest) every
    // validation problem: `check` shows them all at once.
    let lenient = structure::deserialize_leniently(text);
    let mut items: Vec<Diagnostic> = lenient
        .errors
        .iter()
        .map(|e| toml_diagnostic(e, &source))
        .collect();
    let Some(raw) = lenient.raw else {
        return Err(ManifestError::Invalid(Diagnostics { items, source }));
    };
    let mut v = Validator {
        root: root.to_path_buf(),
        diags: Vec::new(),
        secrets: Vec::new(),
        opts,
        text,
        lock_history: None,
    };
    let manifest = v.manifest(raw, &source);
    // A placeholder that stands in for a wrong-typed value is not the user's
    // second mistake there.
    let on_placeholder = |d: &Diagnostic| {
        d.span.as_ref().is_some_and(|s| {
            lenient
                .patched
                .iter()
                .any(|p| s.start < p.end && p.start < s.end.max(s.start + 1))
        })
    };
    items.extend(v.diags.into_iter().filter(|d| !on_placeholder(d)));
    if items.is_empty() {
        Ok(manifest)
    } else {
        items.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(ManifestError::Invalid(Diagnostics {
            source: mask(source, &v.secrets),
            items,
        }))
    }
}

/// The source with every byte of `secrets` replaced by `*` (so offsets, lines
/// and columns stay the same).
fn mask(source: SourceFile, secrets: &[std::ops::Range<usize>]) -> SourceFile {
    if secrets.is_empty() {
        return source;
    }
    let mut text = source.text.to_string();
    for r in secrets {
        if let Some(part) = text.get(r.clone()) {
            let stars = "*".repeat(part.len());
            text.replace_range(r.clone(), &stars);
        }
    }
    SourceFile {
        path: source.path,
        text: Arc::from(text),
    }
}

fn toml_diagnostic(err: &toml::de::Error, source: &SourceFile) -> Diagnostic {
    let span = err.span().map(|s| char_range(&source.text, s));
    // serde names the Rust type (`expected struct RawRootfs`); users wrote a table.
    let message = match err.message().trim().split_once("expected struct ") {
        Some((before, _)) => format!("{before}expected a table"),
        None => err.message().trim().to_string(),
    };
    if let Some(diag) = duplicate_table(&message, span.clone(), source) {
        return diag;
    }
    // A spanned table created implicitly by a dotted header (`[images.x.config]`
    // with no `[images.x]`): the TOML reader cannot locate it, and says so
    // obscurely. (`rootfs` accepts that form: see `implicit`.)
    if message.contains("expected a borrowed string") {
        let header = err
            .span()
            .and_then(|s| source.text[..s.start].rfind('[').map(|b| (b, s)))
            .map(|(b, s)| {
                source.text[b + 1..s.start]
                    .trim_end_matches('.')
                    .to_string()
            });
        let parent = header.unwrap_or_else(|| "images.NAME.rootfs".into());
        return Diagnostic::at(
            span.clone(),
            format!("the table [{parent}] is only implied by this header"),
        )
        .hint(format!(
            "write [{parent}] on a line of its own before this header, or use the inline form (rootfs = {{ debian = {{ ... }} }})"
        ));
    }
    // `created = 5`: "quote it" would only trade this error for a bad timestamp.
    if message.starts_with("invalid type: ")
        && key_before(&source.text, span.clone()).as_deref() == Some("created")
    {
        let found = err
            .span()
            .and_then(|r| source.text.get(r))
            .unwrap_or("this")
            .trim();
        return Diagnostic::at(
            span.clone(),
            format!("`created` must be a timestamp string, not {found}"),
        )
        .hint("`created` is a quoted string: an RFC 3339 UTC time such as \"2024-06-01T00:00:00Z\", \"git\" (each platform's last commit) or \"source-date-epoch\"");
    }
    let mut diag = Diagnostic::at(span.clone(), message.clone());
    if let Some(hint) = type_hint(err.message().trim()).or_else(|| syntax_hint(&message)) {
        return diag.hint(hint);
    }
    // serde says: unknown field `dsts`, expected one of `dists`, `arches`
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((word, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            diag = match did_you_mean(word, candidates.iter().copied()) {
                Some(best) => diag.hint(format!("did you mean `{best}`?")),
                None => diag.hint(format!("known keys here: {}", candidates.join(", "))),
            };
        }
    } else if message.starts_with("unknown variant") {
        diag = diag.hint("see the list of accepted values above");
    }
    diag
}

/// `span` widened to whole characters of `text`. The structure check reads a
/// copy of the text with wrong values replaced by same-length ASCII
/// placeholders, so a span it reports (a table ending after `rootfs = "é"`) can
/// end inside a character of the original.
fn char_range(text: &str, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// The key a value belongs to (`created` for `created = 5`), from the text of its line.
fn key_before(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start.min(text.len());
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let (key, rest) = text.get(line_start..start)?.split_once('=')?;
    rest.trim()
        .is_empty()
        .then(|| key.trim().trim_matches('"').to_string())
}

/// `[images.a]` twice: toml says "duplicate key `a` in table `images`" at the second
/// header only; name the table and both places, since the first may be far away.
fn duplicate_table(
    message: &str,
    span: Option<std::ops::Range<usize>>,
    source: &SourceFile,
) -> Option<Diagnostic> {
    let rest = message.strip_prefix("invalid table header")?;
    let rest = rest.trim().strip_prefix("duplicate key `")?;
    let (key, rest) = rest.split_once('`')?;
    let key = key.trim_matches('"');
    let table = rest
        .strip_prefix(" in table `")
        .and_then(|t| t.split_once('`'))
        .map(|(t, _)| t);
    let name = match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    };
    let second = span.clone()?.start;
    // The first header with the same dotted name, however it is spaced or quoted.
    let normal = |h: &str| h.replace([' ', '\t', '"', '\''], "");
    let mut offset = 0;
    let mut first = None;
    for line in source.text.split_inclusive('\n') {
        let header = line.trim();
        if offset < second
            && header.starts_with('[')
            && !header.starts_with("[[")
            && header
                .split_once(']')
                .is_some_and(|(h, _)| normal(&h[1..]) == normal(&name))
        {
            first = Some(offset + (line.len() - line.trim_start().len()));
            break;
        }
        offset += line.len();
    }
    let shown = if key.contains(['/', '.', ' ']) {
        match table {
            Some(t) if !t.is_empty() => format!("[{t}.\"{key}\"]"),
            _ => format!("[\"{key}\"]"),
        }
    } else {
        format!("[{name}]")
    };
    let diag = match first {
        Some(first) => Diagnostic::at(
            span,
            format!(
                "{shown} is defined twice: at {} and at {}",
                source.location(Some(&(first..first + 1))),
                source.location(Some(&(second..second + 1)))
            ),
        )
        .hint(format!(
            "merge the two tables into the first one (at {}), or rename one of them",
            source.location(Some(&(first..first + 1)))
        )),
        None => Diagnostic::at(span, format!("{shown} is defined twice"))
            .hint("merge the two tables into one, or rename one of them"),
    };
    Some(diag)
}

/// How to fix the TOML syntax errors people make most.
fn syntax_hint(message: &str) -> Option<String> {
    let hint = if message.starts_with("invalid basic string") {
        "close the string with `\"` on the same line; for text over several lines use \"\"\"...\"\"\" or '''...'''"
    } else if message.starts_with("invalid string") {
        "quote strings: \"...\" (or '...' for a literal string)"
    } else if message.starts_with("invalid array") {
        "close the array with `]`; the missing bracket is at or before this line"
    } else if message.starts_with("invalid inline table") {
        "close the inline table with `}` on the same line: { key = \"value\", other = 1 }"
    } else if message.starts_with("duplicate key") {
        "a key may appear once per table; remove one of them"
    } else if message.starts_with("invalid table header") {
        "a table header stands alone on its line: [settings], [images.NAME] or [registries.NAME]"
    } else {
        return None;
    };
    Some(hint.to_string())
}

/// How to fix a wrong type or a missing key, from serde's message.
fn type_hint(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let example = match field {
            "rootfs" => "rootfs = { dir = \"rootfs/{dist}/{arch}\" } (or { tar = \"...\" }, { command = \"...\" } or { debian = {} })",
            "dists" => "dists = [\"bookworm\"]",
            "arches" => "arches = [\"amd64\"]",
            "url" => "url = \"host[:port]/namespace\"",
            _ => return Some(format!("add `{field}` to this table")),
        };
        return Some(format!("add {example} to this table"));
    }
    let rest = message.strip_prefix("invalid type: ")?;
    let (found, expected) = rest.split_once(", expected ")?;
    let value = found
        .strip_prefix("string ")
        .unwrap_or(found)
        .trim_matches('"');
    Some(match expected {
        "a sequence" if found.starts_with("string ") => {
            format!("write an array: [\"{value}\"]")
        }
        "a sequence" => "write an array: [\"...\"]".to_string(),
        "a boolean" => "write true or false, without quotes".to_string(),
        // Only a scalar can be quoted as it is; an array, table or date needs rewriting.
        "a string"
            if found.starts_with("integer")
                || found.starts_with("floating")
                || found.starts_with("boolean") =>
        {
            let literal = found.split('`').nth(1).unwrap_or(value);
            format!("quote it: \"{literal}\"")
        }
        "a string" => "write a quoted string here, e.g. \"...\"".to_string(),
        e if e.starts_with("struct RawRootfs") => {
            format!("write a table: {{ dir = \"{value}\" }}, {{ tar = \"...\" }}, {{ command = \"...\" }} or {{ debian = {{}} }}")
        }
        e if e.starts_with("struct ") || e == "a map" => {
            "write a table: { key = value, ... } or a [section]".to_string()
        }
        _ => return None,
    })
}

struct Validator<'o> {
    root: PathBuf,
    diags: Vec<Diagnostic>,
    /// Byte ranges of the text that must never be shown (a password in a
    /// registry url): masked with `*` in the snippets of the errors.
    secrets: Vec<std::ops::Range<usize>>,
    opts: &'o LoadOptions,
    /// The manifest text, to find a template variable inside its TOML string.
    text: &'o str,
    /// The history of `images.lock`, read once for every `debian` platform's date.
    lock_history: Option<super::lock_history::LockHistory>,
}

impl Validator<'_> {
    fn error(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::at(Some(span), message).hint(hint));
    }

    /// [`Self::error`] for checks repeated per platform: the same problem at the
    /// same place is reported once, not once per dist x arch.
    fn error_once(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let diag = Diagnostic::at(Some(span), message).hint(hint);
        if !self.diags.contains(&diag) {
            self.diags.push(diag);
        }
    }

    fn manifest(&mut self, raw: RawManifest, source: &SourceFile) -> Manifest {
        let settings = self.settings(&raw);
        let registries = self.registries(&raw);
        if raw.images.is_empty() {
            self.diags.push(
                Diagnostic::at(None, "the manifest declares no images")
                    .hint("add an [images.NAME] table with dists, arches and rootfs; `imgraph init` writes a starter"),
            );
        }
        self.out_collisions(&raw, source);
        let mut platforms = Vec::new();
        let mut dists = Vec::new();
        for (name, image) in &raw.images {
            self.image(
                name,
                image,
                &settings,
                &registries,
                &mut platforms,
                &mut dists,
            );
        }
        Manifest {
            source: source.clone(),
            root: self.root.clone(),
            settings,
            registries,
            platforms,
            dists,
            lock: super::lock::Lock::default(),
        }
    }

    /// Images are exported to `out/<image>/<dist>/<arch>/`, and an image name may be a
    /// path (`a/b`): then another image `a` with a dist `b` would write into the same
    /// folders. Refuse the pair, naming both, rather than mix their layouts.
    fn out_collisions(&mut self, raw: &RawManifest, source: &SourceFile) {
        let out = raw
            .settings
            .out
            .as_ref()
            .map_or("out", |o| o.get_ref().as_str());
        for (parent, parent_image) in &raw.images {
            for child in raw.images.keys() {
                let Some(rest) = child
                    .get_ref()
                    .strip_prefix(parent.get_ref().as_str())
                    .and_then(|r| r.strip_prefix('/'))
                else {
                    continue;
                };
                let first = rest.split('/').next().unwrap_or(rest);
                let Some(dist) = parent_image
                    .get_ref()
                    .dists
                    .get_ref()
                    .iter()
                    .find(|d| d.get_ref() == first)
                else {
                    continue;
                };
                let (p, c) = (parent.get_ref(), child.get_ref());
                self.error(
                    child.span(),
                    format!(
                        "image {c:?} and dist {first:?} of image {p:?} would both be exported to {out}/{p}/{first}/"
                    ),
                    format!(
                        "image {p:?} is defined at {}, its dist {first:?} at {}; rename image {c:?} (e.g. {:?}) or that dist",
                        source.location(Some(&parent.span())),
                        source.location(Some(&dist.span())),
                        c.replace('/', "-"),
                    ),
                );
            }
        }
    }

    fn settings(&mut self, raw: &RawManifest) -> Settings {
        let s = &raw.settings;
        let created = match &s.created {
            // Unset: SOURCE_DATE_EPOCH if the environment has one, else the epoch,
            // so that a manifest without `created` still builds reproducibly.
            None => match std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                None => CreatedSpec::Fixed(0),
                Some(v) => match v.trim().parse() {
                    Ok(secs) => CreatedSpec::Fixed(secs),
                    Err(_) => {
                        self.diags.push(
                            Diagnostic::at(None, format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds"))
                                .hint("unset it, or set it to seconds since 1970 (e.g. `git log -1 --format=%ct`)"),
                        );
                        CreatedSpec::Fixed(0)
                    }
                },
            },
            Some(c) => match created::parse_setting(c.get_ref()) {
                // Said once here, rather than once per platform as a failed `git log`.
                Ok(CreatedSpec::Git) if created::outside_git(&self.root) => {
                    self.error(
                        c.span(),
                        format!(
                            "created = \"git\" dates each platform from git history, but there is no git repository at {}",
                            self.root.display()
                        ),
                        "run `git init` and commit the rootfs inputs, or use a fixed time: created = \"2024-06-01T00:00:00Z\"",
                    );
                    CreatedSpec::Fixed(0)
                }
                Ok(spec) => spec,
                Err(msg) => {
                    self.error(
                        c.span(),
                        format!("bad `created` value {:?}: {msg}", c.get_ref()),
                        "use an RFC 3339 UTC time like \"2024-06-01T00:00:00Z\", \"source-date-epoch\" or \"git\"",
                    );
                    CreatedSpec::Fixed(0)
                }
            },
        };
        let compression = match s
            .compression
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
        {
            None | Some(("gzip", _)) => Compression::Gzip,
            Some(("zstd", _)) => Compression::Zstd,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("unknown compression {other:?}"),
                    "use \"gzip\" (every client) or \"zstd\"",
                );
                Compression::Gzip
            }
        };
        let dir = |v: &Option<S<String>>, default: &str| {
            self.root
                .join(v.as_ref().map_or(default, |s| s.get_ref().as_str()))
        };
        let out = dir(&s.out, "out");
        let cache = dir(&s.cache, "cache");
        let sbom = match &s.sbom {
            Some(list) => self.sbom_formats(list),
            None => vec![SbomFormat::Spdx],
        };
        Settings {
            created,
            compression,
            out,
            cache,
            sbom,
            provenance: s.provenance.unwrap_or(true),
            sign: s.sign.as_ref().map(|sign| SignSpec {
                key: self.root.join(sign.get_ref().key.get_ref()),
                span: sign.span(),
            }),
            cache_registry: s
                .cache_registry
                .as_ref()
                .and_then(|c| self.cache_registry(c)),
            runners: s
                .runners
                .as_ref()
                .map(|r| self.runners(r))
                .unwrap_or_default(),
            library: match &s.library {
                Some(raw) => {
                    let (library, diags) = super::library::validate(raw, &self.root);
                    self.diags.extend(diags);
                    library
                }
                None => LibrarySettings::default(),
            },
        }
    }

    /// `cache_registry = "host/repo"` or `{ url, mode, insecure }`.
    fn cache_registry(&mut self, value: &S<toml::Value>) -> Option<CacheRegistry> {
        let example = "write cache_registry = \"host[:port]/repository\" or { url = \"...\", mode = \"read\" | \"read-write\", insecure = true }";
        let (url, mode, insecure) = match value.get_ref() {
            toml::Value::String(url) => (url.clone(), CacheMode::ReadWrite, None),
            toml::Value::Table(t) => {
                if let Some(key) = t
                    .keys()
                    .find(|k| !matches!(k.as_str(), "url" | "mode" | "insecure"))
                {
                    self.error(
                        value.span(),
                        format!("unknown key `{key}` in cache_registry"),
                        example,
                    );
                    return None;
                }
                let Some(url) = t.get("url").and_then(toml::Value::as_str) else {
                    self.error(value.span(), "cache_registry has no `url` string", example);
                    return None;
                };
                let mode = match t.get("mode") {
                    None => CacheMode::ReadWrite,
                    Some(toml::Value::String(m)) if m == "read" => CacheMode::Read,
                    Some(toml::Value::String(m)) if m == "read-write" => CacheMode::ReadWrite,
                    Some(other) => {
                        self.error(
                            value.span(),
                            format!("cache_registry mode {other} is not \"read\" or \"read-write\""),
                            "use mode = \"read\" for builds that may read the cache but not write it (pull requests), else \"read-write\" (the default)",
                        );
                        return None;
                    }
                };
                let insecure = match t.get("insecure") {
                    None => None,
                    Some(toml::Value::Boolean(b)) => Some(*b),
                    Some(other) => {
                        self.error(
                            value.span(),
                            format!("cache_registry insecure = {other} is not true or false"),
                            example,
                        );
                        return None;
                    }
                };
                (url.to_string(), mode, insecure)
            }
            other => {
                self.error(
                    value.span(),
                    format!(
                        "cache_registry is a {}, not a string or table",
                        other.type_str()
                    ),
                    example,
                );
                return None;
            }
        };
        // Credentials are refused as in `[registries]`, pointing at them with the
        // password masked in the snippet (the table form masks the whole value
        // when the url's text cannot be found in it verbatim).
        if let Err(ReferenceError::Credentials { host }) = RegistryUrl::parse(&url) {
            let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
            let userinfo = after_scheme.rsplit_once('@').map_or("", |(u, _)| u);
            let at = S::new(value.span(), url.clone());
            let (span, secret) = self.userinfo_spans(&at, userinfo);
            self.secrets.push(secret);
            self.error(
                span,
                "cache_registry url has credentials in it; imgraph never reads them from images.toml",
                format!(
                    "put credentials in ~/.docker/config.json (run `docker login {host}`, or configure a credential helper) and remove `user:password@` from the url"
                ),
            );
            return None;
        }
        match CacheRegistry::parse(&url, insecure, mode) {
            Ok(c) => Some(c),
            Err(message) => {
                self.error(
                    value.span(),
                    format!("bad cache_registry: {message}"),
                    example,
                );
                None
            }
        }
    }

    /// `runners = { ARCH = "label", default = "label" }`.
    fn runners(&mut self, raw: &S<BTreeMap<S<String>, String>>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (arch, label) in raw.get_ref() {
            let name = arch.get_ref();
            if name != "default" && Arch::by_name(name).is_none() {
                let known = Arch::names().collect::<Vec<_>>().join(", ");
                self.error(
                    arch.span(),
                    format!("runners: unknown arch {name:?}"),
                    match Arch::suggest_any(name) {
                        Some(best) => format!(
                            "did you mean {best:?}? keys are arch names ({known}) or `default`"
                        ),
                        None => format!("keys are arch names ({known}) or `default`"),
                    },
                );
                continue;
            }
            out.insert(name.clone(), label.clone());
        }
        out
    }

    /// `sbom = [...]`: known format names, each once.
    fn sbom_formats(&mut self, list: &S<Vec<S<String>>>) -> Vec<SbomFormat> {
        let mut out = Vec::new();
        for f in list.get_ref() {
            match SbomFormat::by_name(f.get_ref()) {
                Some(format) if out.contains(&format) => self.error(
                    f.span(),
                    format!("sbom format {:?} is listed twice", f.get_ref()),
                    "remove the duplicate",
                ),
                Some(format) => out.push(format),
                None => self.error(
                    f.span(),
                    format!("unknown sbom format {:?}", f.get_ref()),
                    format!(
                        "use one of: {} (or sbom = [] for no SBOM)",
                        super::schema::SBOM_FORMATS
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        out
    }

    /// One validator for registry urls: [`RegistryUrl::parse`], which the push
    /// code's rules come from; here its errors get a place in the text.
    fn registries(&mut self, raw: &RawManifest) -> BTreeMap<String, Registry> {
        let mut out = BTreeMap::new();
        for (name, reg) in &raw.registries {
            // A bad url still declares the name, so images listing it get no
            // second, misleading "not declared" error (the load fails anyway).
            let registry = self
                .registry(name.get_ref(), reg)
                .unwrap_or_else(|| Registry {
                    name: name.get_ref().clone(),
                    host: String::new(),
                    namespace: String::new(),
                    insecure: false,
                    url: String::new(),
                });
            out.insert(name.get_ref().clone(), registry);
        }
        out
    }

    fn registry(&mut self, name: &str, reg: &RawRegistry) -> Option<Registry> {
        let url = match RegistryUrl::parse(reg.url.get_ref()) {
            Ok(url) => url,
            Err(e) => {
                self.url_error(&reg.url, &e);
                return None;
            }
        };
        // `http://` means plain HTTP and `https://` means TLS; `insecure`
        // may repeat what the scheme says, never contradict it.
        let insecure = match (url.plain_http, reg.insecure) {
            (Some(false), Some(true)) => {
                let span = self.sub_span(&reg.url, "https://");
                self.error(
                    span,
                    "`https://` and `insecure = true` disagree: one says TLS, the other plain HTTP",
                    "for a plain-HTTP registry write http://, else remove `insecure = true`",
                );
                return None;
            }
            (Some(true), Some(false)) => {
                let span = self.sub_span(&reg.url, "http://");
                self.error(
                    span,
                    "`http://` and `insecure = false` disagree: one says plain HTTP, the other TLS",
                    "for a TLS registry write https://, else remove `insecure = false`",
                );
                return None;
            }
            (Some(plain), _) => plain,
            (None, insecure) => insecure.unwrap_or(false),
        };
        Some(Registry {
            name: name.to_owned(),
            host: url.host,
            namespace: url.namespace.unwrap_or_default(),
            insecure,
            url: reg.url.get_ref().clone(),
        })
    }

    /// The range of `needle` inside the TOML string `s` as written, or the
    /// whole string when escapes make the written text differ from the value.
    fn sub_span(&self, s: &S<String>, needle: &str) -> std::ops::Range<usize> {
        let span = s.span();
        match self.text.get(span.clone()).and_then(|raw| raw.find(needle)) {
            Some(i) if !needle.is_empty() => span.start + i..span.start + i + needle.len(),
            _ => span,
        }
    }

    fn url_error(&mut self, url: &S<String>, e: &ReferenceError) {
        let example = "write it as host[:port]/namespace, e.g. \"127.0.0.1:5000/bitnami\"";
        match e {
            ReferenceError::Empty { .. } => {
                self.error(url.span(), "registry url is empty", example)
            }
            ReferenceError::Host { host, .. } if host.is_empty() => self.error(
                url.span(),
                format!("registry url {:?} has no host", url.get_ref()),
                example,
            ),
            ReferenceError::Host { host, .. } => {
                let span = self.sub_span(url, host);
                self.error(span, e.to_string(), example);
            }
            ReferenceError::Port { port, .. } => {
                let span = self.sub_span(url, &format!(":{port}"));
                let span = if span.len() == port.len() + 1 {
                    span.start + 1..span.end
                } else {
                    span
                };
                self.error(
                    span,
                    format!("registry port {port} is out of range"),
                    "use a port from 1-65535, or none for the scheme's default",
                );
            }
            ReferenceError::Scheme { scheme } => {
                let span = self.sub_span(url, &format!("{scheme}://"));
                self.error(
                    span,
                    e.to_string(),
                    "https:// (the default) talks TLS; http:// talks plain HTTP, like insecure = true",
                );
            }
            ReferenceError::Credentials { host } => {
                // Point at the userinfo, and keep the password out of the
                // snippet: `parse` masks every range in `secrets`.
                let raw_value = url.get_ref();
                let after_scheme = raw_value
                    .split_once("://")
                    .map_or(raw_value.as_str(), |(_, r)| r);
                let userinfo = after_scheme.rsplit_once('@').map_or("", |(u, _)| u);
                let (span, secret) = self.userinfo_spans(url, userinfo);
                self.secrets.push(secret);
                self.error(
                    span,
                    "registry url has credentials in it; imgraph never reads them from images.toml",
                    format!(
                        "put credentials in ~/.docker/config.json (run `docker login {host}`) and remove `user:password@` from the url"
                    ),
                );
            }
            ReferenceError::Repository { .. }
            | ReferenceError::Tag { .. }
            | ReferenceError::Digest { .. } => {
                let (_, path) = url
                    .get_ref()
                    .split_once("://")
                    .unwrap_or(("", url.get_ref()));
                let namespace = path
                    .split_once('/')
                    .map_or("", |(_, ns)| ns.trim_end_matches('/'));
                let span = self.sub_span(url, namespace);
                self.error(
                    span,
                    format!("registry namespace {namespace:?} is not a valid repository path"),
                    "use lowercase letters and digits, separated by `.`, `_`, `__` or `-`, and `/` between components",
                );
            }
        }
    }

    fn image(
        &mut self,
        name: &S<String>,
        raw: &S<RawImage>,
        settings: &Settings,
        registries: &BTreeMap<String, Registry>,
        platforms: &mut Vec<PlatformSpec>,
        dists_out: &mut Vec<DistSpec>,
    ) {
        let image = name.get_ref().as_str();
        let img = raw.get_ref();
        if !valid_repository(image) {
            self.error(
                name.span(),
                format!("image name {image:?} is not a valid repository name"),
                "use lowercase letters and digits, separated by `.`, `_`, `__` or `-`, in path components joined by `/` (e.g. \"team/base\"); a registry rejects anything else",
            );
        }
        // dists
        let mut dists: Vec<&S<String>> = Vec::new();
        if img.dists.get_ref().is_empty() {
            self.error(
                img.dists.span(),
                format!("image {image:?} lists no dists"),
                "add at least one, e.g. dists = [\"bookworm\"]",
            );
        }
        for d in img.dists.get_ref() {
            if dists.iter().any(|seen| seen.get_ref() == d.get_ref()) {
                self.error(
                    d.span(),
                    format!("dist {:?} is listed twice", d.get_ref()),
                    "remove the duplicate",
                );
            } else if !valid_tag(d.get_ref()) {
                self.error(
                    d.span(),
                    format!("dist name {:?} cannot be used in tags and paths", d.get_ref()),
                    "use letters, digits, '.', '_' and '-' (at most 128, not starting with '.' or '-')",
                );
            } else {
                dists.push(d);
            }
        }
        // arches
        let mut arches: Vec<&'static Arch> = Vec::new();
        if img.arches.get_ref().is_empty() {
            self.error(
                img.arches.span(),
                format!("image {image:?} lists no arches"),
                "add at least one, e.g. arches = [\"amd64\"]",
            );
        }
        for a in img.arches.get_ref() {
            match Arch::by_name(a.get_ref()) {
                Some(arch) if arches.contains(&arch) => self.error(
                    a.span(),
                    format!("arch {:?} is listed twice", a.get_ref()),
                    "remove the duplicate",
                ),
                Some(arch) => arches.push(arch),
                None => {
                    let hint = match Arch::suggest_any(a.get_ref()) {
                        Some(best) => format!("did you mean {best:?}?"),
                        None => format!(
                            "known arches: {}",
                            Arch::names().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    self.error(a.span(), format!("unknown arch {:?}", a.get_ref()), hint);
                }
            }
        }
        // latest
        if let Some(latest) = &img.latest {
            if !dists.iter().any(|d| d.get_ref() == latest.get_ref()) {
                let names: Vec<&str> = dists.iter().map(|d| d.get_ref().as_str()).collect();
                self.error(
                    latest.span(),
                    format!(
                        "latest = {:?} is not one of this image's dists",
                        latest.get_ref()
                    ),
                    format!("use one of: {}", names.join(", ")),
                );
            }
        }
        // registries
        let mut image_registries = Vec::new();
        for r in &img.registries {
            if registries.contains_key(r.get_ref()) {
                image_registries.push(r.get_ref().clone());
            } else {
                let hint = match did_you_mean(r.get_ref(), registries.keys().map(String::as_str)) {
                    Some(best) => format!("did you mean {best:?}?"),
                    None => format!(
                        "declare it: [registries.{}] with url = \"host[:port]/namespace\"",
                        r.get_ref()
                    ),
                };
                self.error(
                    r.span(),
                    format!("registry {:?} is not declared", r.get_ref()),
                    hint,
                );
            }
        }
        let platform_check = img.platform_check.unwrap_or(true);
        let sbom = match &img.sbom {
            Some(list) => self.sbom_formats(list),
            None => settings.sbom.clone(),
        };
        let provenance = img.provenance.unwrap_or(settings.provenance);
        let rootfs = img.rootfs.get_ref();
        self.rootfs_shape(&img.rootfs);
        if rootfs.debian.is_some() {
            // Said at the arch, once, rather than as a template error per dist.
            for a in img.arches.get_ref() {
                let Some(arch) = Arch::by_name(a.get_ref()) else {
                    continue;
                };
                if arch.debian_arch.is_none() {
                    let ports: Vec<&str> = super::arch::ARCHES
                        .iter()
                        .filter(|a| a.debian_arch.is_some())
                        .map(|a| a.name)
                        .collect();
                    self.error_once(
                        a.span(),
                        format!(
                            "arch {:?} cannot have a `debian` rootfs: Debian has no port for it",
                            arch.name
                        ),
                        format!(
                            "remove {:?} from `arches`, or build it in another image with a dir, tar or command rootfs; Debian's arches: {}",
                            arch.name,
                            ports.join(", ")
                        ),
                    );
                }
            }
        }

        // tags, per dist
        let default_tags = [S::new(0..0, "{dist}".to_string())];
        let tag_templates: Vec<&S<String>> = match &img.tags {
            Some(t) => t.get_ref().iter().collect(),
            None => default_tags.iter().collect(),
        };
        if matches!(&img.tags, Some(t) if t.get_ref().is_empty()) {
            self.error(
                img.tags.as_ref().unwrap().span(),
                "tags is empty",
                "remove it for the default [\"{dist}\"], or list at least one tag",
            );
        }
        let mut tag_owner: HashMap<String, String> = HashMap::new();
        for dist in &dists {
            let dist_name = dist.get_ref();
            let mut vars = Vars::new();
            for k in arch::ARCH_VARIABLES.iter().chain(&["out"]) {
                vars.insert(k, None);
            }
            vars.insert("image", Some(image.to_string()));
            vars.insert("dist", Some(dist_name.clone()));
            let mut tags = Vec::new();
            for t in &tag_templates {
                match template::render(t.get_ref(), &vars, &format!("{image}:{dist_name} (tags are per dist, not per arch)")) {
                    Ok(tag) if !valid_tag(&tag) => self.error(
                        t.span(),
                        format!("tag {tag:?} is not a valid tag"),
                        "tags are letters, digits, '.', '_' and '-', at most 128, not starting with '.' or '-'",
                    ),
                    Ok(tag) => tags.push(tag),
                    Err(e) => self.template_error(t, &e),
                }
            }
            if img.latest.as_ref().map(|l| l.get_ref()) == Some(dist_name) {
                tags.push("latest".to_string());
            }
            tags.dedup();
            for tag in &tags {
                if let Some(other) = tag_owner.insert(tag.clone(), dist_name.clone()) {
                    if other != *dist_name {
                        let span = img.tags.as_ref().map_or(dist.span(), |t| t.span());
                        self.error(
                            span,
                            format!("tag {tag:?} is given to both dist {other:?} and {dist_name:?} of image {image:?}"),
                            "make the tag templates depend on {dist}, or give `latest` to one dist only",
                        );
                    }
                }
            }
            dists_out.push(DistSpec {
                image: image.to_string(),
                dist: dist_name.clone(),
                arches: arches.clone(),
                tags,
                registries: image_registries.clone(),
                annotations: img.annotations.clone(),
            });

            for arch in &arches {
                let mut vars = vars.clone();
                vars.extend(arch.variables());
                let label = format!("{image}:{dist_name}/{}", arch.name);
                let Some(source) = self.rootfs_source(rootfs, &vars, &label) else {
                    continue;
                };
                let created = match &settings.created {
                    CreatedSpec::Fixed(t) => *t,
                    CreatedSpec::Git if self.opts.skip_git_dates => 0,
                    CreatedSpec::Git => {
                        match created::git_time(
                            &self.root,
                            &source,
                            &label,
                            self.opts.allow_dirty,
                            &mut self.lock_history,
                        ) {
                            Ok(t) => t,
                            Err(undated) => {
                                let span = raw_rootfs_span(&img.rootfs);
                                self.error(
                                    span,
                                    format!("created = \"git\" for {label}: {}", undated.message),
                                    undated.help,
                                );
                                0
                            }
                        }
                    }
                };
                platforms.push(PlatformSpec {
                    image: image.to_string(),
                    dist: dist_name.clone(),
                    arch,
                    rootfs: source,
                    config: img.config.clone(),
                    annotations: img.annotations.clone(),
                    platform_check,
                    created,
                    sbom: sbom.clone(),
                    provenance,
                });
            }
        }
    }

    fn rootfs_shape(&mut self, raw: &S<RawRootfs>) {
        let r = raw.get_ref();
        let kinds = [
            r.dir.is_some(),
            r.tar.is_some(),
            r.command.is_some(),
            r.debian.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if kinds != 1 {
            self.error(
                raw.span(),
                if kinds == 0 { "rootfs names no source" } else { "rootfs names more than one source" },
                "use exactly one of { dir = \"...\" }, { tar = \"...\" }, { command = \"...\", inputs = [...] } or { debian = { ... } }",
            );
        }
        if let Some(debian) = &r.debian {
            self.debian_shape(debian.get_ref());
        }
        if r.command.is_none() {
            if let Some(first) = r.inputs.first() {
                self.error(
                    first.span(),
                    "`inputs` only applies to a `command` rootfs",
                    "remove it: a dir or tar source is hashed by its content already, a debian source by its lock",
                );
            }
            if let Some(t) = &r.timeout {
                self.error(
                    t.span(),
                    "`timeout` only applies to a `command` rootfs",
                    "remove it",
                );
            }
        }
        if let Some(o) = &r.owners {
            if r.dir.is_none() {
                self.error(
                    o.span(),
                    "`owners` only applies to a `dir` rootfs",
                    "tarballs, command outputs and debian packages always keep their owners; remove it",
                );
            } else if !matches!(o.get_ref().as_str(), "root" | "preserve") {
                self.error(
                    o.span(),
                    format!("unknown owners {:?}", o.get_ref()),
                    "use \"root\" (0:0, the default) or \"preserve\"",
                );
            }
        }
        if let Some(t) = &r.timeout {
            if humantime::parse_duration(t.get_ref()).is_err() {
                self.error(
                    t.span(),
                    format!("bad timeout {:?}", t.get_ref()),
                    "write a duration like \"30m\", \"1h 30m\" or \"90s\"",
                );
            }
        }
    }

    fn rootfs_source(
        &mut self,
        r: &RawRootfs,
        vars: &Vars<'_>,
        label: &str,
    ) -> Option<RootfsSource> {
        let owners = match r.owners.as_ref().map(|o| o.get_ref().as_str()) {
            Some("preserve") => Owners::Preserve,
            _ => Owners::Root,
        };
        if let Some(dir) = &r.dir {
            let shown = self.render(dir, vars, label)?;
            let path = self.root.join(&shown);
            if !path.is_dir() {
                self.error(
                    dir.span(),
                    format!(
                        "rootfs dir {shown:?} for {label} does not exist or is not a directory"
                    ),
                    format!("create {} or fix the template", path.display()),
                );
                return None;
            }
            return Some(RootfsSource::Dir {
                path,
                shown,
                owners,
            });
        }
        if let Some(tar) = &r.tar {
            let shown = self.render(tar, vars, label)?;
            let path = self.root.join(&shown);
            if !path.is_file() {
                self.error(
                    tar.span(),
                    format!("rootfs tarball {shown:?} for {label} does not exist"),
                    format!("create {} or fix the template", path.display()),
                );
                return None;
            }
            return Some(RootfsSource::Tar { path, shown });
        }
        if let Some(debian) = &r.debian {
            return self
                .debian_source(debian, vars, label)
                .map(RootfsSource::Debian);
        }
        let command = r.command.as_ref()?;
        let mut vars = vars.clone();
        vars.insert("out", Some("{out}".to_string()));
        let resolved = self.render(command, &vars, label)?;
        let out_is_tar = resolved.contains("{out}.tar");
        let mut inputs = Vec::new();
        for input in &r.inputs {
            let shown = self.render(input, &vars, label)?;
            let path = self.root.join(&shown);
            if !path.exists() {
                self.error(
                    input.span(),
                    format!("input {shown:?} for {label} does not exist"),
                    "inputs are files or folders whose content is part of the rootfs key; fix the path",
                );
                continue;
            }
            inputs.push((path, shown));
        }
        let timeout = r
            .timeout
            .as_ref()
            .and_then(|t| humantime::parse_duration(t.get_ref()).ok());
        Some(RootfsSource::Command {
            command: resolved,
            inputs,
            out_is_tar,
            timeout,
        })
    }

    /// The checks of a `debian` table that do not depend on the platform, made
    /// once per image.
    fn debian_shape(&mut self, d: &RawDebian) {
        if let Some(v) = &d.scripts {
            if !DEBIAN_SCRIPTS.contains(&v.get_ref().as_str()) {
                let hint = match did_you_mean(v.get_ref(), DEBIAN_SCRIPTS.iter().copied()) {
                    Some(best) => format!("did you mean {best:?}?"),
                    None => "use \"report\" (name every maintainer-script command not reproduced, the default) or \"strict\" (fail the rootfs step on the first one)".to_string(),
                };
                self.error(
                    v.span(),
                    format!("unknown debian scripts mode {:?}", v.get_ref()),
                    hint,
                );
            }
        }
        if let Some(v) = &d.variant {
            if !DEBIAN_VARIANTS.contains(&v.get_ref().as_str()) {
                let hint = match did_you_mean(v.get_ref(), DEBIAN_VARIANTS.iter().copied()) {
                    Some(best) => format!("did you mean {best:?}?"),
                    None => "use \"essential\" (Essential: yes packages), \"apt\" (essential + apt) or \"minbase\" (essential + Priority: required, the default)".to_string(),
                };
                self.error(
                    v.span(),
                    format!("unknown debian variant {:?}", v.get_ref()),
                    hint,
                );
            }
        }
        for (key, list) in [("include", &d.include), ("exclude", &d.exclude)] {
            for p in list {
                if !valid_debian_package(p.get_ref()) {
                    let lower = p.get_ref().to_ascii_lowercase();
                    let hint = if valid_debian_package(&lower) {
                        format!("Debian package names are lowercase: did you mean {lower:?}?")
                    } else {
                        "Debian package names are lowercase letters, digits and `+ - .`, at least two characters, starting with a letter or digit (e.g. \"ca-certificates\"); no version or :arch suffix".to_string()
                    };
                    self.error(
                        p.span(),
                        format!("{key} entry {:?} is not a Debian package name", p.get_ref()),
                        hint,
                    );
                }
            }
        }
        for p in &d.exclude {
            if d.include.iter().any(|i| i.get_ref() == p.get_ref()) {
                self.error(
                    p.span(),
                    format!("package {:?} is both included and excluded", p.get_ref()),
                    "remove it from `include` or from `exclude`",
                );
            }
        }
        for (key, list, default) in [
            ("suites", &d.suites, "[\"{dist}\"]"),
            ("components", &d.components, "[\"main\"]"),
        ] {
            let Some(list) = list else { continue };
            if list.get_ref().is_empty() {
                self.error(
                    list.span(),
                    format!("`{key}` is empty"),
                    format!("remove it for the default {default}, or list at least one"),
                );
            }
            let mut seen: Vec<&str> = Vec::new();
            for item in list.get_ref() {
                let name = item.get_ref().as_str();
                if name.is_empty() || name.contains(char::is_whitespace) || name.starts_with('/') {
                    self.error(
                        item.span(),
                        format!("{key} entry {name:?} is not an archive name"),
                        format!("write one name per entry, without spaces, e.g. {default}"),
                    );
                } else if seen.contains(&name) {
                    self.error(
                        item.span(),
                        format!("{key} entry {name:?} is listed twice"),
                        "remove the duplicate",
                    );
                } else {
                    seen.push(name);
                }
            }
        }
    }

    /// One platform's [`DebianSource`]: templates rendered, urls normalised, lists
    /// sorted (so their order does not change the request), keyring found.
    fn debian_source(
        &mut self,
        raw: &S<RawDebian>,
        vars: &Vars<'_>,
        label: &str,
    ) -> Option<DebianSource> {
        let d = raw.get_ref();
        // An arch Debian has no port for was reported at the arch already.
        let debian_arch = vars.get("debian_arch").cloned().flatten()?;
        let variant = d
            .variant
            .as_ref()
            .map_or("minbase", |v| v.get_ref().as_str());
        let mut ok = DEBIAN_VARIANTS.contains(&variant);
        let packages = |list: &[S<String>]| {
            let mut names: Vec<String> = list.iter().map(|p| p.get_ref().clone()).collect();
            names.sort();
            names.dedup();
            names
        };
        let (include, exclude) = (packages(&d.include), packages(&d.exclude));
        ok &= include
            .iter()
            .chain(&exclude)
            .all(|p| valid_debian_package(p) && !(include.contains(p) && exclude.contains(p)));

        let mirror = match &d.mirror {
            Some(m) => self
                .render(m, vars, label)
                .and_then(|url| self.archive_url("mirror", m, &url)),
            None => Some(DEFAULT_MIRROR.to_string()),
        };
        // `None`: a bad url (reported); `Some(None)`: no security archive.
        let security = match &d.security {
            Some(s) => self
                .render(s, vars, label)
                .and_then(|url| self.archive_url("security", s, &url))
                .map(Some),
            None => Some(None),
        };
        let default_suites = [S::new(0..0, "{dist}".to_string())];
        let suite_templates: &[S<String>] = match &d.suites {
            Some(s) => s.get_ref(),
            None => &default_suites,
        };
        let mut suites = Vec::new();
        for t in suite_templates {
            let suite = self.render(t, vars, label)?;
            if suite.is_empty() || suite.contains(char::is_whitespace) {
                ok = false;
            }
            suites.push(suite);
        }
        let components: Vec<String> = match &d.components {
            Some(c) => c.get_ref().iter().map(|c| c.get_ref().clone()).collect(),
            None => vec!["main".to_string()],
        };
        ok &= !suites.is_empty() && !components.is_empty();
        let keyring = self.keyring(raw, vars, label);
        if !ok {
            return None;
        }
        Some(DebianSource {
            variant: variant.to_string(),
            include,
            exclude,
            mirror: mirror?,
            suites,
            security: security?,
            components,
            keyring: keyring?,
            debian_arch,
            dist: vars.get("dist").cloned().flatten().unwrap_or_default(),
            scripts_strict: d.scripts.as_ref().is_some_and(|s| s.get_ref() == "strict"),
        })
    }

    /// The keyring as an absolute path, which must be a file.
    fn keyring(&mut self, raw: &S<RawDebian>, vars: &Vars<'_>, label: &str) -> Option<PathBuf> {
        let (shown, span) = match &raw.get_ref().keyring {
            Some(k) => (self.render(k, vars, label)?, k.span()),
            None => (DEFAULT_KEYRING.to_string(), raw.span()),
        };
        let path = self.root.join(&shown);
        if path.is_file() {
            return Some(path);
        }
        let what = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        let hint = if raw.get_ref().keyring.is_none() {
            "install Debian's archive keys (`apt-get install debian-archive-keyring`), or name a keyring: keyring = \"keys/debian-archive-keyring.gpg\" (relative to this manifest)".to_string()
        } else {
            format!(
                "the keyring is an OpenPGP public keyring (e.g. /usr/share/keyrings/debian-archive-keyring.gpg); fix the path: {} is where it was looked for",
                path.display()
            )
        };
        self.error_once(span, format!("debian keyring {shown:?} {what}"), hint);
        None
    }

    /// An archive url as the lock records it: `http://` or `https://`, a host, no
    /// credentials, no trailing slash. `key` is `mirror` or `security`.
    fn archive_url(&mut self, key: &str, raw: &S<String>, url: &str) -> Option<String> {
        let example = if key == "security" {
            "\"http://deb.debian.org/debian-security\""
        } else {
            "\"http://deb.debian.org/debian\""
        };
        let Some((scheme, rest)) = url
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
        else {
            self.error_once(
                raw.span(),
                format!("{key} {url:?} is not an http:// or https:// url"),
                format!("write the archive's url, e.g. {key} = {example}"),
            );
            return None;
        };
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            // Point at `user:password` and keep the password out of the snippet
            // (`parse` masks every range in `secrets`).
            let (span, secret) = self.userinfo_spans(raw, userinfo);
            self.secrets.push(secret);
            self.error_once(
                span,
                format!("{key} url has credentials in it; imgraph never sends them"),
                format!(
                    "remove `user:password@` and write {scheme}://{host}/...: a Debian archive is public, and imgraph trusts it for its InRelease signatures, not a login"
                ),
            );
            return None;
        }
        if authority.is_empty() || url.contains(char::is_whitespace) {
            self.error_once(
                raw.span(),
                format!("{key} {url:?} has no host or has spaces in it"),
                format!("write the archive's url, e.g. {key} = {example}"),
            );
            return None;
        }
        let trimmed = url.trim_end_matches('/');
        Some(trimmed.to_string())
    }

    /// Where `user:password` stands in a URL value (found as `user:password@`, so
    /// it cannot match inside the scheme by chance; shown without the `@`), and the
    /// part to mask: the password, or the whole value when escapes shift offsets.
    fn userinfo_spans(
        &self,
        url: &S<String>,
        userinfo: &str,
    ) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let with_at = self.sub_span(url, &format!("{userinfo}@"));
        let span = if with_at.len() == userinfo.len() + 1 {
            with_at.start..with_at.end - 1
        } else {
            with_at
        };
        let secret = match userinfo.split_once(':') {
            Some((_, password)) if span.len() == userinfo.len() => {
                span.end - password.len()..span.end
            }
            _ if span.len() == userinfo.len() => span.clone(),
            _ => span.start + 1..span.end.saturating_sub(1).max(span.start + 1),
        };
        (span, secret)
    }

    fn render(&mut self, t: &S<String>, vars: &Vars<'_>, label: &str) -> Option<String> {
        match template::render(t.get_ref(), vars, label) {
            Ok(s) => Some(s),
            Err(e) => {
                self.template_error(t, &e);
                None
            }
        }
    }

    fn template_error(&mut self, t: &S<String>, e: &TemplateError) {
        // Point at the variable inside the TOML string as written. The offset is
        // in the decoded value, so it only holds where the string has no escapes:
        // otherwise search the raw text, or fall back to the whole string.
        let needle = match e {
            TemplateError::Unknown { name, .. } | TemplateError::NoValue { name, .. } => {
                format!("{{{name}}}")
            }
            TemplateError::Unclosed { .. } => "{".to_string(),
        };
        let span = t.span();
        let raw = self.text.get(span.clone()).unwrap_or("");
        let guess = 1 + e.offset();
        let (start, len) = if raw.get(guess..guess + needle.len()) == Some(needle.as_str()) {
            (span.start + guess, needle.len())
        } else if let Some(i) = raw.find(&needle) {
            (span.start + i, needle.len())
        } else {
            (span.start, span.len())
        };
        let hint = match e {
            TemplateError::Unknown { name, .. } => {
                match did_you_mean(name, template::variables()) {
                    Some(best) => format!("did you mean {{{best}}}?"),
                    None => format!(
                        "known variables: {}",
                        template::variables()
                            .map(|v| format!("{{{v}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                }
            }
            TemplateError::NoValue { name, context, .. } => no_value_hint(name, context),
            TemplateError::Unclosed { .. } => {
                "close it with `}`, or write `{{` for a literal brace".into()
            }
        };
        let diag = Diagnostic::at(Some(start..start + len), e.to_string()).hint(hint);
        if !self.diags.contains(&diag) {
            self.diags.push(diag);
        }
    }
}

/// Why a known variable has no value here, and what to write instead.
fn no_value_hint(name: &str, context: &str) -> String {
    if context.contains("tags are per dist") {
        return format!(
            "a tag names a dist's whole multi-arch index, so only {{image}} and {{dist}} have values here; remove {{{name}}}"
        );
    }
    let arch = context.rsplit('/').next().unwrap_or(context);
    match name {
        "debian_arch" => format!(
            "{arch} has no Debian arch (Debian has no port for it): remove {arch:?} from `arches`, or use {{arch}} here"
        ),
        "variant" => format!(
            "{arch} has no OCI variant (only arm platforms do): use {{arch}} or {{platform}} here"
        ),
        "out" => "{out} is where a `command` writes the rootfs; it has no value elsewhere".into(),
        _ => "remove that arch from the image, or avoid the variable in this template".into(),
    }
}

/// The archive a `debian` rootfs reads when it names no `mirror`.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Debian's archive keys, as the `debian-archive-keyring` package installs them.
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Debian policy 5.6.1 ([`DEBIAN_PACKAGE`]): lowercase letters, digits, `+ - .`,
/// at least two characters, starting with a letter or digit.
fn valid_debian_package(name: &str) -> bool {
    debug_assert_eq!(DEBIAN_PACKAGE, "^[a-z0-9][a-z0-9+.-]+$");
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))
}

fn raw_rootfs_span(r: &S<RawRootfs>) -> std::ops::Range<usize> {
    r.span()
}

/// OCI distribution-spec repository paths: the registry module's rule, so that a
/// name `check` accepts is one a push accepts.
fn valid_repository(name: &str) -> bool {
    super::reference::validate_repository("", name).is_ok()
}

/// OCI distribution-spec tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian_platforms(rootfs: &str, arches: &str) -> Result<Vec<PlatformSpec>, ManifestError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/bookworm.gpg"), b"k").unwrap();
        let text = format!(
            "[images.m]\ndists = [\"bookworm\"]\narches = {arches}\nrootfs = {{ debian = {rootfs} }}\n"
        );
        parse(
            Path::new("images.toml"),
            &text,
            dir.path(),
            &LoadOptions::default(),
        )
        .map(|m| m.platforms)
    }

    fn debian(p: &PlatformSpec) -> &DebianSource {
        match &p.rootfs {
            RootfsSource::Debian(d) => d,
            other => panic!("not a debian rootfs: {other:?}"),
        }
    }

    #[test]
    fn a_debian_rootfs_resolves_per_platform() {
        let platforms = debian_platforms(
            r#"{ variant = "apt", include = ["curl", "ca-certificates", "curl"], exclude = ["bb", "a1"], mirror = "https://deb.example/debian//", suites = ["{dist}", "{dist}-updates"], security = "http://deb.example/debian-security/", keyring = "keys/{dist}.gpg" }"#,
            r#"["amd64", "arm64v8"]"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let arm = debian(&platforms[1]);
        assert_eq!(arm.debian_arch, "arm64");
        assert_eq!(debian(&platforms[0]).debian_arch, "amd64");
        assert_eq!(arm.variant, "apt");
        // Sorted and deduplicated: the order written does not change the request.
        assert_eq!(arm.include, ["ca-certificates", "curl"]);
        assert_eq!(arm.exclude, ["a1", "bb"]);
        assert_eq!(arm.mirror, "https://deb.example/debian");
        assert_eq!(arm.suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            arm.security.as_deref(),
            Some("http://deb.example/debian-security")
        );
        assert_eq!(arm.components, ["main"]);
        assert!(arm.keyring.is_absolute(), "{}", arm.keyring.display());
        assert!(arm.keyring.ends_with("keys/bookworm.gpg"));
        assert_eq!(
            arm.archives().last().unwrap(),
            &(
                "http://deb.example/debian-security".to_string(),
                "bookworm-security".to_string()
            )
        );
    }

    #[test]
    fn a_debian_rootfs_defaults_to_minbase_from_deb_debian_org() {
        let platforms =
            debian_platforms(r#"{ keyring = "keys/bookworm.gpg" }"#, r#"["i386"]"#).unwrap();
        let d = debian(&platforms[0]);
        assert_eq!(d.variant, "minbase");
        assert_eq!(d.mirror, "http://deb.debian.org/debian");
        assert_eq!(d.suites, ["bookworm"]);
        assert_eq!(d.security, None);
        assert_eq!(d.components, ["main"]);
        assert!(d.include.is_empty() && d.exclude.is_empty());
        assert_eq!(d.debian_arch, "i386");
    }

    #[test]
    fn one_debian_mistake_is_reported_once_for_every_platform() {
        let err = debian_platforms(
            r#"{ mirror = "ftp://x/debian", keyring = "keys/bookworm.gpg" }"#,
            r#"["amd64", "arm64v8", "i386"]"#,
        )
        .unwrap_err();
        let ManifestError::Invalid(d) = err else {
            panic!("{err}")
        };
        assert_eq!(d.items.len(), 1, "{d}");
    }

    #[test]
    fn debian_package_names_follow_policy() {
        for ok in ["ca-certificates", "libstdc++6", "g++-12", "0ad", "xz-utils"] {
            assert!(valid_debian_package(ok), "{ok}");
        }
        for bad in [
            "a",
            "Curl",
            "-x",
            "+x",
            "libc6:amd64",
            "curl=7.0",
            "a b",
            "",
        ] {
            assert!(!valid_debian_package(bad), "{bad}");
        }
    }
}
