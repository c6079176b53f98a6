//! zlib-rs (as imgraph uses it: 32 KiB dictionary from the previous block, sync flush)
//! against libdeflate (one independent gzip member per block) on 1 MiB blocks.
use flate2::{Compress, FlushCompress};
use std::time::Instant;
const BLOCK: usize = 1 << 20;
const WINDOW: usize = 32 * 1024;
fn zlibrs(level: u32, data: &[u8]) -> usize {
    let mut total = 10 + 8;
    let blocks: Vec<&[u8]> = data.chunks(BLOCK).collect();
    for (i, b) in blocks.iter().enumerate() {
        let mut z = Compress::new(flate2::Compression::new(level), false);
        if i > 0 {
            let prev = blocks[i - 1];
            z.set_dictionary(&prev[prev.len().saturating_sub(WINDOW)..]).unwrap();
        }
        let last = i + 1 == blocks.len();
        let mut out = Vec::with_capacity(b.len() + 4096);
        let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
        z.compress_vec(b, &mut out, flush).unwrap();
        total += out.len();
    }
    total
}
fn libdeflate(level: i32, data: &[u8]) -> usize {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
    let mut out = vec![0u8; c.gzip_compress_bound(BLOCK)];
    let mut total = 0;
    for b in data.chunks(BLOCK) {
        total += c.gzip_compress(b, &mut out).unwrap();
    }
    total
}
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).unwrap();
    let reference: f64 = args[2].parse().unwrap();
    for spec in &args[3..] {
        let (kind, lvl) = spec.split_once(':').unwrap();
        let t = Instant::now();
        let size = match kind {
            "zlibrs" => zlibrs(lvl.parse().unwrap(), &data),
            "libdeflate" => libdeflate(lvl.parse().unwrap(), &data),
            _ => panic!(),
        };
        let s = t.elapsed().as_secs_f64();
        println!("{kind:>10} level {lvl}: {size:>10} bytes  size/gzip-6 {:.4}  1-thread CPU {:.2} s  ({:.0} MB/s)", size as f64 / reference, s, data.len() as f64 / s / 1e6);
    }
}
