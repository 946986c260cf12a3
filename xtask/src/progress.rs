//! Progress on long steps: a line when a step starts, a line every 15 s while it runs, and one
//! with the elapsed time when it ends. Quiet under `--json` and `--dry-run`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet }
    }

    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Runs `f`, reporting elapsed time on stderr while it runs.
    pub fn run<T>(&self, label: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        if self.quiet {
            return f();
        }
        let started = Instant::now();
        eprintln!("{label} ...");
        let (stop, stopped) = mpsc::channel::<()>();
        let ticker_label = label.to_owned();
        let ticker = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_secs(15))
            {
                eprintln!("{ticker_label}: still running ({})", elapsed(started));
            }
        });
        let result = f();
        let _ = stop.send(());
        let _ = ticker.join();
        match &result {
            Ok(_) => eprintln!("{label}: done in {}", elapsed(started)),
            Err(_) => eprintln!("{label}: failed after {}", elapsed(started)),
        }
        result
    }
}

pub fn elapsed(since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", secs as u64 / 60, secs as u64 % 60)
    }
}
