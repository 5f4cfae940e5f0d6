//! A gzip compressor that uses every core and writes the same bytes whatever the thread count.
//!
//! The input is cut into blocks of [`BLOCK_SIZE`] bytes at fixed offsets. Each block is
//! raw-deflated on its own, primed with the last [`DICTIONARY_SIZE`] bytes of the block before
//! it (as pigz does by default), and ends with a sync flush so that the pieces concatenate into
//! one valid deflate stream; the last block finishes the stream. The pieces are written in
//! order inside a single gzip member whose header is the one `gzip -n` and pigz write (no name,
//! mtime 0, OS byte 3 "Unix", XFL 2 for level 9 and 4 for level 1), followed by the CRC-32
//! combined across blocks and the input length modulo 2^32. Because block boundaries depend only
//! on the input offsets, and every block is compressed from the same input and dictionary, the
//! output does not depend on the number of threads, on how the input is split across `write`
//! calls, or on `flush` calls. Memory stays bounded: at most twice as many blocks as threads are
//! in flight.
//!
//! This module deliberately does not produce the same bytes as single-stream `gzip`: the sync
//! flushes at block boundaries make the stream a few bytes per block longer. It does not
//! decompress either (any gzip reader does).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, CompressError, FlushCompress, Status};

/// Bytes of input per independently compressed block (pigz's default block size).
pub const BLOCK_SIZE: usize = 128 * 1024;

/// Bytes of the previous block used to prime each block's compressor (the deflate window).
pub const DICTIONARY_SIZE: usize = 32 * 1024;

/// Highest deflate compression level.
pub const MAX_LEVEL: u32 = 9;

/// Name of the worker threads.
const WORKER_THREAD_NAME: &str = "pgzip-worker";

/// Blocks allowed in flight per worker thread before the writer waits for the oldest one.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// gzip magic bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Compression method "deflate".
const GZIP_METHOD_DEFLATE: u8 = 8;
/// No optional header fields (no name, comment, extra or header CRC).
const GZIP_FLAGS_NONE: u8 = 0;
/// Operating system byte written by `gzip -n` and pigz on Unix.
const GZIP_OS_UNIX: u8 = 3;
/// Extra flags for the slowest level (as gzip and pigz set them).
const GZIP_XFL_SLOWEST: u8 = 2;
/// Extra flags for the fastest level (as gzip and pigz set them).
const GZIP_XFL_FASTEST: u8 = 4;

/// Everything that can go wrong while compressing.
#[derive(Debug, thiserror::Error)]
pub enum PgzipError {
    /// The requested level is outside 0..=9.
    #[error("gzip level {level} is out of range 0..=9")]
    InvalidLevel {
        /// The rejected level.
        level: u32,
    },
    /// The deflate engine refused a block.
    #[error("deflating block {block} failed")]
    Compress {
        /// Index of the block, counting from 0.
        block: u64,
        /// The engine's error.
        #[source]
        source: CompressError,
    },
    /// A worker thread went away without returning its block.
    #[error("compression worker for block {block} stopped without a result")]
    WorkerLost {
        /// Index of the block, counting from 0.
        block: u64,
    },
    /// A worker thread could not be started.
    #[error("starting a compression worker thread failed")]
    SpawnWorker(#[source] io::Error),
    /// Writing compressed bytes to the destination failed.
    #[error("writing compressed output failed")]
    Write(#[source] io::Error),
    /// An earlier error left the stream incomplete, so no more input is accepted.
    #[error("the gzip stream is broken by an earlier error")]
    Broken,
}

/// One block handed to a worker.
struct Job {
    index: u64,
    input: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
    reply: SyncSender<Result<CompressedBlock, PgzipError>>,
}

/// A compressed block with the checksum of its input.
struct CompressedBlock {
    data: Vec<u8>,
    crc: crc32fast::Hasher,
    input_len: usize,
}

/// The worker threads and the queue of blocks they are compressing, oldest first.
struct Pool {
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<(u64, Receiver<Result<CompressedBlock, PgzipError>>)>,
    max_in_flight: usize,
}

/// How blocks get compressed: on the calling thread or on a pool.
enum Engine {
    Inline,
    Pool(Pool),
}

/// The destination and what the trailer needs to know about the blocks written to it.
struct Output<W: Write> {
    inner: W,
    level: u32,
    header_written: bool,
    crc: crc32fast::Hasher,
    total_len: u64,
}

/// A `Write` that gzips its input on `threads` threads, with output independent of `threads`.
pub struct ParallelGzWriter<W: Write> {
    output: Output<W>,
    level: u32,
    engine: Engine,
    current: Vec<u8>,
    dictionary: Vec<u8>,
    next_block: u64,
    broken: bool,
}

impl<W: Write> ParallelGzWriter<W> {
    /// A writer compressing at `level` (0..=9) on `threads` threads (0 is taken as 1; with 1 the
    /// work happens on the calling thread).
    pub fn new(inner: W, level: u32, threads: usize) -> Result<Self, PgzipError> {
        if level > MAX_LEVEL {
            return Err(PgzipError::InvalidLevel { level });
        }
        let threads = threads.max(1);
        let engine = if threads == 1 {
            Engine::Inline
        } else {
            Engine::Pool(Pool::start(level, threads)?)
        };
        Ok(Self {
            output: Output {
                inner,
                level,
                header_written: false,
                crc: crc32fast::Hasher::new(),
                total_len: 0,
            },
            level,
            engine,
            current: Vec::with_capacity(BLOCK_SIZE),
            dictionary: Vec::new(),
            next_block: 0,
            broken: false,
        })
    }

    /// Compresses what is left, writes the gzip trailer, flushes and returns the destination.
    pub fn finish(mut self) -> Result<W, PgzipError> {
        if self.broken {
            return Err(PgzipError::Broken);
        }
        self.dispatch(true)?;
        self.drain_all()?;
        if let Engine::Pool(pool) = &mut self.engine {
            pool.stop();
        }
        self.output.finish()
    }

    /// The destination, for inspection.
    pub fn get_ref(&self) -> &W {
        &self.output.inner
    }

    /// Hands the buffered block to the engine; `last` finishes the deflate stream. Any error
    /// breaks the stream for good.
    fn dispatch(&mut self, last: bool) -> Result<(), PgzipError> {
        let result = self.dispatch_block(last);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn dispatch_block(&mut self, last: bool) -> Result<(), PgzipError> {
        let input = std::mem::replace(&mut self.current, Vec::with_capacity(BLOCK_SIZE));
        let dictionary_start = input.len().saturating_sub(DICTIONARY_SIZE);
        let next_dictionary = input[dictionary_start..].to_vec();
        let dictionary = std::mem::replace(&mut self.dictionary, next_dictionary);
        let index = self.next_block;
        self.next_block += 1;
        match &mut self.engine {
            Engine::Inline => {
                let block = compress_block(self.level, index, &input, &dictionary, last)?;
                self.output.emit(block)
            }
            Engine::Pool(pool) => {
                while pool.pending.len() >= pool.max_in_flight {
                    let block = pool.wait_oldest()?;
                    self.output.emit(block)?;
                }
                pool.submit(index, input, dictionary, last)?;
                self.drain_ready()
            }
        }
    }

    /// Writes every block that is already compressed, in order, without waiting.
    fn drain_ready(&mut self) -> Result<(), PgzipError> {
        if let Engine::Pool(pool) = &mut self.engine {
            while let Some(block) = pool.try_oldest()? {
                self.output.emit(block)?;
            }
        }
        Ok(())
    }

    /// Waits for and writes every block in flight.
    fn drain_all(&mut self) -> Result<(), PgzipError> {
        if let Engine::Pool(pool) = &mut self.engine {
            while !pool.pending.is_empty() {
                let block = pool.wait_oldest()?;
                self.output.emit(block)?;
            }
        }
        Ok(())
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::other(PgzipError::Broken));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // A full block is only sent once more input proves it is not the last one.
        if self.current.len() == BLOCK_SIZE {
            self.dispatch(false).map_err(io::Error::other)?;
        }
        let take = (BLOCK_SIZE - self.current.len()).min(buf.len());
        self.current.extend_from_slice(&buf[..take]);
        Ok(take)
    }

    /// Writes the blocks compressed so far and flushes the destination. The partial block is
    /// kept back, so flushing never changes the output bytes.
    fn flush(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(PgzipError::Broken));
        }
        let result = self.drain_all();
        if result.is_err() {
            self.broken = true;
        }
        result.map_err(io::Error::other)?;
        if self.output.header_written {
            self.output.inner.flush()?;
        }
        Ok(())
    }
}

impl Pool {
    /// Starts `threads` workers; if one cannot be started, those already running are stopped.
    fn start(level: u32, threads: usize) -> Result<Self, PgzipError> {
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let mut pool = Self {
            jobs: Some(jobs),
            workers: Vec::with_capacity(threads),
            pending: VecDeque::new(),
            max_in_flight: threads * IN_FLIGHT_PER_THREAD,
        };
        for _ in 0..threads {
            let queue = Arc::clone(&queue);
            let worker = std::thread::Builder::new()
                .name(WORKER_THREAD_NAME.into())
                .spawn(move || run_worker(&queue, level))
                .map_err(PgzipError::SpawnWorker)?;
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    fn submit(
        &mut self,
        index: u64,
        input: Vec<u8>,
        dictionary: Vec<u8>,
        last: bool,
    ) -> Result<(), PgzipError> {
        let (reply, result) = sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or(PgzipError::WorkerLost { block: index })?;
        jobs.send(Job {
            index,
            input,
            dictionary,
            last,
            reply,
        })
        .map_err(|_| PgzipError::WorkerLost { block: index })?;
        self.pending.push_back((index, result));
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<CompressedBlock, PgzipError> {
        let Some((index, result)) = self.pending.pop_front() else {
            return Err(PgzipError::Broken);
        };
        result
            .recv()
            .map_err(|_| PgzipError::WorkerLost { block: index })?
    }

    fn try_oldest(&mut self) -> Result<Option<CompressedBlock>, PgzipError> {
        let Some((index, result)) = self.pending.front() else {
            return Ok(None);
        };
        let index = *index;
        let outcome = match result.try_recv() {
            Ok(outcome) => outcome,
            Err(TryRecvError::Empty) => return Ok(None),
            Err(TryRecvError::Disconnected) => return Err(PgzipError::WorkerLost { block: index }),
        };
        self.pending.pop_front();
        outcome.map(Some)
    }

    /// Closes the queue and waits for the workers to exit.
    fn stop(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to report; its blocks already failed.
            let _ = worker.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_worker(queue: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        let job = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let outcome = compress_block(level, job.index, &job.input, &job.dictionary, job.last);
        // The writer may have gone away; then nobody wants the block.
        let _ = job.reply.send(outcome);
    }
}

/// Raw-deflates one block, primed with `dictionary`, ending in a sync flush or, for the last
/// block, the end of the stream.
///
/// Every block gets a fresh compressor: a reset one keeps the previous stream's bytes in its
/// window, and the match finder can read a few of them past the end of the input, which makes
/// the output depend on which blocks a thread happened to compress before.
fn compress_block(
    level: u32,
    index: u64,
    input: &[u8],
    dictionary: &[u8],
    last: bool,
) -> Result<CompressedBlock, PgzipError> {
    let failed = |source| PgzipError::Compress {
        block: index,
        source,
    };
    let mut compressor = Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        compressor.set_dictionary(dictionary).map_err(failed)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let start = compressor.total_in();
    let mut data = Vec::with_capacity(input.len() + input.len() / 1024 + 64);
    loop {
        let consumed = usize::try_from(compressor.total_in() - start).unwrap_or(input.len());
        if data.capacity() - data.len() < 64 {
            data.reserve(data.capacity().max(4096));
        }
        let status = compressor
            .compress_vec(&input[consumed.min(input.len())..], &mut data, flush)
            .map_err(failed)?;
        let consumed = usize::try_from(compressor.total_in() - start).unwrap_or(input.len());
        let done = match status {
            Status::StreamEnd => true,
            Status::Ok | Status::BufError => {
                !last && consumed >= input.len() && data.len() < data.capacity()
            }
        };
        if done {
            break;
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(input);
    Ok(CompressedBlock {
        data,
        crc,
        input_len: input.len(),
    })
}

impl<W: Write> Output<W> {
    fn write_header_once(&mut self) -> Result<(), PgzipError> {
        if !self.header_written {
            self.inner
                .write_all(&gzip_header(self.level))
                .map_err(PgzipError::Write)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Appends a compressed block and folds its checksum and length into the trailer values.
    fn emit(&mut self, block: CompressedBlock) -> Result<(), PgzipError> {
        self.write_header_once()?;
        self.inner
            .write_all(&block.data)
            .map_err(PgzipError::Write)?;
        self.crc.combine(&block.crc);
        self.total_len = self.total_len.wrapping_add(block.input_len as u64);
        Ok(())
    }

    /// Writes the trailer (CRC-32, then the length modulo 2^32) and flushes.
    fn finish(mut self) -> Result<W, PgzipError> {
        self.write_header_once()?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.finalize().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952); the truncation is the format's.
        trailer[4..].copy_from_slice(&((self.total_len & 0xffff_ffff) as u32).to_le_bytes());
        self.inner.write_all(&trailer).map_err(PgzipError::Write)?;
        self.inner.flush().map_err(PgzipError::Write)?;
        Ok(self.inner)
    }
}

/// The fixed ten-byte member header: no name, mtime 0, XFL by level, OS Unix.
fn gzip_header(level: u32) -> [u8; 10] {
    let extra_flags = match level {
        MAX_LEVEL => GZIP_XFL_SLOWEST,
        1 => GZIP_XFL_FASTEST,
        _ => 0,
    };
    [
        GZIP_MAGIC[0],
        GZIP_MAGIC[1],
        GZIP_METHOD_DEFLATE,
        GZIP_FLAGS_NONE,
        0,
        0,
        0,
        0,
        extra_flags,
        GZIP_OS_UNIX,
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    /// Deterministic, partly compressible test data.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let word = (state >> 33) as u32;
            if word.is_multiple_of(4) {
                out.extend_from_slice(b"the quick brown fox jumps over the lazy dog ");
            } else {
                out.push((word >> 8) as u8);
            }
        }
        out.truncate(len);
        out
    }

    fn compress(data: &[u8], level: u32, threads: usize, chunk: usize) -> Vec<u8> {
        let mut writer = ParallelGzWriter::new(Vec::new(), level, threads).unwrap();
        for piece in data.chunks(chunk.max(1)) {
            writer.write_all(piece).unwrap();
        }
        writer.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn output_is_identical_for_any_thread_count_and_round_trips() {
        let sizes = [
            0,
            1,
            DICTIONARY_SIZE - 1,
            DICTIONARY_SIZE,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            2 * BLOCK_SIZE - 1,
            2 * BLOCK_SIZE,
            2 * BLOCK_SIZE + 1,
            5 * BLOCK_SIZE + 12345,
        ];
        for (case, size) in sizes.into_iter().enumerate() {
            let data = sample(size, case as u64);
            let single = compress(&data, 6, 1, 65536);
            for threads in [2, 8] {
                for chunk in [1000, 65536, BLOCK_SIZE + 7] {
                    assert_eq!(
                        compress(&data, 6, threads, chunk),
                        single,
                        "size {size}, {threads} threads, chunk {chunk}"
                    );
                }
            }
            assert_eq!(gunzip(&single), data, "size {size}");
        }
    }

    #[test]
    fn many_blocks_are_thread_independent_on_every_run() {
        // Enough blocks that workers pick them up in a different order on every run: a
        // compressor that carried state from one block to the next would show here.
        let data = sample(48 * BLOCK_SIZE + 4321, 17);
        let single = compress(&data, 6, 1, BLOCK_SIZE);
        for run in 0..3 {
            for threads in [2, 3, 8] {
                assert!(
                    compress(&data, 6, threads, 100_000) == single,
                    "run {run}, {threads} threads"
                );
            }
        }
        assert_eq!(gunzip(&single), data);
    }

    #[test]
    fn every_level_round_trips_and_is_thread_independent() {
        let data = sample(3 * BLOCK_SIZE + 99, 7);
        for level in 0..=MAX_LEVEL {
            let single = compress(&data, level, 1, 4096);
            assert_eq!(compress(&data, level, 8, 4096), single, "level {level}");
            assert_eq!(gunzip(&single), data, "level {level}");
        }
    }

    #[test]
    fn empty_input_is_a_complete_gzip_member() {
        let out = compress(&[], 6, 2, 1);
        assert_eq!(out.len(), 10 + 2 + 8);
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&out[10..12], &[0x03, 0x00]);
        assert_eq!(&out[12..], &[0u8; 8]);
        assert!(gunzip(&out).is_empty());
    }

    #[test]
    fn header_matches_gzip_dash_n() {
        for (level, xfl) in [(1, 4u8), (6, 0), (9, 2)] {
            let out = compress(b"hello", level, 1, 5);
            assert_eq!(
                &out[..10],
                &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3],
                "level {level}"
            );
        }
    }

    #[test]
    fn trailer_has_crc_and_length() {
        let data = sample(BLOCK_SIZE * 2 + 3, 11);
        let out = compress(&data, 6, 2, 9999);
        let trailer = &out[out.len() - 8..];
        assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
        assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
    }

    #[test]
    fn flush_does_not_change_the_output() {
        let data = sample(BLOCK_SIZE * 3, 5);
        let plain = compress(&data, 6, 2, 50_000);
        let mut writer = ParallelGzWriter::new(Vec::new(), 6, 2).unwrap();
        for piece in data.chunks(50_000) {
            writer.write_all(piece).unwrap();
            writer.flush().unwrap();
        }
        assert_eq!(writer.finish().unwrap(), plain);
    }

    #[test]
    fn invalid_level_is_rejected() {
        let err = ParallelGzWriter::new(Vec::new(), 10, 1).err().unwrap();
        assert!(matches!(err, PgzipError::InvalidLevel { level: 10 }));
    }

    #[test]
    fn write_errors_are_reported_and_stick() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for threads in [1, 2] {
            let mut writer = ParallelGzWriter::new(Failing, 6, threads).unwrap();
            let data = sample(BLOCK_SIZE * 40, 3);
            assert!(writer.write_all(&data).is_err(), "{threads} threads");
            assert!(writer.write_all(b"x").is_err());
            assert!(matches!(writer.finish(), Err(PgzipError::Broken)));
        }
    }

    #[test]
    fn system_gzip_decompresses_the_output() {
        let data = sample(2 * BLOCK_SIZE + 1000, 13);
        let out = compress(&data, 9, 2, 70_000);
        let mut child = match Command::new("gzip")
            .args(["-d", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return,
            Err(err) => panic!("spawning gzip: {err}"),
        };
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&out).unwrap());
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success());
        assert_eq!(output.stdout, data);
    }
}
