//! Progress of long steps (pulling, imager runs, pushing, booting) on stderr, with elapsed time.
//!
//! On a terminal one status line is redrawn in place; elsewhere (CI logs) a heartbeat line is
//! printed every `HEARTBEAT` so a log shows the step is alive without flooding it. Quiet mode
//! (`--json`) prints nothing: stdout stays machine-readable and stderr stays empty.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a non-terminal log gets a "still running" line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often a terminal status line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(250);

pub struct Progress {
    label: String,
    start: Instant,
    quiet: bool,
    tty: bool,
    state: Mutex<State>,
}

struct State {
    last_print: Option<Instant>,
    /// A status line is drawn on the terminal and must be cleared before other output.
    drawn: bool,
}

impl Progress {
    /// Starts timing a step silently; the caller notes how it starts.
    pub fn new(label: impl Into<String>, quiet: bool) -> Progress {
        Progress {
            label: label.into(),
            start: Instant::now(),
            quiet,
            tty: std::io::stderr().is_terminal(),
            state: Mutex::new(State {
                last_print: None,
                drawn: false,
            }),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Shows what the step is doing now; rate-limited, so call it as often as convenient.
    pub fn update(&self, detail: &str) {
        if self.quiet {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let every = if self.tty { REDRAW } else { HEARTBEAT };
        if state
            .last_print
            .is_some_and(|last| now.duration_since(last) < every)
        {
            return;
        }
        state.last_print = Some(now);
        let line = format!(
            "{}: {} {}",
            self.label,
            format_elapsed(self.elapsed()),
            detail
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let width = terminal_width();
            let shown: String = line.chars().take(width.saturating_sub(1)).collect();
            let _ = write!(err, "\r\x1b[K{shown}");
            state.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// A milestone: always printed on its own line (unless quiet), with the elapsed time.
    pub fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if state.drawn {
            let _ = write!(err, "\r\x1b[K");
            state.drawn = false;
        }
        let _ = writeln!(
            err,
            "{}: {} {message}",
            self.label,
            format_elapsed(self.elapsed())
        );
        state.last_print = Some(Instant::now());
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if state.drawn {
            eprint!("\r\x1b[K");
        }
    }
}

/// Progress for a whole command run: quiet or not, handing out labelled steps.
pub struct Steps {
    quiet: bool,
}

impl Steps {
    pub fn new(quiet: bool) -> Steps {
        Steps { quiet }
    }

    /// A one-off line (a cache hit, a skipped step).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A long step with elapsed-time progress: runs `work` while a heartbeat shows the step's
    /// elapsed time, then notes how it ended. For steps that print nothing themselves while they
    /// run (an imager run, a push).
    pub fn run<T>(
        &self,
        label: &str,
        work: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let ticker = Ticker::start(label, self.quiet);
        let result = work();
        ticker.stop(result.is_ok());
        result
    }
}

/// The heartbeat of one [`Steps::run`]: a thread that updates the progress until stopped.
struct Ticker {
    progress: Arc<Progress>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Ticker {
    /// Prints `label: started` (unless quiet) and starts the heartbeat.
    fn start(label: &str, quiet: bool) -> Ticker {
        let progress = Arc::new(Progress::new(label, quiet));
        progress.note("started");
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let progress = Arc::clone(&progress);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    progress.update("running");
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Ticker {
            progress,
            done,
            thread,
        }
    }

    /// Stops the heartbeat and notes how the step ended.
    fn stop(self, ok: bool) {
        self.done.store(true, Ordering::Relaxed);
        // a panic of the heartbeat goes on here, with its own payload (see xtask's `main`)
        if let Err(payload) = self.thread.join() {
            std::panic::resume_unwind(payload);
        }
        self.progress.note(if ok { "done" } else { "failed" });
    }
}

/// `12.3s` below a minute, `4m05s` above.
pub fn format_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("[{secs:5.1}s]")
    } else {
        let whole = elapsed.as_secs();
        format!("[{}m{:02}s]", whole / 60, whole % 60)
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_is_short_and_aligned() {
        assert_eq!(format_elapsed(Duration::from_millis(2_340)), "[  2.3s]");
        assert_eq!(format_elapsed(Duration::from_secs(59)), "[ 59.0s]");
        assert_eq!(format_elapsed(Duration::from_secs(245)), "[4m05s]");
    }

    #[test]
    fn a_step_passes_the_result_through() {
        let steps = Steps::new(true);
        assert_eq!(steps.run("t", || Ok(7)).unwrap(), 7);
        assert!(steps.run::<()>("t", || anyhow::bail!("no")).is_err());
    }
}
