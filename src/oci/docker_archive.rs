//! `docker load` tarballs: `manifest.json` with `Config`, `RepoTags`, `Layers`
//! (the format nixpkgs' dockerTools moved to), written deterministically.

use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use super::image::canonical_json;
use crate::atomic_file::AtomicFile;
use crate::cache::{Descriptor, Store};

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
    /// `-o` names a folder.
    #[error("{} is a folder: a docker archive is one file; name a file (e.g. image.tar) or use --format oci for a layout folder", path.display())]
    IsAFolder {
        /// The folder.
        path: std::path::PathBuf,
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
    /// sha256 of the uncompressed layer.
    pub diff_id: &'a str,
    /// Uncompressed size.
    pub uncompressed_size: u64,
    /// `name:tag` references for `RepoTags`.
    pub repo_tags: &'a [String],
}

/// Where `export --format docker-archive` writes.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// Standard output (`-o -`), as `docker save` does.
    Stdout,
    /// A path: a new or regular file is replaced atomically; a fifo or device
    /// (`/dev/stdout`) is written in place; a folder is refused.
    Path(&'a Path),
}

/// Writes the archive to `dest`. Returns whether an existing regular file was
/// replaced, so the caller can say so.
pub fn write(
    store: &Store,
    img: &ArchiveImage<'_>,
    dest: Destination<'_>,
) -> Result<bool, ArchiveError> {
    let path = match dest {
        Destination::Stdout => {
            let stdout = io::stdout().lock();
            let _stdout = write_to(store, img, stdout, Path::new("<stdout>"))?;
            return Ok(false);
        }
        Destination::Path(p) => p,
    };
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    match existing {
        Some(m) if m.is_dir() => {
            return Err(ArchiveError::IsAFolder {
                path: path.to_path_buf(),
            })
        }
        Some(m) if !m.is_file() => {
            // A fifo or a device: there is nothing to replace atomically.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err)?;
            write_to(store, img, file, path)?;
            return Ok(false);
        }
        _ => {}
    }
    let tmp = AtomicFile::create(path).map_err(io_err)?;
    write_to(store, img, tmp, path)?
        .commit(true)
        .map_err(io_err)?;
    Ok(existing.is_some())
}

/// Streams the archive into `sink`; `path` names it in errors.
fn write_to<W: Write>(
    store: &Store,
    img: &ArchiveImage<'_>,
    sink: W,
    path: &Path,
) -> Result<W, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = tar::Builder::new(io::BufWriter::new(sink));
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
    let reader = crate::decompress::open(&store.blob_path(&img.layer.digest)).map_err(io_err)?;
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
    out.into_inner().map_err(|e| io_err(e.into_error()))
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
