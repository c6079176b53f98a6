//! `docker load` tarballs: `manifest.json` with `Config`, `RepoTags`, `Layers`
//! (the format nixpkgs' dockerTools moved to), written deterministically.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use super::image::canonical_json;
use crate::cache::{Descriptor, Store};
use crate::manifest::Compression;

/// Writing the archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Writing the output.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The output path.
        path: std::path::PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading a blob.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// The layer decompressed to a size other than recorded.
    #[error("layer {digest} decompressed to {found} bytes, expected {expected}")]
    LayerSize {
        /// The compressed layer.
        digest: String,
        /// Recorded uncompressed size.
        expected: u64,
        /// What came out.
        found: u64,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    config: String,
    repo_tags: &'a [String],
    layers: Vec<String>,
}

/// What goes in: one platform image.
pub struct ArchiveImage<'a> {
    /// Image config blob.
    pub config: &'a Descriptor,
    /// Compressed layer blob.
    pub layer: &'a Descriptor,
    /// Its compression.
    pub compression: Compression,
    /// sha256 of the uncompressed layer.
    pub diff_id: &'a str,
    /// Uncompressed size.
    pub uncompressed_size: u64,
    /// `name:tag` references for `RepoTags`.
    pub repo_tags: &'a [String],
}

/// Writes the archive to `path` (atomically).
pub fn write(store: &Store, img: &ArchiveImage<'_>, path: &Path) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    let mut builder = tar::Builder::new(io::BufWriter::new(tmp));
    let config_name = format!("{}.json", img.config.digest.trim_start_matches("sha256:"));
    let layer_name = format!("{}/layer.tar", img.diff_id.trim_start_matches("sha256:"));
    let manifest = canonical_json(&[Entry {
        config: config_name.clone(),
        repo_tags: img.repo_tags,
        layers: vec![layer_name.clone()],
    }]);
    append(
        &mut builder,
        "manifest.json",
        manifest.len() as u64,
        &manifest[..],
    )
    .map_err(io_err)?;
    let config = store.read_blob(&img.config.digest)?;
    append(&mut builder, &config_name, config.len() as u64, &config[..]).map_err(io_err)?;

    store.verify_blob(&img.layer.digest)?;
    let file = File::open(store.blob_path(&img.layer.digest)).map_err(io_err)?;
    let reader: Box<dyn Read> = match img.compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
        Compression::Zstd => Box::new(zstd::Decoder::new(file).map_err(io_err)?),
    };
    let mut counted = Counted {
        inner: reader.take(img.uncompressed_size),
        n: 0,
    };
    append(
        &mut builder,
        &layer_name,
        img.uncompressed_size,
        &mut counted,
    )
    .map_err(io_err)?;
    if counted.n != img.uncompressed_size {
        return Err(ArchiveError::LayerSize {
            digest: img.layer.digest.clone(),
            expected: img.uncompressed_size,
            found: counted.n,
        });
    }
    let mut out = builder.into_inner().map_err(io_err)?;
    out.flush().map_err(io_err)?;
    let tmp = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append(&h, data)
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
