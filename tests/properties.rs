//! Property tests: no input may panic (issue 6).
//!
//! Generated `images.toml` texts (valid and invalid keys, arches, templates with known,
//! unknown and unclosed variables, multi-byte characters, every TOML string style,
//! random edits) never panic the loader nor the rendering of its errors, and every
//! diagnostic with a span says `file:line:col`. Generated tar streams (files, dirs,
//! symlinks, hard links, devices, PAX and GNU long names, `..`, absolute paths, lying
//! sizes, random cuts, plain or gzip) never panic the layer writer; a layer that is
//! written is deterministic and holds no `..`, no absolute path and no dangling hard
//! link. Selectors never panic either.
//!
//! Bounded for CI (a few seconds in all); `PROPTEST_CASES=10000` runs more. The
//! unbounded search is `scripts/fuzz` (cargo fuzz, by hand).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imgraph::manifest::{parse, Compression, LoadOptions, ManifestError, Selector};
use imgraph::oci::layer::{write_layer, LayerOptions, LayerSource};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Regressions found here are written down as plain tests below instead.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------

const MANIFEST_PATH: &str = "gen/images.toml";

/// A project folder holding the rootfs dirs, tarballs and inputs the generated templates
/// can name, so that some manifests get all the way through validation.
fn manifest_root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("imgraph-properties-")
            .tempdir()
            .expect("temp dir");
        for arch in ["amd64", "arm64v8", "arm32v6", "i386", "riscv64"] {
            for dist in ["bookworm", "trixie", "é"] {
                std::fs::create_dir_all(dir.path().join("rootfs").join(dist).join(arch)).unwrap();
            }
            std::fs::write(dir.path().join(format!("rootfs-{arch}.tar")), b"").unwrap();
        }
        std::fs::write(dir.path().join("mkrootfs"), b"#!/bin/sh\n").unwrap();
        dir
    })
    .path()
}

/// How a string value is written in TOML: the loader maps offsets in the decoded value
/// back to the text, which each style (and each escape) shifts differently.
#[derive(Debug, Clone, Copy)]
enum Quote {
    /// `"..."`, multi-byte characters as they are.
    Basic,
    /// `"..."` with every non-ASCII character and some ASCII ones as `\uXXXX` escapes.
    Escaped,
    /// `'...'`.
    Literal,
    /// `"""` newline `..."""`.
    MultiBasic,
    /// `'''` newline `...'''`.
    MultiLiteral,
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![
        4 => Just(Quote::Basic),
        2 => Just(Quote::Escaped),
        2 => Just(Quote::Literal),
        1 => Just(Quote::MultiBasic),
        1 => Just(Quote::MultiLiteral),
    ]
}

fn basic_escape(s: &str, all: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c if all && (!c.is_ascii() || c == 'a' || c == '{') => {
                if (c as u32) > 0xFFFF {
                    out.push_str(&format!("\\U{:08X}", c as u32));
                } else {
                    out.push_str(&format!("\\u{:04X}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `s` as a TOML string in style `q` (falling back to a basic string where the style
/// cannot hold `s`).
fn toml_str(s: &str, q: Quote) -> String {
    let plain = !s.chars().any(|c| c.is_control() && c != '\t');
    match q {
        Quote::Literal if plain && !s.contains('\'') => format!("'{s}'"),
        Quote::MultiLiteral if plain && !s.contains("''") && !s.ends_with('\'') => {
            format!("'''\n{s}'''")
        }
        Quote::MultiBasic => format!("\"\"\"\n{}\"\"\"", basic_escape(s, false)),
        Quote::Escaped => format!("\"{}\"", basic_escape(s, true)),
        _ => format!("\"{}\"", basic_escape(s, false)),
    }
}

/// Text pieces that templates and names are made of.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{dist}",
        "{arch}",
        "{debian_arch}",
        "{variant}",
        "{image}",
        "{platform}",
        "{out}",
        "{nope}",
        "{dsit}",
        "{é}",
        "{日本}",
        "{",
        "}",
        "{{",
        "}}",
        "rootfs/",
        "rootfs-",
        ".tar",
        "/",
        "..",
        "-",
        "_",
        ".",
        " ",
        "\t",
        "é",
        "日本",
        "🦀",
        "\\",
        "\"",
        "'",
        "a",
        "bookworm",
        "amd64",
        "latest",
        "",
    ])
}

fn template() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "rootfs/{dist}/{arch}",
            "rootfs-{arch}.tar",
            "./mkrootfs {dist} {debian_arch} {out}.tar",
            "{dist}",
            "{dist}-{arch}",
            "{image}-{dist}",
            "é{nope}",
            "日本/{debian_arch}",
            "{dist",
            "🦀}{",
        ])
        .prop_map(String::from),
        5 => prop::collection::vec(piece(), 0..7).prop_map(|v| v.concat()),
    ]
}

fn dist_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["bookworm", "trixie", "one", "é", "日本", "-x", "a b", ""])
            .prop_map(String::from),
        1 => template(),
    ]
}

fn arch_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "amd64", "arm64v8", "arm32v6", "arm32v7", "i386", "riscv64", "s390x", "amd46",
            "ärm64", "🦀", "",
        ])
        .prop_map(String::from),
        1 => template(),
    ]
}

/// Any TOML value, of any type: for keys that do not exist and for wrong types.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (template(), quote()).prop_map(|(s, q)| toml_str(&s, q)),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("1.5".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key_name(), inner), 0..3).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            }),
        ]
    })
}

fn key_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "dists",
        "dsts",
        "arches",
        "arch",
        "tags",
        "latest",
        "rootfs",
        "dir",
        "tar",
        "command",
        "cmd",
        "\"é\"",
        "\"日本\"",
        "x",
        "url",
    ])
    .prop_map(String::from)
}

fn str_array<S: Strategy<Value = String>>(item: S) -> impl Strategy<Value = String> {
    (prop::collection::vec((item, quote()), 0..5)).prop_map(|v| {
        let items: Vec<String> = v.iter().map(|(s, q)| toml_str(s, *q)).collect();
        format!("[{}]", items.join(", "))
    })
}

/// A value for a given key: usually the right type, sometimes anything.
fn value_for(key: &'static str) -> BoxedStrategy<String> {
    let right: BoxedStrategy<String> = match key {
        "dists" => str_array(dist_name()).boxed(),
        "arches" => str_array(arch_name()).boxed(),
        "tags" | "inputs" | "cmd" | "env" | "entrypoint" => str_array(template()).boxed(),
        "registries" => str_array(
            prop::sample::select(vec!["local", "lokal", "hub", "é", ""]).prop_map(String::from),
        )
        .boxed(),
        "latest" => (dist_name(), quote())
            .prop_map(|(s, q)| toml_str(&s, q))
            .boxed(),
        "created" => (
            prop::sample::select(vec![
                "2024-06-01T00:00:00Z",
                "1969-12-31T23:59:59Z",
                "2024-13-01T00:00:00Z",
                "source-date-epoch",
                "git",
                "yesterday",
                "é",
                "",
            ]),
            quote(),
        )
            .prop_map(|(s, q)| toml_str(s, q))
            .boxed(),
        "compression" => (
            prop::sample::select(vec!["gzip", "zstd", "lz4", "ü", ""]),
            quote(),
        )
            .prop_map(|(s, q)| toml_str(s, q))
            .boxed(),
        "url" => (
            prop::sample::select(vec![
                "127.0.0.1:5000/ns",
                "https://registry.example/é",
                "host/UPPER",
                "",
                " ",
                "http://",
                "h/a//b",
            ]),
            quote(),
        )
            .prop_map(|(s, q)| toml_str(s, q))
            .boxed(),
        "insecure" | "platform_check" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        "timeout" => (
            prop::sample::select(vec!["10m", "1h 30m", "soon", "é", ""]),
            quote(),
        )
            .prop_map(|(s, q)| toml_str(s, q))
            .boxed(),
        "owners" => (
            prop::sample::select(vec!["root", "preserve", "nobody", "é"]),
            quote(),
        )
            .prop_map(|(s, q)| toml_str(s, q))
            .boxed(),
        "rootfs" => rootfs().boxed(),
        "config" => table(vec![
            ("cmd", 0.6),
            ("env", 0.3),
            ("entrypoint", 0.2),
            ("bogus", 0.05),
        ])
        .prop_map(|kv| inline_table(&kv))
        .boxed(),
        "annotations" => prop::collection::vec((template(), quote()), 0..3)
            .prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .enumerate()
                    .map(|(i, (v, q))| format!("\"k{i}é\" = {}", toml_str(&v, q)))
                    .collect();
                format!("{{ {} }}", body.join(", "))
            })
            .boxed(),
        _ => any_value().boxed(),
    };
    prop_oneof![50 => right, 1 => any_value()].boxed()
}

fn inline_table(kv: &[(&str, String)]) -> String {
    let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", body.join(", "))
}

/// `rootfs = { ... }`: usually exactly one source kind, sometimes none or two.
fn rootfs() -> impl Strategy<Value = String> {
    let kinds = prop_oneof![
        1 => Just(vec![]),
        12 => prop::sample::select(vec!["dir", "tar", "command"]).prop_map(|k| vec![k]),
        1 => prop::sample::subsequence(vec!["dir", "tar", "command"], 2..=3),
    ];
    let extra = table(vec![
        ("inputs", 0.3),
        ("timeout", 0.2),
        ("owners", 0.2),
        ("bogus", 0.03),
    ]);
    (
        kinds,
        prop::collection::vec((template(), quote()), 3),
        extra,
    )
        .prop_map(|(kinds, tpls, extra)| {
            let mut all: Vec<(&str, String)> = kinds
                .into_iter()
                .zip(tpls)
                .map(|(k, (t, q))| (k, toml_str(&t, q)))
                .collect();
            all.extend(extra);
            inline_table(&all)
        })
}

/// A table's keys, each present with its probability, in order, with values.
fn table(keys: Vec<(&'static str, f64)>) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let present: Vec<_> = keys
        .into_iter()
        .map(|(k, p)| prop::bool::weighted(p).prop_map(move |b| b.then_some(k)))
        .collect();
    present.prop_flat_map(|keys| {
        keys.into_iter()
            .flatten()
            .map(|k| value_for(k).prop_map(move |v| (k, v)))
            .collect::<Vec<_>>()
    })
}

fn table_name(names: Vec<&'static str>) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(names).prop_map(String::from),
        1 => prop::sample::select(vec!["a.b", "\"é\"", "UPPER", "\"x y\"", "\"\""])
            .prop_map(String::from),
        1 => (template(), quote()).prop_map(|(s, q)| match q {
            // Table names are single-line strings.
            Quote::MultiBasic | Quote::MultiLiteral => toml_str(&s, Quote::Basic),
            q => toml_str(&s, q),
        }),
    ]
}

fn body(kv: Vec<(&'static str, String)>) -> String {
    kv.into_iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

fn settings_section() -> impl Strategy<Value = String> {
    table(vec![
        ("created", 0.5),
        ("compression", 0.3),
        ("out", 0.1),
        ("cache", 0.1),
        ("bogus", 0.05),
    ])
    .prop_map(|kv| format!("[settings]\n{}", body(kv)))
}

/// A table header and its body.
fn registry_section() -> impl Strategy<Value = (String, String)> {
    (
        table_name(vec!["local", "hub"]),
        table(vec![("url", 0.9), ("insecure", 0.3), ("bogus", 0.05)]),
    )
        .prop_map(|(n, kv)| (format!("[registries.{n}]"), body(kv)))
}

fn image_section() -> impl Strategy<Value = (String, String)> {
    (
        table_name(vec!["hello", "minideb", "a", "\"x/y\""]),
        table(vec![
            ("dists", 0.9),
            ("arches", 0.9),
            ("tags", 0.4),
            ("latest", 0.3),
            ("registries", 0.2),
            ("rootfs", 0.9),
            ("config", 0.2),
            ("annotations", 0.2),
            ("platform_check", 0.1),
            ("bogus", 0.05),
        ]),
    )
        .prop_map(|(n, kv)| (format!("[images.{n}]"), body(kv)))
}

fn manifest_sections() -> impl Strategy<Value = Vec<String>> {
    (
        prop::option::weighted(0.6, settings_section()),
        prop::collection::vec(registry_section(), 0..2),
        prop::collection::vec(image_section(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(settings, registries, images, reverse)| {
            // Mostly one table per name (a repeated header is one syntax error, found
            // already), sometimes not.
            let mut headers = HashSet::new();
            let tables = registries.into_iter().chain(images);
            let mut all: Vec<String> = settings
                .into_iter()
                .chain(tables.filter_map(|(header, body)| {
                    (headers.insert(header.clone()) || header.len() % 5 == 0)
                        .then(|| format!("{header}\n{body}"))
                }))
                .collect();
            if reverse {
                all.reverse();
            }
            all
        })
}

/// A small edit of the text: cut it, insert a character or delete one.
#[derive(Debug, Clone)]
enum Edit {
    None,
    Cut(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        14 => Just(Edit::None),
        1 => any::<prop::sample::Index>().prop_map(Edit::Cut),
        2 => (
            any::<prop::sample::Index>(),
            prop_oneof![
                prop::sample::select(vec!['"', '\'', '{', '}', '[', ']', '=', '\n', '\\', 'é', '🦀']),
                any::<char>(),
            ]
        )
            .prop_map(|(i, c)| Edit::Insert(i, c)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Delete),
    ]
}

fn apply(text: String, edit: &Edit) -> String {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    match edit {
        Edit::None => text,
        Edit::Cut(i) => text[..*i.get(&bounds)].to_string(),
        Edit::Insert(i, c) => {
            let at = *i.get(&bounds);
            format!("{}{c}{}", &text[..at], &text[at..])
        }
        Edit::Delete(i) => {
            let at = *i.get(&bounds);
            let next = text[at..].chars().next().map_or(0, char::len_utf8);
            format!("{}{}", &text[..at], &text[at + next..])
        }
    }
}

fn manifest_text() -> impl Strategy<Value = String> {
    (manifest_sections(), edit()).prop_map(|(sections, edit)| apply(sections.join("\n"), &edit))
}

/// Parses `text`; on error renders it and checks every span and location.
fn check_manifest(text: &str) -> Result<(), TestCaseError> {
    let result = parse(
        Path::new(MANIFEST_PATH),
        text,
        manifest_root(),
        &LoadOptions::default(),
    );
    let err = match result {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let rendered = err.to_string();
    let ManifestError::Invalid(diags) = &err else {
        return Err(TestCaseError::fail(format!("not a diagnostic: {err:?}")));
    };
    prop_assert!(!diags.items.is_empty(), "an error with no diagnostics");
    prop_assert!(!rendered.trim().is_empty());
    for d in &diags.items {
        let Some(span) = &d.span else { continue };
        prop_assert!(
            span.start <= span.end
                && span.end <= text.len()
                && text.is_char_boundary(span.start)
                && text.is_char_boundary(span.end),
            "diagnostic {:?} has span {span:?}, not a char range of the {}-byte text",
            d.message,
            text.len()
        );
        let location = diags.source.location(Some(span));
        let (line, col) = location
            .strip_prefix(MANIFEST_PATH)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(l, c)| Some((l.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
            .ok_or_else(|| {
                TestCaseError::fail(format!("location {location:?} is not file:line:col"))
            })?;
        prop_assert!(line >= 1 && col >= 1, "{location}");
        prop_assert!(
            line <= text.split('\n').count(),
            "{location}: past the last line"
        );
        prop_assert!(
            rendered.contains(&format!("--> {location}")),
            "{location} missing from:\n{rendered}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn generated_manifests_never_panic(text in manifest_text()) {
        check_manifest(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics_the_manifest_loader(text in "(\\PC|\n|\t|\\{|\\}|\\[|\\]|\"|=){0,64}") {
        check_manifest(&text)?;
    }
}

/// A wrong-typed value with a multi-byte character in it (`rootfs = "é..."`, a
/// string where a table belongs) and a missing key in the same table: the
/// structure check reads a copy with the value replaced by an ASCII placeholder
/// of the same byte length, and the table's span it reported ended inside the
/// `é` of the original text (found by `generated_manifests_never_panic`).
#[test]
fn a_span_from_the_structure_check_ends_on_a_character_boundary() {
    check_manifest("[images.hello]\narches = []\nrootfs = \"\u{e9}{nope}\"\n").unwrap();
}

/// A template error inside a string written with escapes or as a multi-line string:
/// the loader turned the offset in the decoded value into an offset in the text as if
/// the value were written verbatim after one quote, landing inside a multi-byte
/// character, and rendering the error then panicked slicing the text there.
#[test]
fn template_errors_in_escaped_and_multiline_strings_render() {
    for text in [
        // `\\` is two bytes in the text and one in the value.
        "[images.a]\ndists = [\"x\"]\narches = [\"amd64\"]\nrootfs = { dir = \"\\\\é{nope}\" }\n",
        // A multi-line string starts three quotes and a newline in.
        "[images.a]\ndists = [\"x\"]\narches = [\"amd64\"]\nrootfs = { dir = \"\"\"\néé{nope}\"\"\" }\n",
        "[images.a]\ndists = [\"x\"]\narches = [\"amd64\"]\ntags = ['''\néé{dsit}''']\nrootfs = { dir = \"r\" }\n",
        // `\t` is two bytes in the text and one in the value.
        "[images.a]\ndists = [\"x\"]\narches = [\"amd64\"]\nrootfs = { dir = \"\\t日日{nope}\" }\n",
    ] {
        check_manifest(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn selector_parse_never_panics_and_round_trips(s in "(\\PC|:|/|\n){0,24}") {
        if let Ok(sel) = Selector::parse(&s) {
            let shown = sel.to_string();
            prop_assert_eq!(Selector::parse(&shown).ok(), Some(sel));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tar streams
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Symlink,
    /// A hard link to the name of entry `i` of the archive (or a made-up name).
    Hardlink(Option<prop::sample::Index>),
    Char,
    Block,
    Fifo,
    /// A PAX extended header giving the next entry this path.
    PaxPath,
    /// A PAX global header.
    PaxGlobal,
    /// Any other type flag.
    Other(u8),
}

#[derive(Debug, Clone)]
struct Member {
    name: Vec<u8>,
    kind: Kind,
    link: Vec<u8>,
    data: Vec<u8>,
    /// The size the header claims, when it is not the data's length.
    size_lie: Option<u64>,
    mode: u32,
    uid: u64,
    mtime: u64,
}

fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let component = prop_oneof![
        24 => prop::sample::select(vec!["a", "b", "etc", "usr", "bin", "sh", "é", "日本"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => Just(b"..".to_vec()),
        2 => prop::sample::select(vec![".", ""]).prop_map(|s| s.as_bytes().to_vec()),
        2 => (1usize..160).prop_map(|n| vec![b'x'; n]),
        2 => prop::collection::vec(1u8..=255, 1..4).prop_map(|v| {
            v.into_iter().map(|b| if b == b'/' { b'_' } else { b }).collect()
        }),
    ];
    (
        prop::sample::select(vec!["", "", "", "", "", "", "/", "./", "./", "../", "//"]),
        prop::collection::vec(component, 1..5),
        any::<bool>(),
    )
        .prop_map(|(prefix, comps, slash)| {
            let mut out = prefix.as_bytes().to_vec();
            out.extend(comps.join(&b'/'));
            if slash {
                out.push(b'/');
            }
            out
        })
}

fn member() -> impl Strategy<Value = Member> {
    let kind = prop_oneof![
        10 => Just(Kind::File),
        6 => Just(Kind::Dir),
        3 => Just(Kind::Symlink),
        3 => prop::option::weighted(0.9, any::<prop::sample::Index>()).prop_map(Kind::Hardlink),
        1 => Just(Kind::Char),
        1 => Just(Kind::Block),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::PaxPath),
        1 => Just(Kind::PaxGlobal),
        1 => prop::sample::select(vec![b'L', b'K', b'S', b'7', b'V', b'M', b'N', b'g', b'Z', 0])
            .prop_map(Kind::Other),
    ];
    (
        path_bytes(),
        kind,
        path_bytes(),
        prop::collection::vec(any::<u8>(), 0..700),
        prop::option::weighted(
            0.1,
            prop_oneof![0u64..2048, Just(u64::MAX / 2), Just(1 << 40)],
        ),
        prop_oneof![Just(0o755u32), Just(0o644), any::<u32>()],
        prop_oneof![Just(0u64), Just(1000), any::<u64>()],
        prop_oneof![Just(0u64), Just(1_600_000_000), Just(1 << 40), any::<u64>()],
    )
        .prop_map(
            |(name, kind, link, data, size_lie, mode, uid, mtime)| Member {
                name,
                kind,
                link,
                data,
                size_lie,
                mode,
                uid,
                mtime,
            },
        )
}

/// A header with `name` and `link` written into it as-is (the `tar` crate's builder
/// refuses `..`, which is what these tests need), preceded by GNU long-name members
/// where they do not fit.
fn header(out: &mut Vec<u8>, name: &[u8], link: &[u8], typeflag: u8, size: u64, m: &Member) {
    for (bytes, flag) in [(link, b'K'), (name, b'L')] {
        if bytes.len() > 100 {
            let mut long = bytes.to_vec();
            long.push(0);
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(tar::EntryType::new(flag));
            h.set_size(long.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&long);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    let mut h = tar::Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    let n = link.len().min(100);
    h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    h.set_entry_type(tar::EntryType::new(typeflag));
    h.set_mode(m.mode);
    h.set_uid(m.uid);
    h.set_gid(m.uid / 3);
    h.set_mtime(m.mtime);
    h.set_size(size);
    if matches!(typeflag, b'3' | b'4') {
        let _ = h.set_device_major(m.mode);
        let _ = h.set_device_minor(m.mode >> 8);
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> key=value\n", where <len> counts itself.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn build_tar(members: &[Member], end_marker: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (pos, m) in members.iter().enumerate() {
        let (typeflag, link, data): (u8, Vec<u8>, Vec<u8>) = match &m.kind {
            Kind::File => (b'0', Vec::new(), m.data.clone()),
            Kind::Dir => (b'5', Vec::new(), Vec::new()),
            Kind::Symlink => (b'2', m.link.clone(), Vec::new()),
            // Usually an earlier member's name, as archivers write them.
            Kind::Hardlink(Some(i)) if pos > 0 => {
                (b'1', members[i.index(pos)].name.clone(), Vec::new())
            }
            Kind::Hardlink(_) => (b'1', m.link.clone(), Vec::new()),
            Kind::Char => (b'3', Vec::new(), Vec::new()),
            Kind::Block => (b'4', Vec::new(), Vec::new()),
            Kind::Fifo => (b'6', Vec::new(), Vec::new()),
            Kind::PaxPath => (b'x', Vec::new(), pax_record("path", &m.link)),
            Kind::PaxGlobal => (b'g', Vec::new(), pax_record("comment", &m.data)),
            Kind::Other(flag) => (*flag, m.link.clone(), m.data.clone()),
        };
        let size = m.size_lie.unwrap_or(data.len() as u64);
        header(&mut out, &m.name, &link, typeflag, size, m);
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    if end_marker {
        out.resize(out.len() + 1024, 0);
    }
    out
}

#[derive(Debug, Clone)]
struct TarCase {
    members: Vec<Member>,
    end_marker: bool,
    /// Cut the stream (after compression, if any) here.
    cut: Option<prop::sample::Index>,
    gzip: bool,
    mtime: u64,
}

fn tar_case() -> impl Strategy<Value = TarCase> {
    (
        prop::collection::vec(member(), 1..10),
        prop::bool::weighted(0.9),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
        any::<bool>(),
        prop_oneof![Just(0u64), Just(1_717_200_000), any::<u64>()],
    )
        .prop_map(|(members, end_marker, cut, gzip, mtime)| TarCase {
            members,
            end_marker,
            cut,
            gzip,
            mtime,
        })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn tar_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("imgraph-properties-tar-")
            .tempdir()
            .expect("temp dir")
    })
    .path()
}

/// Writes `bytes` as a tarball source and returns the layer or the error message.
fn layer(bytes: &[u8], mtime: u64, threads: usize) -> Result<Vec<u8>, String> {
    // Test threads run cases at once: one file (and spool dir) per call.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path: PathBuf = tar_dir().join(format!("src-{n}.tar"));
    std::fs::write(&path, bytes).unwrap();
    let opts = LayerOptions {
        mtime,
        compression: Compression::Gzip,
        threads,
        temp_dir: tar_dir().to_path_buf(),
    };
    let mut out = Vec::new();
    let result = write_layer(&LayerSource::Tar { path: path.clone() }, &opts, &mut out);
    std::fs::remove_file(&path).unwrap();
    match result {
        Ok(_) => Ok(out),
        Err(err) => {
            // Every level of the error renders.
            let mut msg = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            // Runs differ in the source's file name only.
            Err(msg.replace(&path.display().to_string(), "SOURCE"))
        }
    }
}

/// Reads a layer back: no absolute path, no `..`, no path twice, every hard link to an
/// earlier entry, nothing below a non-directory.
fn check_layer(layer: &[u8]) -> Result<(), TestCaseError> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .read_to_end(&mut tar)
        .map_err(|e| TestCaseError::fail(format!("layer is not gzip: {e}")))?;
    let mut archive = tar::Archive::new(&tar[..]);
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    let entries = archive
        .entries()
        .map_err(|e| TestCaseError::fail(format!("layer is not a tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| TestCaseError::fail(format!("layer entry: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        prop_assert!(
            !raw.starts_with(b"/"),
            "absolute path {shown:?} in the layer"
        );
        let path: Vec<u8> = raw.strip_suffix(b"/").unwrap_or(&raw).to_vec();
        prop_assert!(!path.is_empty(), "an entry for the root in the layer");
        prop_assert!(
            path.split(|b| *b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b"..")),
            "unnormalised path {shown:?} in the layer"
        );
        prop_assert!(seen.insert(path.clone()), "{shown:?} twice in the layer");
        if let Some(cut) = path.iter().rposition(|b| *b == b'/') {
            let parent = &path[..cut];
            prop_assert!(
                !seen.contains(parent) || dirs.contains(parent),
                "{shown:?} is below a non-directory"
            );
        }
        let etype = entry.header().entry_type();
        if etype == tar::EntryType::Directory {
            dirs.insert(path.clone());
        }
        if etype == tar::EntryType::Link {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            prop_assert!(
                seen.contains(&target) && target != path,
                "hard link {shown:?} -> {:?} is not to an earlier entry",
                String::from_utf8_lossy(&target)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_tar_streams_never_panic_the_layer_writer(case in tar_case()) {
        let tar = build_tar(&case.members, case.end_marker);
        let mut source = if case.gzip { gzip(&tar) } else { tar.clone() };
        if let Some(cut) = &case.cut {
            source.truncate(cut.index(source.len() + 1));
        }
        let first = layer(&source, case.mtime, 1);
        let second = layer(&source, case.mtime, 2);
        match (&first, &second) {
            (Ok(a), Ok(b)) => prop_assert!(a == b, "two runs gave different layers"),
            (Err(a), Err(b)) => prop_assert_eq!(a, b, "two runs failed differently"),
            _ => prop_assert!(false, "one run failed, the other not: {first:?} / {second:?}"),
        }
        if let Ok(bytes) = &first {
            check_layer(bytes)?;
        }
        // Whole archives: the same entries give the same layer, compressed or not.
        if case.cut.is_none() && case.end_marker {
            let other = if case.gzip { tar } else { gzip(&tar) };
            if let (Ok(a), Ok(b)) = (&first, layer(&other, case.mtime, 1)) {
                prop_assert!(*a == b, "plain and gzip sources gave different layers");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_layer_writer(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        gz in any::<bool>(),
    ) {
        let source = if gz { gzip(&bytes) } else { bytes };
        if let Ok(layer) = layer(&source, 0, 1) {
            check_layer(&layer)?;
        }
    }
}
