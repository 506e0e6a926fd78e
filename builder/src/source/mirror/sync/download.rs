//! Parallel, resumable, verified downloads into the pool.
//!
//! Each file goes to `tmp/downloads/<sha256>.part` (the name is the hash
//! it must have), is checked against the index's size and SHA256, then
//! moved into the pool. A partial file survives an interrupted run and the
//! next run continues it with an HTTP Range request.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::super::error::Error;
use super::super::{Mirror, fsio, pool};
use super::fetch::{Fetcher, Location};

/// One file to fetch.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The repository it comes from.
    pub at: Arc<Location>,
    /// Its `Filename` (also its pool path).
    pub filename: String,
    /// Expected size.
    pub size: u64,
    /// Expected SHA-256.
    pub sha256: [u8; 32],
}

/// What the downloads did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Transferred {
    /// Files fetched.
    pub files: usize,
    /// Bytes transferred (resumed parts excluded).
    pub bytes: u64,
}

/// Runs `jobs` on `threads` threads. On the first failure no new file is
/// started; the ones under way finish (and stay in the pool, verified).
pub(crate) fn run(
    mirror: &Mirror,
    fetcher: &Fetcher,
    jobs: &[Job],
    threads: usize,
    progress: bool,
) -> Result<Transferred, Error> {
    if jobs.is_empty() {
        return Ok(Transferred::default());
    }
    let parts = mirror.tmp_dir().join("downloads");
    fsio::create_dirs(&parts)?;
    let bar = progress_bar(jobs, progress);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<Error>> = Mutex::new(Vec::new());
    let totals = Mutex::new(Transferred::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, 16).min(jobs.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let part = parts.join(format!("{}.part", hex::encode(job.sha256)));
                    let result = fetcher
                        .download(&job.at, &job.filename, &part, job.size, &job.sha256, &|n| {
                            bar.inc(n)
                        })
                        .and_then(|bytes| {
                            pool::insert(mirror, &part, &job.filename, job.size, &job.sha256)?;
                            Ok(bytes)
                        });
                    match result {
                        Ok(bytes) => {
                            let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
                            t.files += 1;
                            t.bytes += bytes;
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            bar.set_message(format!("{n}/{} files", jobs.len()));
                            tracing::debug!(file = %job.filename, bytes, "downloaded and verified");
                        }
                        Err(e) => {
                            tracing::error!(file = %job.filename, error = %e, "download failed");
                            stop.store(true, Ordering::Relaxed);
                            failures.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    match failures.len() {
        0 => Ok(totals.into_inner().unwrap_or_else(|p| p.into_inner())),
        1 => Err(failures.remove(0)),
        n => Err(Error::Downloads {
            failed: n,
            total: jobs.len(),
            first: Box::new(failures.remove(0)),
        }),
    }
}

/// Bytes and files, on stderr, only when a person watches it.
fn progress_bar(jobs: &[Job], wanted: bool) -> ProgressBar {
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {msg} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(format!("0/{} files", jobs.len()));
    bar
}
