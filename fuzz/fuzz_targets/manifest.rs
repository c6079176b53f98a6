//! `images.toml` loading: any bytes (read as UTF-8, lossily) must parse or give an
//! error, and rendering that error (file:line:col and a caret snippet sliced out of the
//! text) must not panic either. Selectors are parsed from the same bytes.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imgraph::manifest::{parse, LoadOptions, ManifestError, Selector};
use libfuzzer_sys::fuzz_target;

/// A project folder with the rootfs dirs and tarballs the seed manifests name, so that
/// inputs get past "does not exist" into the rest of validation.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("imgraph-fuzz-manifest")
            .tempdir()
            .expect("temp dir")
            .keep();
        for arch in ["amd64", "arm64v8", "arm32v7", "i386"] {
            std::fs::create_dir_all(dir.join("images/hello").join(arch)).unwrap();
            std::fs::create_dir_all(dir.join("rootfs/bookworm").join(arch)).unwrap();
            std::fs::write(dir.join(format!("rootfs-{arch}.tar")), b"").unwrap();
        }
        std::fs::write(dir.join("mkrootfs"), b"#!/bin/sh\n").unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(
        Path::new("fuzz/images.toml"),
        &text,
        root(),
        &LoadOptions::default(),
    ) {
        Ok(manifest) => {
            let _ = format!("{manifest:?}");
        }
        Err(err) => {
            let rendered = err.to_string();
            if let ManifestError::Invalid(diags) = &err {
                assert!(!diags.items.is_empty(), "an error with no diagnostics");
                for d in &diags.items {
                    let _ = diags.source.location(d.span.as_ref());
                    let _ = diags.source.render(d);
                }
            }
            std::hint::black_box(rendered);
        }
    }
    for line in text.lines().take(4) {
        if let Ok(sel) = Selector::parse(line) {
            let again = Selector::parse(&sel.to_string()).expect("a selector's Display parses");
            assert_eq!(again, sel);
        }
    }
});
