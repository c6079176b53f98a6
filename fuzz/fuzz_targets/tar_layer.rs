//! The whole tarball → layer path: any bytes, as a rootfs tarball source, must give a
//! layer or an error, never a panic; a layer that is written never has an entry with a
//! `..` component or an absolute path (nor a hard link pointing at one).
//!
//! Each input is tried three ways: as-is; with every tar header checksum fixed up (a
//! fuzzer cannot guess checksums, so without this nearly every mutation dies at the
//! first header); and that, gzip-compressed (the streaming, spooled reader).

#![no_main]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use imgraph::manifest::Compression;
use imgraph::oci::layer::{write_layer, LayerOptions, LayerSource};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("imgraph-fuzz-tar")
            .tempdir()
            .expect("temp dir")
            .keep()
    })
}

/// Walks the archive the way a tar reader does (header, then the content rounded up to
/// 512 bytes) and recomputes each header's checksum.
fn fix_checksums(buf: &mut [u8]) {
    let mut off = 0usize;
    while off + 512 <= buf.len() {
        let block = &mut buf[off..off + 512];
        off += 512;
        if block.iter().all(|b| *b == 0) {
            continue;
        }
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(block);
        h.set_cksum();
        block.copy_from_slice(h.as_bytes());
        let size = h.entry_size().unwrap_or(0);
        let Some(step) = size
            .checked_add(511)
            .map(|s| s & !511)
            .and_then(|s| usize::try_from(s).ok())
        else {
            return;
        };
        off = match off.checked_add(step) {
            Some(o) => o,
            None => return,
        };
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn check_layer(layer: &[u8]) {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .read_to_end(&mut tar)
        .expect("the layer is valid gzip");
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().expect("the layer is a tar") {
        let entry = entry.expect("every layer entry reads back");
        let path = entry.path_bytes().into_owned();
        assert!(
            !path.starts_with(b"/"),
            "absolute path in the layer: {path:?}"
        );
        assert!(
            !path.split(|b| *b == b'/').any(|c| c == b".."),
            "`..` in the layer: {path:?}"
        );
        if entry.header().entry_type() == tar::EntryType::Link {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            assert!(!target.starts_with(b"/"), "absolute hard link: {target:?}");
            assert!(
                !target.split(|b| *b == b'/').any(|c| c == b".."),
                "hard link with `..`: {target:?}"
            );
        }
    }
}

fn layer(bytes: &[u8], name: &str) {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    let opts = LayerOptions {
        mtime: 1_717_200_000,
        compression: Compression::Gzip,
        threads: 1,
        temp_dir: dir().to_path_buf(),
    };
    let mut out = Vec::new();
    match write_layer(&LayerSource::Tar { path }, &opts, &mut out) {
        Ok(_) => check_layer(&out),
        Err(err) => {
            let _ = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                let _ = s.to_string();
                source = s.source();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    layer(data, "as-is.tar");
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if fixed != data {
        layer(&fixed, "fixed.tar");
    }
    layer(&gzip(&fixed), "fixed.tar.gz");
});
