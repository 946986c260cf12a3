//! Interrupts and exclusive use of `_out/` during a build.
//!
//! While a build runs, SIGINT and SIGTERM only set a flag: the imager loop sees it, removes its
//! container (which would otherwise run on after xtask is gone), drops the partial output and
//! fails; `main` then exits with 128 + the signal number, as the default action would have.
//! Outside a build the default actions are back.
//!
//! One build per checkout at a time: [`lock_out_dir`] takes an exclusive lock on
//! `_out/.lock` (advisory, released by the kernel when the process ends, even when killed), and a
//! second build refuses clearly instead of sharing the temporary directories.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Context, Result};

use crate::project::Project;

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: std::ffi::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    PENDING.store(signal, Ordering::SeqCst);
}

// The C library's `signal(2)`, which std links on every Unix target; declared here rather than
// adding the libc crate for one function. Handlers are passed as addresses (`sighandler_t`).
extern "C" {
    fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
}

const SIG_ERR: usize = usize::MAX;

/// SIGINT and SIGTERM set the pending flag until this is dropped, which restores the previous
/// handlers (the default actions).
pub struct Catch {
    previous: Vec<(i32, usize)>,
}

pub fn catch() -> Catch {
    let handler = on_signal as extern "C" fn(std::ffi::c_int) as usize;
    let mut previous = Vec::new();
    for sig in [SIGINT, SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let old = unsafe { signal(sig, handler) };
        if old != SIG_ERR {
            previous.push((sig, old));
        }
    }
    Catch { previous }
}

impl Drop for Catch {
    fn drop(&mut self) {
        for (sig, old) in self.previous.drain(..) {
            // SAFETY: restores the handler that was installed before `catch`.
            unsafe { signal(sig, old) };
        }
    }
}

/// The signal received during the build, if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Fails when a signal arrived: called between steps, so nothing new starts after it.
pub fn check() -> Result<()> {
    if let Some(sig) = pending() {
        bail!(
            "interrupted by {}: stopped before the next step; outputs already built are kept, nothing partial was recorded",
            name(sig)
        );
    }
    Ok(())
}

/// Held while a build uses `_out/`; the lock goes with the process. Nested takes in one process
/// (`ci` holding it while its build stage takes it) hold nothing more.
pub struct OutLock {
    file: Option<File>,
}

impl Drop for OutLock {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            HELD.store(false, Ordering::SeqCst);
        }
    }
}

static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Takes `_out/.lock`, or refuses naming the process that holds it.
pub fn lock_out_dir(project: &Project) -> Result<OutLock> {
    if HELD.load(Ordering::SeqCst) {
        return Ok(OutLock { file: None });
    }
    let dir = project.out_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    let path = dir.join(".lock");
    let shown = project.display(&path).to_owned();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {shown}"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "another build is using {} in this checkout ({}; lock {shown}): wait for it to finish or stop it, then run again",
                project.display(&dir),
                if holder.is_empty() {
                    "process unknown".to_owned()
                } else {
                    format!("pid {holder}")
                }
            );
        }
        Err(TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("locking {shown}"));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    HELD.store(true, Ordering::SeqCst);
    Ok(OutLock { file: Some(file) })
}
