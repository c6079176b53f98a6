//! Layer compression that is fast on every core yet byte-identical for any thread count.
//!
//! Gzip: the uncompressed stream is cut into fixed-size blocks and each block becomes
//! one complete gzip member, compressed by libdeflate; the members are written in order.
//! A sequence of members is one valid gzip file (RFC 1952 section 2.2) that every reader
//! decodes as a whole: GNU gzip, Python's `gzip`, Go's `compress/gzip` (multistream is
//! its default, and what containerd, skopeo and umoci use), pigz. Block boundaries depend
//! only on the input bytes, never on the thread count or timing, so the output is
//! reproducible. libdeflate is whole-buffer only, which is exactly what a block needs,
//! and it compresses smaller and about 1.5x faster than zlib at the same level
//! (measured: `scripts/bench.d/deflate-levels`, BENCHMARKS.md).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Errors of the compressors.
///
/// They travel inside `io::Error` (the compressors are `io::Write` adapters) and the
/// layer writer adds the entry being written.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// A deflate call failed; only a bug in the deflate backend could cause it.
    #[error("deflate failed on block {block}: {message}")]
    Deflate {
        /// Index of the block in the stream.
        block: u64,
        /// The backend's message.
        message: String,
    },
    /// A compression worker thread died (panicked).
    #[error("gzip worker thread died while compressing block {block}")]
    WorkerDied {
        /// Index of the block in the stream.
        block: u64,
    },
}

impl From<CompressError> for io::Error {
    fn from(e: CompressError) -> Self {
        io::Error::other(e)
    }
}

/// Uncompressed bytes per gzip block. 1 MiB keeps the per-member overhead (18 bytes of
/// header and trailer, and deflate's window starting empty) negligible and the memory
/// per in-flight block small.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;

/// Default libdeflate level for layers. On a 178 MB Debian bookworm minbase rootfs in
/// 1 MiB blocks, level 6 gives 0.985x the size of `gzip -6 -n` (level 5: 0.990x, about
/// 20% less CPU). Changing it changes every digest.
pub const GZIP_LEVEL: u32 = 6;

/// Zstd level for layers: fixed so that output never depends on the machine.
pub const ZSTD_LEVEL: i32 = 3;

struct Job {
    index: u64,
    data: Vec<u8>,
    reply: SyncSender<Result<Done, CompressError>>,
}

struct Done {
    compressed: Vec<u8>,
}

/// Compresses one block into one complete gzip member (libdeflate writes no name and
/// mtime 0, so the bytes depend on the data and the level only).
fn deflate_block(level: u32, index: u64, data: &[u8]) -> Result<Done, CompressError> {
    #[cfg(test)]
    let _active = tests::Active::enter();
    let fail = |message: String| CompressError::Deflate {
        block: index,
        message,
    };
    let level =
        libdeflater::CompressionLvl::new(level as i32).map_err(|e| fail(format!("{e:?}")))?;
    let mut z = libdeflater::Compressor::new(level);
    let mut out = vec![0u8; z.gzip_compress_bound(data.len())];
    let n = z
        .gzip_compress(data, &mut out)
        .map_err(|e| fail(format!("{e:?}")))?;
    out.truncate(n);
    Ok(Done { compressed: out })
}

/// A gzip compressor writing to `W`, with `threads` deflate workers.
///
/// The output is the same for every thread count (see the module docs). At most
/// `2 * threads` blocks are in flight, so memory stays around `4 * threads` MiB.
pub struct GzipEncoder<W: Write> {
    inner: Option<W>,
    level: u32,
    buf: Vec<u8>,
    next_index: u64,
    pending: VecDeque<(u64, Receiver<Result<Done, CompressError>>)>,
    max_in_flight: usize,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> GzipEncoder<W> {
    /// A compressor at `level` using `threads` workers (0 or 1: compress on the caller's
    /// thread).
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let mut enc = GzipEncoder {
            inner: Some(inner),
            level,
            buf: Vec::with_capacity(GZIP_BLOCK_SIZE),
            next_index: 0,
            pending: VecDeque::new(),
            max_in_flight: 2 * threads.max(1),
            jobs: None,
            workers: Vec::new(),
        };
        if threads > 1 {
            let (tx, rx) = sync_channel::<Job>(threads);
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..threads {
                let rx = Arc::clone(&rx);
                enc.workers.push(std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => match guard.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let done = deflate_block(level, job.index, &job.data);
                    // The encoder may have been dropped after an error: nothing to do.
                    let _ = job.reply.send(done);
                }));
            }
            enc.jobs = Some(tx);
        }
        enc
    }

    fn inner(&mut self) -> &mut W {
        self.inner
            .as_mut()
            .expect("GzipEncoder used after finish() returned its writer")
    }

    fn write_out(&mut self, done: Done) -> io::Result<()> {
        self.inner().write_all(&done.compressed)
    }

    fn wait_front(&mut self) -> io::Result<()> {
        if let Some((index, rx)) = self.pending.pop_front() {
            let done = rx
                .recv()
                .map_err(|_| CompressError::WorkerDied { block: index })??;
            self.write_out(done)?;
        }
        Ok(())
    }

    /// Sends the buffered block off (or compresses it inline).
    fn dispatch(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(GZIP_BLOCK_SIZE));
        let index = self.next_index;
        self.next_index += 1;
        match self.jobs.clone() {
            None => {
                let done = deflate_block(self.level, index, &data)?;
                self.write_out(done)
            }
            Some(jobs) => {
                while self.pending.len() >= self.max_in_flight {
                    self.wait_front()?;
                }
                let (reply, rx) = sync_channel(1);
                jobs.send(Job { index, data, reply })
                    .map_err(|_| CompressError::WorkerDied { block: index })?;
                self.pending.push_back((index, rx));
                Ok(())
            }
        }
    }

    /// Compresses what is buffered (an empty stream still gets one empty member) and
    /// returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.next_index == 0 {
            self.dispatch()?;
        }
        while !self.pending.is_empty() {
            self.wait_front()?;
        }
        self.inner().flush()?;
        Ok(self
            .inner
            .take()
            .expect("inner writer present until finish"))
    }
}

impl<W: Write> Write for GzipEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == GZIP_BLOCK_SIZE && !data.is_empty() {
            self.dispatch()?;
        }
        let n = data.len().min(GZIP_BLOCK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing must not cut a block: that would make output depend on call patterns.
        Ok(())
    }
}

impl<W: Write> Drop for GzipEncoder<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A zstd compressor with fixed parameters (level [`ZSTD_LEVEL`], no checksum, no
/// content size), single-threaded: zstd at level 3 outruns the rest of the pipeline, and
/// this keeps the output independent of the thread count without relying on zstd's
/// multithreaded mode (which needs the `zstdmt` feature).
pub fn zstd_encoder<W: Write>(inner: W) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
    enc.include_checksum(false)?;
    enc.include_contentsize(false)?;
    enc.include_dictid(false)?;
    Ok(enc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static MAX_ACTIVE: AtomicUsize = AtomicUsize::new(0);

    /// Counts overlapping `deflate_block` calls, to prove the workers do run in parallel.
    pub(super) struct Active;

    impl Active {
        pub(super) fn enter() -> Active {
            let now = ACTIVE.fetch_add(1, Ordering::SeqCst) + 1;
            MAX_ACTIVE.fetch_max(now, Ordering::SeqCst);
            Active
        }
    }

    impl Drop for Active {
        fn drop(&mut self) {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Several MiB of mixed data: compressible text runs and incompressible noise, not a
    /// multiple of the block size.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut line = 0u64;
        while out.len() < len {
            line += 1;
            if line.is_multiple_of(7) {
                for _ in 0..512 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    out.push(x as u8);
                }
            } else {
                out.extend_from_slice(
                    format!(
                        "line {line}: /usr/lib/x86_64-linux-gnu/libfoo.so.{}\n",
                        line % 97
                    )
                    .as_bytes(),
                );
            }
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut enc = GzipEncoder::new(Vec::new(), GZIP_LEVEL, threads);
        // Odd write sizes: the output must not depend on how the input is chunked.
        for chunk in data.chunks(77_777) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    }

    fn system_gunzip(data: &[u8]) -> Vec<u8> {
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success(), "gzip -dc failed");
        out.stdout
    }

    #[test]
    fn gzip_is_identical_for_any_thread_count_and_decodes() {
        let data = sample(5 * GZIP_BLOCK_SIZE + 12_345);
        let one = gzip(&data, 1);
        MAX_ACTIVE.store(0, Ordering::SeqCst);
        let four = gzip(&data, 4);
        // Other tests may compress at the same time, so only "more than one" is asserted.
        assert!(
            MAX_ACTIVE.load(Ordering::SeqCst) > 1,
            "blocks were not compressed in parallel"
        );
        let two = gzip(&data, 2);
        assert!(one == four, "threads=1 and threads=4 differ");
        assert!(one == two, "threads=1 and threads=2 differ");
        assert_eq!(&one[..4], &[0x1f, 0x8b, 8, 0], "gzip, deflate, no name");
        assert_eq!(&one[4..8], &[0, 0, 0, 0], "mtime 0");
        assert_eq!(system_gunzip(&one), data);
        // Several members, read as one stream by a multi-member decoder.
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Within 2% of plain single-stream gzip at the same level.
        let mut plain =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        plain.write_all(&data).unwrap();
        let plain = plain.finish().unwrap();
        assert!(
            one.len() * 100 <= plain.len() * 102,
            "{} vs {}",
            one.len(),
            plain.len()
        );
    }

    #[test]
    fn gzip_edge_sizes_round_trip() {
        for len in [
            0,
            1,
            GZIP_BLOCK_SIZE - 1,
            GZIP_BLOCK_SIZE,
            GZIP_BLOCK_SIZE + 1,
            2 * GZIP_BLOCK_SIZE,
        ] {
            let data = sample(len);
            let one = gzip(&data, 1);
            assert!(one == gzip(&data, 3), "len {len}");
            assert_eq!(system_gunzip(&one), data, "len {len}");
        }
    }

    #[test]
    fn zstd_round_trips() {
        let data = sample(3 * GZIP_BLOCK_SIZE);
        let mut enc = zstd_encoder(Vec::new()).unwrap();
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), data);
    }
}
