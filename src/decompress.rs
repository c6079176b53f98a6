//! Reading compressed streams, in one place: tarball rootfs sources, layers read
//! back from the cache or a registry (verify, docker archives, the ELF census), and
//! the members of a `.deb`.
//!
//! The format is told by the stream's first bytes, never by a file name or a media
//! type (extensions lie, and a registry may serve a layer under a generic type).
//! Every decoder reads concatenated members/streams/frames to the end: imgraph's own
//! gzip layers are a sequence of members, and `pixz`/`zstdmt` write several streams.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// A compression format, sniffed from the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Not compressed (or not a format we know).
    Plain,
    /// gzip (RFC 1952).
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
    /// bzip2: recognised so it can be refused by name; not decoded.
    Bzip2,
}

/// Bytes [`Format::sniff`] looks at.
pub const MAGIC_LEN: usize = 6;

impl Format {
    /// The format whose magic `head` starts with.
    pub fn sniff(head: &[u8]) -> Format {
        if head.starts_with(&[0x1f, 0x8b]) {
            Format::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Format::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Format::Zstd
        } else if head.starts_with(b"BZh") {
            Format::Bzip2
        } else {
            Format::Plain
        }
    }

    /// The format of the file at `path`.
    pub fn of_file(path: &Path) -> io::Result<Format> {
        let mut head = Vec::with_capacity(MAGIC_LEN);
        File::open(path)?
            .take(MAGIC_LEN as u64)
            .read_to_end(&mut head)?;
        Ok(Format::sniff(&head))
    }

    /// Its usual name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Plain => "uncompressed",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Bzip2 => "bzip2",
        }
    }
}

/// Decodes `input` as `format`, reading every member/stream/frame to the end.
pub fn decoder<'a>(format: Format, input: impl BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Plain => Box::new(input),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Format::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
        Format::Zstd => Box::new(zstd::Decoder::with_buffer(input)?),
        Format::Bzip2 => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "bzip2 is not supported: recompress with gzip, xz or zstd",
            ))
        }
    })
}

/// Opens a file and decodes it by its magic: what a layer or tarball holds.
pub fn open(path: &Path) -> io::Result<Box<dyn Read>> {
    let format = Format::of_file(path)?;
    decoder(
        format,
        BufReader::with_capacity(256 * 1024, File::open(path)?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn every_format_round_trips_across_members() {
        let a = b"first member ".repeat(100);
        let b = b"second".to_vec();
        let mut gz = Vec::new();
        for part in [&a, &b] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let mut zst = zstd::encode_all(&a[..], 1).unwrap();
        zst.extend(zstd::encode_all(&b[..], 1).unwrap());
        let mut xz = Vec::new();
        for part in [&a, &b] {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(part).unwrap();
            xz.extend(e.finish().unwrap());
        }
        let want = [a.clone(), b.clone()].concat();
        for (bytes, format) in [
            (gz, Format::Gzip),
            (zst, Format::Zstd),
            (xz, Format::Xz),
            (want.clone(), Format::Plain),
        ] {
            assert_eq!(Format::sniff(&bytes), format);
            let mut out = Vec::new();
            decoder(format, &bytes[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, want, "{format:?}");
        }
        assert_eq!(Format::sniff(b"BZh91AY"), Format::Bzip2);
        assert!(decoder(Format::Bzip2, &b"BZh"[..]).is_err());
    }
}
