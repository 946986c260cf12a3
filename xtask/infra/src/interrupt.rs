//! Interrupts and exclusive use of `_out/` during a build.
//!
//! While a build's imagers run ([`catch`]), SIGINT and SIGTERM only set a flag: the imager loop
//! sees it, removes its container (which would otherwise run on after xtask is gone), drops the
//! partial output and fails; `main` then exits with 128 + the signal number, as the default
//! action would have.
//!
//! Everywhere else the handlers [`install`] puts in place for the whole process apply: they
//! remove the files registered with [`remove_on_signal`] (a registry credential must not outlive
//! the process) and then take the default action, so the process still ends by the signal.
//!
//! One build per checkout at a time: [`lock_out_dir`] takes an exclusive lock on
//! `_out/.lock` (advisory, released by the kernel when the process ends, even when killed), and a
//! second build refuses clearly instead of sharing the temporary directories.

use std::ffi::{c_char, c_int, CString};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

use camino::Utf8Path;

use anyhow::{bail, Context, Result};

use crate::project::Project;

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: std::ffi::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    PENDING.store(signal, Ordering::SeqCst);
}

// The C library's `signal(2)`, `unlink(2)` and `raise(3)`, which std links on every Unix target;
// declared here rather than adding the libc crate for three functions. Handlers are passed as
// addresses (`sighandler_t`).
extern "C" {
    fn signal(signum: c_int, handler: usize) -> usize;
    fn unlink(path: *const c_char) -> c_int;
    fn raise(signum: c_int) -> c_int;
}

const SIG_ERR: usize = usize::MAX;
const SIG_DFL: usize = 0;
const SIG_IGN: usize = 1;

/// Files to remove when a signal ends the process: fixed slots, as a signal handler may neither
/// allocate nor lock. A registered path is never freed (a few bytes per credential file), so the
/// handler cannot read freed memory.
static REMOVE: [AtomicPtr<c_char>; 8] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 8];

extern "C" fn on_signal_remove(sig: c_int) {
    for slot in &REMOVE {
        let path = slot.load(Ordering::SeqCst);
        if !path.is_null() {
            // SAFETY: `unlink` is async-signal-safe; the path is a leaked, NUL-terminated string.
            unsafe { unlink(path) };
        }
    }
    // SAFETY: `signal` and `raise` are async-signal-safe; the default action ends the process.
    unsafe {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/// For the whole process: SIGINT and SIGTERM remove the registered files, then end it as their
/// default action would. A signal the parent set to be ignored stays ignored.
pub fn install() {
    let handler = on_signal_remove as extern "C" fn(c_int) as usize;
    for sig in [SIGINT, SIGTERM] {
        // Asked as "ignore" first, so that an ignored signal is never handled in between.
        // SAFETY: setting SIG_IGN and the handler, which only calls async-signal-safe functions.
        let old = unsafe { signal(sig, SIG_IGN) };
        if old != SIG_IGN && old != SIG_ERR {
            unsafe { signal(sig, handler) };
        }
    }
}

/// Registered with [`remove_on_signal`]: the path leaves the list when this is dropped (the
/// owner removes the file itself then).
pub struct RemoveOnSignal {
    slot: usize,
}

/// Registers `path` to be removed if a signal ends the process before the returned guard is
/// dropped. Register before creating the file, so that no moment leaves it behind.
pub fn remove_on_signal(path: &Utf8Path) -> Result<RemoveOnSignal> {
    let path = CString::new(path.as_str())
        .with_context(|| format!("{path}: a path with a NUL byte"))?
        .into_raw();
    for (slot, cell) in REMOVE.iter().enumerate() {
        if cell
            .compare_exchange(
                std::ptr::null_mut(),
                path,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            return Ok(RemoveOnSignal { slot });
        }
    }
    bail!(
        "more than {} temporary credential files at once",
        REMOVE.len()
    )
}

impl Drop for RemoveOnSignal {
    fn drop(&mut self) {
        // leaked on purpose (see REMOVE)
        REMOVE[self.slot].store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}

/// SIGINT and SIGTERM set the pending flag until this is dropped, which restores the previous
/// handlers ([`install`]'s).
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
