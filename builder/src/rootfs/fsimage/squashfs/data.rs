//! File data: blocks compressed on worker threads, written in one fixed
//! order, tails packed into fragment blocks, identical files stored once.
//!
//! Determinism: the work is cut into jobs by file order and size only;
//! workers may finish in any order, but the coordinator (the calling
//! thread) writes job results strictly in job order, and fragment blocks
//! (whose contents depend only on that order) all after the file data.
//! So the bytes do not depend on the thread count or on timing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

use sha2::{Digest, Sha256};

use super::Options;
use super::compress::{Block, Compressor};
use super::error::Error;
use super::format::{DATA_RAW, NO_FRAGMENT};
use super::output::Output;
use super::walk::Source;

/// Where a file's data went.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileData {
    pub blocks_start: u64,
    /// Stored size of each full block (0 = sparse, bit 24 = raw).
    pub block_sizes: Vec<u32>,
    pub fragment: u32,
    pub fragment_offset: u32,
    /// Bytes not stored because whole blocks were zero.
    pub sparse: u64,
}

/// Everything the tables need from the data area.
#[derive(Debug)]
pub(crate) struct Data {
    /// One per [`Source`], same order.
    pub files: Vec<FileData>,
    /// Fragment table entries: start and stored size (bit 24 = raw).
    pub fragments: Vec<(u64, u32)>,
    pub bytes_in: u64,
    pub deduplicated: u64,
}

/// A job's piece of one file: `blocks` full blocks from `first_block`,
/// and the tail when this is the file's last piece.
#[derive(Clone, Copy, Debug)]
struct Piece {
    file: u32,
    first_block: u64,
    blocks: u64,
    last: bool,
}

#[derive(Debug)]
enum Stored {
    Sparse,
    Block(Block),
}

#[derive(Debug)]
struct PieceOut {
    blocks: Vec<Stored>,
    tail: Vec<u8>,
    digest: Option<[u8; 32]>,
}

enum Work {
    Pieces(usize, Vec<Piece>),
    Fragment(usize, Vec<u8>),
}

enum Done {
    Pieces(usize, Result<Vec<PieceOut>, Error>),
    Fragment(usize, Result<Block, Error>),
}

#[derive(Default)]
struct Queue {
    work: VecDeque<Work>,
    closed: bool,
}

/// The queue workers take from; closing it (also on drop, so every exit
/// path of the coordinator ends the workers) makes them return.
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn push(&self, work: Work, urgent: bool) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if urgent {
            q.work.push_front(work)
        } else {
            q.work.push_back(work)
        }
        self.ready.notify_one();
    }

    fn take(&self) -> Option<Work> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if q.closed {
                return None;
            }
            if let Some(work) = q.work.pop_front() {
                return Some(work);
            }
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

struct CloseOnDrop<'a>(&'a Shared);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Bytes of input per job: big enough to amortise the hand-off, small
/// enough to keep every core busy on a tree of small files.
const JOB_BYTES: u64 = 1 << 20;

/// Write the data of `files` to `out`, then the fragment blocks.
pub(crate) fn write(
    files: &[Source],
    options: &Options,
    threads: usize,
    out: &mut Output,
    progress: &dyn Fn(u64),
) -> Result<Data, Error> {
    let block_size = u64::from(options.block_size);
    let jobs = cut_jobs(files, block_size);
    let candidates = dedup_candidates(files, options.dedup);
    let shared = Shared {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
    };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let _close = CloseOnDrop(&shared);
        for _ in 0..threads {
            let (shared, done_tx, candidates) = (&shared, done_tx.clone(), &candidates);
            scope.spawn(move || worker(shared, done_tx, files, candidates, options));
        }
        drop(done_tx);
        let mut coordinator = Coordinator {
            files,
            block_size,
            candidates: &candidates,
            out,
            shared: &shared,
            done: &done_rx,
            data: Data {
                files: vec![FileData::default(); files.len()],
                fragments: Vec::new(),
                bytes_in: 0,
                deduplicated: 0,
            },
            current: Assembly::default(),
            seen: HashMap::new(),
            fragment: Vec::new(),
            sealed: Vec::new(),
        };
        coordinator.run(&jobs, threads * 4, progress)?;
        Ok(coordinator.data)
    })
}

/// Cut the files into jobs of about JOB_BYTES, splitting big files at
/// block boundaries. Depends only on the sizes: the same for any thread count.
fn cut_jobs(files: &[Source], block_size: u64) -> Vec<Vec<Piece>> {
    let max_blocks = (JOB_BYTES / block_size).max(1);
    let (mut jobs, mut job, mut job_bytes) = (Vec::new(), Vec::new(), 0u64);
    for (index, file) in files.iter().enumerate() {
        let full = file.size / block_size;
        let mut first_block = 0;
        loop {
            let blocks = (full - first_block).min(max_blocks);
            let last = first_block + blocks == full;
            job.push(Piece {
                file: index as u32,
                first_block,
                blocks,
                last,
            });
            job_bytes += if last {
                file.size - first_block * block_size
            } else {
                blocks * block_size
            };
            if job_bytes >= JOB_BYTES {
                jobs.push(std::mem::take(&mut job));
                job_bytes = 0;
            }
            if last {
                break;
            }
            first_block += blocks;
        }
    }
    if !job.is_empty() {
        jobs.push(job);
    }
    jobs
}

/// Files worth hashing: non-empty, and another file has the same size.
fn dedup_candidates(files: &[Source], dedup: bool) -> Vec<bool> {
    if !dedup {
        return vec![false; files.len()];
    }
    let mut sizes: HashMap<u64, u32> = HashMap::new();
    for f in files {
        *sizes.entry(f.size).or_default() += 1;
    }
    files
        .iter()
        .map(|f| f.size > 0 && sizes[&f.size] > 1)
        .collect()
}

fn worker(
    shared: &Shared,
    done: mpsc::Sender<Done>,
    files: &[Source],
    candidates: &[bool],
    options: &Options,
) {
    // Options were checked by a compressor made on the calling thread.
    let mut compressor = Compressor::new(options.compression, options.block_size).ok();
    let mut buf = Vec::new();
    while let Some(work) = shared.take() {
        let Some(c) = compressor.as_mut() else {
            let err = || Error::Options {
                problem: "compression level not accepted by the compressor",
            };
            let _ = done.send(match work {
                Work::Pieces(i, _) => Done::Pieces(i, Err(err())),
                Work::Fragment(i, _) => Done::Fragment(i, Err(err())),
            });
            continue;
        };
        let result = match work {
            Work::Pieces(i, pieces) => Done::Pieces(
                i,
                pieces
                    .iter()
                    .map(|p| {
                        // A bug must not leave the coordinator waiting forever.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            read_piece(p, files, candidates, options, c, &mut buf)
                        }))
                        .unwrap_or_else(|_| {
                            Err(Error::Worker {
                                path: files[p.file as usize].path.clone(),
                            })
                        })
                    })
                    .collect(),
            ),
            Work::Fragment(i, bytes) => Done::Fragment(
                i,
                c.block(&bytes).map_err(|source| Error::Compress {
                    path: "fragment block".into(),
                    source,
                }),
            ),
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Read one piece, check the file is the one walked, compress its blocks.
fn read_piece(
    piece: &Piece,
    files: &[Source],
    candidates: &[bool],
    options: &Options,
    c: &mut Compressor,
    buf: &mut Vec<u8>,
) -> Result<PieceOut, Error> {
    let source = &files[piece.file as usize];
    let block_size = u64::from(options.block_size);
    let start = piece.first_block * block_size;
    let end = if piece.last {
        source.size
    } else {
        start + piece.blocks * block_size
    };
    let file = open_walked(source)?;
    buf.resize((end - start) as usize, 0);
    file.read_exact_at(buf, start).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Changed {
            path: source.path.clone(),
        },
        _ => Error::Read {
            path: source.path.clone(),
            source: e,
        },
    })?;
    let digest = candidates[piece.file as usize].then(|| Sha256::digest(&buf[..]).into());
    let full = (piece.blocks * block_size) as usize;
    let mut blocks = Vec::with_capacity(piece.blocks as usize);
    for block in buf[..full].chunks(block_size as usize) {
        blocks.push(if is_zero(block) {
            Stored::Sparse
        } else {
            Stored::Block(c.block(block).map_err(|e| Error::Compress {
                path: source.path.clone(),
                source: e,
            })?)
        });
    }
    Ok(PieceOut {
        blocks,
        tail: buf[full..].to_vec(),
        digest,
    })
}

/// Open without following a symlink, and refuse a file that is not the
/// one walked (replaced, or resized).
pub(crate) fn open_walked(source: &Source) -> Result<File, Error> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(&source.path, flags, Mode::empty()).map_err(|e| Error::Read {
        path: source.path.clone(),
        source: e.into(),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::Read {
        path: source.path.clone(),
        source: e,
    })?;
    if meta.dev() != source.dev || meta.ino() != source.ino || meta.len() != source.size {
        return Err(Error::Changed {
            path: source.path.clone(),
        });
    }
    Ok(file)
}

fn is_zero(block: &[u8]) -> bool {
    let (chunks, rest) = block.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_ne_bytes(*c) == 0) && rest.iter().all(|&b| b == 0)
}

/// The file being assembled from its pieces.
#[derive(Default)]
struct Assembly {
    data: FileData,
    digests: Vec<[u8; 32]>,
}

struct Coordinator<'a> {
    files: &'a [Source],
    block_size: u64,
    candidates: &'a [bool],
    out: &'a mut Output,
    shared: &'a Shared,
    done: &'a mpsc::Receiver<Done>,
    data: Data,
    current: Assembly,
    /// (size, digest) of stored files → the file holding the data.
    seen: HashMap<(u64, [u8; 32]), u32>,
    fragment: Vec<u8>,
    /// Compressed fragment blocks, by index, as they come back.
    sealed: Vec<Option<Block>>,
}

impl Coordinator<'_> {
    fn run(
        &mut self,
        jobs: &[Vec<Piece>],
        window: usize,
        progress: &dyn Fn(u64),
    ) -> Result<(), Error> {
        let mut results: BTreeMap<usize, Vec<PieceOut>> = BTreeMap::new();
        let (mut dispatched, mut consumed) = (0, 0);
        while consumed < jobs.len() {
            while dispatched < jobs.len() && dispatched - consumed < window {
                self.shared
                    .push(Work::Pieces(dispatched, jobs[dispatched].clone()), false);
                dispatched += 1;
            }
            match self.receive()? {
                Done::Pieces(i, result) => {
                    results.insert(i, result?);
                }
                Done::Fragment(i, result) => self.sealed[i] = Some(result?),
            }
            while let Some(outs) = results.remove(&consumed) {
                for (piece, out) in jobs[consumed].iter().zip(outs) {
                    self.place(piece, out)?;
                }
                consumed += 1;
                progress(self.data.bytes_in);
            }
        }
        self.seal_fragment();
        self.write_fragments()
    }

    fn receive(&self) -> Result<Done, Error> {
        self.done.recv().map_err(|_| Error::Write {
            path: self.out.path().to_owned(),
            source: io::Error::other("compression workers stopped"),
        })
    }

    /// Write a piece's blocks; finish the file on its last piece.
    fn place(&mut self, piece: &Piece, out: PieceOut) -> Result<(), Error> {
        if piece.first_block == 0 {
            self.current = Assembly::default();
            self.current.data.blocks_start = self.out.position();
        }
        for block in out.blocks {
            let size = match block {
                Stored::Sparse => {
                    self.current.data.sparse += self.block_size;
                    0
                }
                Stored::Block(b) => {
                    self.out.write(&b.bytes)?;
                    b.bytes.len() as u32 | if b.raw { DATA_RAW } else { 0 }
                }
            };
            self.current.data.block_sizes.push(size);
        }
        self.current.digests.extend(out.digest);
        if piece.last {
            self.finish_file(piece.file, out.tail)?;
        }
        Ok(())
    }

    fn finish_file(&mut self, index: u32, tail: Vec<u8>) -> Result<(), Error> {
        let mut assembly = std::mem::take(&mut self.current);
        let size = self.files[index as usize].size;
        self.data.bytes_in += size;
        if self.candidates[index as usize] {
            let mut whole = Sha256::new();
            for d in &assembly.digests {
                whole.update(d);
            }
            match self.seen.entry((size, whole.finalize().into())) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    // Same bytes as an earlier file: point at its data and
                    // take back what this copy wrote.
                    self.out.rewind(assembly.data.blocks_start)?;
                    self.data.files[index as usize] =
                        self.data.files[*first.get() as usize].clone();
                    self.data.deduplicated += 1;
                    return Ok(());
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(index);
                }
            }
        }
        assembly.data.fragment = NO_FRAGMENT;
        if !tail.is_empty() {
            if self.fragment.len() + tail.len() > self.block_size as usize {
                self.seal_fragment();
            }
            assembly.data.fragment = self.sealed.len() as u32;
            assembly.data.fragment_offset = self.fragment.len() as u32;
            self.fragment.extend_from_slice(&tail);
        }
        self.data.files[index as usize] = assembly.data;
        Ok(())
    }

    /// Hand the full fragment block to the workers, ahead of file jobs.
    fn seal_fragment(&mut self) {
        if self.fragment.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.fragment);
        self.shared
            .push(Work::Fragment(self.sealed.len(), bytes), true);
        self.sealed.push(None);
    }

    /// All fragment blocks, in index order, after the file data.
    fn write_fragments(&mut self) -> Result<(), Error> {
        while self.sealed.iter().any(Option::is_none) {
            match self.receive()? {
                Done::Fragment(i, result) => self.sealed[i] = Some(result?),
                Done::Pieces(..) => {}
            }
        }
        for block in std::mem::take(&mut self.sealed).into_iter().flatten() {
            let start = self.out.position();
            self.out.write(&block.bytes)?;
            let size = block.bytes.len() as u32 | if block.raw { DATA_RAW } else { 0 };
            self.data.fragments.push((start, size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn source(size: u64) -> Source {
        Source {
            path: PathBuf::from("/x"),
            size,
            dev: 0,
            ino: 0,
        }
    }

    #[test]
    fn jobs_cover_every_byte_once_in_order() {
        let bs = 4096u64;
        let files: Vec<Source> = [0, 1, 4096, 4097, 3 << 20, 100, (1 << 20) + 5]
            .map(source)
            .into();
        let jobs = cut_jobs(&files, bs);
        let pieces: Vec<Piece> = jobs.concat();
        for (index, file) in files.iter().enumerate() {
            let mine: Vec<&Piece> = pieces.iter().filter(|p| p.file as usize == index).collect();
            let blocks: u64 = mine.iter().map(|p| p.blocks).sum();
            assert_eq!(blocks, file.size / bs, "file {index}");
            assert!(mine.last().unwrap().last);
            assert_eq!(mine.iter().filter(|p| p.last).count(), 1);
            let mut next = 0;
            for p in mine {
                assert_eq!(p.first_block, next);
                next += p.blocks;
            }
        }
        assert!(jobs.iter().all(|j| !j.is_empty()));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 4096]));
        let mut b = vec![0u8; 4099];
        assert!(is_zero(&b));
        b[4098] = 1;
        assert!(!is_zero(&b));
        b[4098] = 0;
        b[17] = 1;
        assert!(!is_zero(&b));
    }
}
