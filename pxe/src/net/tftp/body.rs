//! The bytes one transfer serves, and reading them block by block.
//!
//! A session owns its body (an open descriptor or shared bytes), so a
//! reload that swaps the file source, or a file replaced on disk, never
//! changes a transfer in flight.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::cache::FileCache;
use super::events::RefusalReason;
use super::netascii;
use super::packet::Mode;
use super::source::{FileIdentity, FileSource, OpenError, SafeName, SourceContent};

/// Bytes read from disk at once for files too large to cache: amortises
/// the hop to the blocking pool over a few hundred blocks.
const CHUNK_BYTES: usize = 256 << 10;

/// What a transfer sends.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Memory(Arc<[u8]>),
    File { file: Arc<File>, len: u64 },
}

impl Body {
    pub(super) fn len(&self) -> u64 {
        match self {
            Self::Memory(bytes) => bytes.len() as u64,
            Self::File { len, .. } => *len,
        }
    }
}

/// Opens `name` from `source` on the blocking pool, through the cache.
/// Netascii bodies are converted in memory, up to the cache's file bound.
pub(super) async fn load(
    source: Arc<dyn FileSource>,
    cache: Arc<FileCache>,
    name: SafeName,
    mode: Mode,
) -> Result<Body, RefusalReason> {
    let requested = name.clone();
    let task = tokio::task::spawn_blocking(move || load_blocking(&*source, &cache, &name, mode));
    match task.await {
        Ok(result) => result,
        // A panicking FileSource is a bug in it; do not take the server down.
        Err(join) => Err(RefusalReason::Open(OpenError::Io {
            name: requested,
            source: std::io::Error::other(join.to_string()),
        })),
    }
}

fn load_blocking(
    source: &dyn FileSource,
    cache: &FileCache,
    name: &SafeName,
    mode: Mode,
) -> Result<Body, RefusalReason> {
    let body = match source.open(name)? {
        SourceContent::Bytes(bytes) => Body::Memory(bytes),
        SourceContent::File { file, identity } if cache.admits(identity.len) => {
            match cache.get(name, &identity) {
                Some(bytes) => Body::Memory(bytes),
                None => {
                    Body::Memory(cache.fill_once(name, || match cache.get(name, &identity) {
                        Some(bytes) => Ok(bytes),
                        None => read_and_cache(cache, name, file, identity),
                    })?)
                }
            }
        }
        SourceContent::File { file, identity } => Body::File {
            file: Arc::new(file),
            len: identity.len,
        },
    };
    match mode {
        Mode::Octet => Ok(body),
        Mode::Netascii => netascii_body(body, cache),
        // The server refuses mail before opening anything.
        Mode::Mail => Err(RefusalReason::UnsupportedMode(mode)),
    }
}

fn read_and_cache(
    cache: &FileCache,
    name: &SafeName,
    mut file: File,
    identity: FileIdentity,
) -> Result<Arc<[u8]>, OpenError> {
    let io = |source| OpenError::Io {
        name: name.clone(),
        source,
    };
    let mut bytes = Vec::with_capacity(usize::try_from(identity.len).unwrap_or(0));
    (&mut file)
        .take(identity.len)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let bytes: Arc<[u8]> = bytes.into();
    // Cache only if the file did not change while it was read; a torn
    // read is still served (as any server would) but not remembered.
    let after = file.metadata().map_err(io)?;
    if FileIdentity::of(&after) == identity && bytes.len() as u64 == identity.len {
        cache.insert(name.clone(), identity, Arc::clone(&bytes));
    }
    Ok(bytes)
}

fn netascii_body(body: Body, cache: &FileCache) -> Result<Body, RefusalReason> {
    match body {
        Body::Memory(bytes) => Ok(Body::Memory(netascii::encode(&bytes).into())),
        Body::File { len, .. } => Err(RefusalReason::NetasciiTooLarge {
            size: len,
            limit: cache.max_file(),
        }),
    }
}

/// Reads blocks of a body; for files, a chunk at a time with the next
/// chunk read ahead on the blocking pool while the current one is sent.
#[derive(Debug)]
pub(super) struct BlockReader {
    body: Body,
    blksize: usize,
    blocks_per_chunk: u64,
    current: Option<Chunk>,
    ahead: Option<(u64, JoinHandle<std::io::Result<Chunk>>)>,
}

#[derive(Debug)]
struct Chunk {
    index: u64,
    data: Vec<u8>,
}

impl BlockReader {
    pub(super) fn new(body: Body, blksize: u16) -> Self {
        let blksize = usize::from(blksize);
        Self {
            body,
            blksize,
            blocks_per_chunk: (CHUNK_BYTES / blksize).max(1) as u64,
            current: None,
            ahead: None,
        }
    }

    /// Blocks in the transfer, counting the final short (maybe empty) one.
    pub(super) fn block_count(&self) -> u64 {
        self.body.len() / self.blksize as u64 + 1
    }

    /// Appends block `block` (1-based, not wrapped) to `out`.
    pub(super) async fn append_block(
        &mut self,
        block: u64,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let blksize = self.blksize as u64;
        let start = (block - 1) * blksize;
        match &self.body {
            Body::Memory(bytes) => {
                let end = (start + blksize).min(bytes.len() as u64);
                out.extend_from_slice(&bytes[start as usize..end as usize]);
            }
            Body::File { .. } => {
                let index = (block - 1) / self.blocks_per_chunk;
                let from = (start - index * self.blocks_per_chunk * blksize) as usize;
                let to_max = from + self.blksize;
                let chunk = self.chunk(index).await?;
                let to = to_max.min(chunk.data.len());
                out.extend_from_slice(&chunk.data[from.min(to)..to]);
            }
        }
        Ok(())
    }

    async fn chunk(&mut self, index: u64) -> std::io::Result<&Chunk> {
        if self.current.as_ref().is_none_or(|c| c.index != index) {
            let chunk = match self.ahead.take() {
                Some((ahead, handle)) if ahead == index => join(handle).await?,
                other => {
                    if let Some((_, handle)) = other {
                        handle.abort();
                    }
                    join(self.spawn_read(index)).await?
                }
            };
            self.current = Some(chunk);
            let next = index + 1;
            if next * self.blocks_per_chunk < self.block_count() {
                self.ahead = Some((next, self.spawn_read(next)));
            }
        }
        Ok(self.current.as_ref().unwrap_or_else(|| unreachable!()))
    }

    fn spawn_read(&self, index: u64) -> JoinHandle<std::io::Result<Chunk>> {
        let Body::File { file, len } = &self.body else {
            unreachable!("chunks are read only for file bodies")
        };
        let (file, len) = (Arc::clone(file), *len);
        let chunk_bytes = self.blocks_per_chunk * self.blksize as u64;
        tokio::task::spawn_blocking(move || {
            let offset = index * chunk_bytes;
            let size = chunk_bytes.min(len.saturating_sub(offset));
            let mut data = vec![0; size as usize];
            // A file that shrank under us is an UnexpectedEof: the transfer
            // fails rather than send a length the client was not promised.
            file.read_exact_at(&mut data, offset)?;
            Ok(Chunk { index, data })
        })
    }
}

impl Drop for BlockReader {
    fn drop(&mut self) {
        if let Some((_, handle)) = self.ahead.take() {
            handle.abort();
        }
    }
}

async fn join(handle: JoinHandle<std::io::Result<Chunk>>) -> std::io::Result<Chunk> {
    handle.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(body: Body, blksize: u16) -> Vec<u8> {
        let mut reader = BlockReader::new(body, blksize);
        let mut out = Vec::new();
        for block in 1..=reader.block_count() {
            reader.append_block(block, &mut out).await.unwrap();
        }
        out
    }

    #[tokio::test]
    async fn file_and_memory_bodies_yield_the_same_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..CHUNK_BYTES * 2 + 777)
            .map(|i| (i % 251) as u8)
            .collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &content).unwrap();
        let file = Body::File {
            file: Arc::new(File::open(&path).unwrap()),
            len: content.len() as u64,
        };
        for blksize in [8, 512, 1468] {
            assert_eq!(collect(file.clone(), blksize).await, content);
            assert_eq!(
                collect(Body::Memory(content.clone().into()), blksize).await,
                content
            );
        }
    }

    #[tokio::test]
    async fn going_back_across_a_chunk_boundary_rereads() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..CHUNK_BYTES * 3).map(|i| (i % 253) as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &content).unwrap();
        let body = Body::File {
            file: Arc::new(File::open(&path).unwrap()),
            len: content.len() as u64,
        };
        let mut reader = BlockReader::new(body, 1000);
        let per_chunk = reader.blocks_per_chunk;
        for block in [per_chunk + 2, per_chunk - 1, per_chunk * 2 + 1, 1] {
            let mut out = Vec::new();
            reader.append_block(block, &mut out).await.unwrap();
            let start = ((block - 1) * 1000) as usize;
            assert_eq!(out, content[start..start + 1000], "block {block}");
        }
    }

    #[tokio::test]
    async fn a_file_that_shrinks_fails_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 4096]).unwrap();
        let body = Body::File {
            file: Arc::new(File::open(&path).unwrap()),
            len: 8192,
        };
        let mut reader = BlockReader::new(body, 512);
        let err = reader.append_block(1, &mut Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
