//! Reading a root filesystem, from a directory or from a tarball, as an ordered list of
//! entries, and fingerprinting it so that an unchanged rootfs is recognised without
//! rebuilding its layer.

pub mod command;
pub mod fingerprint;
pub mod kept;
pub mod tar_source;
pub mod walk;

pub use command::CommandError;
pub use fingerprint::{
    diff, fingerprint_dir, fingerprint_file, FingerprintError, FingerprintOptions, PathChange,
    StatCache, TreeFingerprint,
};

#[cfg(test)]
pub(crate) mod test_fixture;

pub use crate::manifest::Owners;

/// What an entry is, with the data that goes into its tar header.
///
/// Shared by the directory walker and the tarball reader so that both feed the layer
/// writer (and the fingerprint) the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose bytes go into the layer.
    File,
    /// A directory; written with a trailing `/`.
    Dir,
    /// A symbolic link; the target is data inside the image and is never followed.
    Symlink {
        /// The link target, byte for byte.
        target: Vec<u8>,
    },
    /// Another name for an earlier (in sorted order) regular file of the same source.
    Hardlink {
        /// The earlier entry's path, relative to the root.
        target: Vec<u8>,
    },
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

impl EntryKind {
    /// One byte that names the kind in canonical encodings (fingerprints); stable forever.
    pub(crate) fn tag(&self) -> u8 {
        match self {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink { .. } => b'l',
            EntryKind::Hardlink { .. } => b'h',
            EntryKind::CharDevice { .. } => b'c',
            EntryKind::BlockDevice { .. } => b'b',
            EntryKind::Fifo => b'p',
        }
    }
}

/// One entry of a rootfs, as it will be written into the layer (before owner and mtime
/// policies are applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root, `/`-separated, without leading `./` or `/` and without
    /// a trailing `/`, as raw bytes (Linux paths need not be UTF-8).
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Content length for regular files; 0 for every other kind.
    pub size: u64,
    /// Modification time in seconds since the epoch (may be negative on odd trees).
    pub mtime: i64,
}

impl Entry {
    /// The path for messages: lossless for UTF-8, escaped otherwise.
    pub fn display_path(&self) -> String {
        display_bytes(&self.path)
    }
}

/// Renders raw path bytes for humans and for the fingerprint's path keys.
pub(crate) fn display_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
