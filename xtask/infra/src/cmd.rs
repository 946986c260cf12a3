//! The one way xtask runs an external command, and the one way `--dry-run` prints one.
//!
//! API (everything that starts a process goes through it; a tidy test holds that line):
//! - [`Cmd`]: a command value. `Cmd::new(program)` then `.arg`, `.args`, `.env`, `.env_remove`,
//!   `.current_dir`, `.stdin_bytes` / `.stdin_text(label, text)` (a heredoc when printed),
//!   `.stdout(Io)` / `.stderr(Io)` (default: both captured, stdin empty), and the secrets:
//!   `.secret(value)`, a value (an argument, a variable's value, part of one) redacted wherever
//!   it appears.
//! - Running it, the same in every mode (for queries that change nothing, and for code that
//!   already asked the [`Runner`]): `.run()` (fails naming the command and its stderr tail),
//!   `.read()` / `.read_bytes()` (stdout), `.output()` (status not checked; `.check(&out)`
//!   turns it into the same error), `.status()`, `.spawn()` (a `std::process::Child`, for
//!   interrupt loops), `.pipe(next)` (a [`Pipeline`] to spawn), `.std_command()` (for what only
//!   std can set, such as `pre_exec`).
//! - Printing it: `Display` is the shell line a user can paste (secrets as `<redacted>`, words
//!   quoted by [`quote`], a directory as a `(cd DIR && ...)` subshell, a heredoc body after the
//!   line); `.line()` is the first line only (for errors). [`shell_line`] quotes plain words.
//! - [`Runner`]: the mode, passed down instead of a `dry_run` flag. `runner.run(&cmd)` prints
//!   the command in a dry run and runs it otherwise; `runner.act(&shown, || ...)` does the same
//!   for work done in Rust that a dry run shows as its shell equivalent (`mv`, `mkdir -p`);
//!   `runner.silently(|| ...)` skips work a dry run need not show (scratch directories);
//!   `runner.note(text)` prints `# text` in a dry run only.
//!
//! What a printed line leaves out, on purpose: variables removed from the environment (they
//! only keep the caller's environment from leaking in, see `crate::git`) and where stderr goes
//! (a log file): both change what a command reports, not what it does.

use std::fmt;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use domain::shell::{quote, shell_line, REDACTED};

/// Lines of stderr an error quotes.
const TAIL: usize = 15;

/// Where a command's stdout or stderr goes.
pub enum Io {
    /// Kept for the caller (stdout) or for the error message (stderr).
    Capture,
    /// The terminal of xtask itself.
    Inherit,
    Null,
    /// Written to this file (created or truncated).
    File(Utf8PathBuf),
}

#[derive(Debug, Clone)]
enum Input {
    Null,
    /// Shown as a heredoc `<<'LABEL'`.
    Bytes {
        label: String,
        bytes: Vec<u8>,
    },
}

/// An external command: program, arguments, environment changes, directory, stdio and the
/// values that must never be shown.
pub struct Cmd {
    program: String,
    args: Vec<String>,
    /// In order; `None` removes the variable.
    env: Vec<(String, Option<String>)>,
    cwd: Option<Utf8PathBuf>,
    stdin: Input,
    stdout: Io,
    stderr: Io,
    secrets: Vec<String>,
}

impl Cmd {
    pub fn new(program: impl AsRef<str>) -> Cmd {
        Cmd::of(program.as_ref().to_owned())
    }

    fn of(program: String) -> Cmd {
        Cmd {
            program,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: Input::Null,
            stdout: Io::Capture,
            stderr: Io::Capture,
            secrets: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        for arg in args {
            self.args.push(arg.as_ref().to_owned());
        }
        self
    }

    pub fn env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<str>) -> Cmd {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// A value redacted wherever it appears: in the printed line, in errors, and in
    /// [`Cmd::redact`]ed text (e.g. a token inside `--creds=user:TOKEN`, or echoed on stderr).
    pub fn secret(mut self, value: impl AsRef<str>) -> Cmd {
        self.add_secret(value.as_ref());
        self
    }

    fn add_secret(&mut self, value: &str) {
        if value.is_empty() || self.secrets.iter().any(|s| s == value) {
            return;
        }
        // longest first, so that a secret containing another is redacted whole
        let at = self.secrets.iter().position(|s| s.len() < value.len());
        let at = at.unwrap_or(self.secrets.len());
        self.secrets.insert(at, value.to_owned());
    }

    pub fn current_dir(self, dir: impl AsRef<Utf8Path>) -> Cmd {
        self.in_dir(dir.as_ref())
    }

    fn in_dir(mut self, dir: &Utf8Path) -> Cmd {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// stdin from these bytes, printed as a heredoc `<<'EOF'`.
    pub fn stdin_bytes(self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin_text("EOF", bytes)
    }

    /// stdin from this text, printed as a heredoc with this delimiter (`<<'PROFILE'`).
    pub fn stdin_text(mut self, label: &str, text: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Input::Bytes {
            label: label.to_owned(),
            bytes: text.into(),
        };
        self
    }

    pub fn stdout(mut self, io: Io) -> Cmd {
        self.stdout = io;
        self
    }

    pub fn stderr(mut self, io: Io) -> Cmd {
        self.stderr = io;
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// `text` with every secret of this command replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), REDACTED);
        }
        text
    }

    /// `a | b`: this command's stdout is `next`'s stdin.
    pub fn pipe(self, next: Cmd) -> Pipeline {
        Pipeline(vec![self, next])
    }

    /// The shell line, without a heredoc body: what errors name.
    pub fn line(&self) -> String {
        let mut line = String::new();
        // a subshell, so that pasting several lines does not move the shell that reads them
        if let Some(dir) = &self.cwd {
            line.push_str(&format!("(cd {} && ", quote(&self.redact(dir.as_str()))));
        }
        for (key, value) in &self.env {
            if let Some(value) = value {
                line.push_str(&format!("{key}={} ", quote(&self.redact(value))));
            }
        }
        let mut words = vec![self.redact(&self.program)];
        for arg in &self.args {
            words.push(self.redact(arg));
        }
        line.push_str(&shell_line(&words));
        if let Input::Bytes { label, .. } = &self.stdin {
            line.push_str(&format!(" <<'{label}'"));
        }
        if let Io::File(path) = &self.stdout {
            line.push_str(&format!(" > {}", quote(path.as_str())));
        }
        if self.cwd.is_some() {
            line.push(')');
        }
        line
    }

    /// The heredoc body and delimiter line that follow [`Cmd::line`], if stdin is text.
    fn heredoc(&self) -> Option<String> {
        let Input::Bytes { label, bytes } = &self.stdin else {
            return None;
        };
        let text = String::from_utf8_lossy(bytes);
        let mut body = self.redact(&text);
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        Some(format!("{body}{label}"))
    }

    fn command(&self, piped_stdin: bool) -> Result<Command> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        command.stdin(match &self.stdin {
            Input::Null => Stdio::null(),
            Input::Bytes { .. } => Stdio::piped(),
        });
        if piped_stdin {
            command.stdin(Stdio::piped());
        }
        command.stdout(self.stdio(&self.stdout)?);
        command.stderr(self.stdio(&self.stderr)?);
        Ok(command)
    }

    fn stdio(&self, io: &Io) -> Result<Stdio> {
        Ok(match io {
            Io::Capture => Stdio::piped(),
            Io::Inherit => Stdio::inherit(),
            Io::Null => Stdio::null(),
            Io::File(path) => std::fs::File::create(path)
                .with_context(|| format!("`{}`: creating {path}", self.line()))?
                .into(),
        })
    }

    /// The `std::process::Command` this runs, for a caller that must set what `Cmd` does not
    /// (e.g. `pre_exec`, so that qemu dies with xtask); stdin bytes are not written by it.
    pub fn std_command(&self) -> Result<Command> {
        self.command(false)
    }

    /// Starts the command with its stdio as configured (`Io::Capture` is a pipe the caller
    /// reads); stdin bytes are written by a thread of their own.
    pub fn spawn(&self) -> Result<std::process::Child> {
        let mut child = self.start(&mut self.command(false)?)?;
        self.feed_stdin(&mut child);
        Ok(child)
    }

    /// Spawns `command` (this one's, as [`Cmd::command`] made it), naming it when that fails.
    fn start(&self, command: &mut Command) -> Result<std::process::Child> {
        command.spawn().with_context(|| {
            format!(
                "starting `{}` (is {} installed?)",
                self.line(),
                self.program
            )
        })
    }

    /// Writes the stdin bytes, if any, to `child` from a thread of its own.
    fn feed_stdin(&self, child: &mut std::process::Child) {
        if let Input::Bytes { bytes, .. } = &self.stdin {
            let mut stdin = child.stdin.take().expect("stdin is piped");
            let bytes = bytes.clone();
            // A write error means the command exited early; its status says why.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
    }

    /// Runs to the end; the status is not checked.
    pub fn output(&self) -> Result<Output> {
        let child = self.spawn()?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{}`", self.line()))?;
        Ok(Output {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Runs to the end; the exit status, whatever it is.
    pub fn status(&self) -> Result<ExitStatus> {
        Ok(self.output()?.status)
    }

    /// Runs and fails unless the command succeeded, naming it and the tail of its stderr.
    pub fn run(&self) -> Result<()> {
        self.read_bytes().map(drop)
    }

    /// stdout of a successful run.
    pub fn read_bytes(&self) -> Result<Vec<u8>> {
        let out = self.output()?;
        self.check(&out)?;
        Ok(out.stdout)
    }

    /// stdout of a successful run as text, one trailing newline removed.
    pub fn read(&self) -> Result<String> {
        let bytes = self.read_bytes()?;
        let mut text = String::from_utf8(bytes)
            .with_context(|| format!("`{}` printed output that is not UTF-8", self.line()))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(text)
    }

    /// Fails naming the command (redacted), its status and its stderr tail.
    pub fn check(&self, out: &Output) -> Result<()> {
        if out.status.success() {
            return Ok(());
        }
        let tail = self.redact(&tail(&String::from_utf8_lossy(&out.stderr), TAIL));
        if tail.is_empty() {
            bail!("`{}` failed ({})", self.line(), out.status);
        }
        bail!("`{}` failed ({}):\n{tail}", self.line(), out.status)
    }
}

impl fmt::Display for Cmd {
    /// The line a user can paste into a shell, followed by its heredoc body if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())?;
        if let Some(heredoc) = self.heredoc() {
            write!(f, "\n{heredoc}")?;
        }
        Ok(())
    }
}

/// A finished command: its status and what it wrote to the captured streams.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Commands whose stdout feeds the next one's stdin (`a | b`).
pub struct Pipeline(Vec<Cmd>);

impl Pipeline {
    /// Starts every command, each stdout connected to the next stdin (the last command's
    /// stdout, and every stderr, as configured). The children in order.
    pub fn spawn(&self) -> Result<Vec<std::process::Child>> {
        let mut children: Vec<std::process::Child> = Vec::new();
        for (i, cmd) in self.0.iter().enumerate() {
            let last = i + 1 == self.0.len();
            let mut command = cmd.command(false)?;
            if !last {
                command.stdout(Stdio::piped());
            }
            if let Some(previous) = children.last_mut() {
                let out = previous.stdout.take().expect("stdout is piped");
                command.stdin(out);
            }
            let mut child = cmd.start(&mut command)?;
            if i == 0 {
                cmd.feed_stdin(&mut child);
            }
            children.push(child);
        }
        Ok(children)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = Vec::new();
        for cmd in &self.0 {
            lines.push(cmd.line());
        }
        f.write_str(&lines.join(" | "))?;
        for cmd in &self.0 {
            if let Some(heredoc) = cmd.heredoc() {
                write!(f, "\n{heredoc}")?;
            }
        }
        Ok(())
    }
}

/// Whether commands run or are printed: passed down from the subcommand's `--dry-run`.
#[derive(Clone, Copy, Default)]
pub struct Runner {
    dry_run: bool,
}

impl Runner {
    /// Commands run.
    pub const REAL: Runner = Runner { dry_run: false };
    /// Commands are printed on stdout, exactly, and nothing runs.
    pub const DRY_RUN: Runner = Runner { dry_run: true };

    pub fn new(dry_run: bool) -> Runner {
        Runner { dry_run }
    }

    /// What names a scratch file or container as this process's (the process id), so that two
    /// runs at once do not collide; `PID` in a dry run, so that two dry runs print the same.
    pub fn process_tag(self) -> String {
        match self.dry_run {
            true => "PID".into(),
            false => std::process::id().to_string(),
        }
    }

    pub fn is_dry_run(self) -> bool {
        self.dry_run
    }

    /// An action: printed in a dry run, else run to success ([`Cmd::run`]).
    pub fn run(self, cmd: &Cmd) -> Result<()> {
        self.act(cmd, || cmd.run()).map(drop)
    }

    /// Work that changes something: in a dry run `shown` (a [`Cmd`], a [`Pipeline`], or the
    /// shell equivalent of work done in Rust) is printed and `act` is not called (`None`);
    /// otherwise `act` runs.
    pub fn act<T>(
        self,
        shown: &dyn fmt::Display,
        act: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        if self.show(shown) {
            return Ok(None);
        }
        act().map(Some)
    }

    /// In a dry run prints `shown` and says `true`; otherwise does nothing.
    fn show(self, shown: &dyn fmt::Display) -> bool {
        if self.dry_run {
            // one locked write, so that lines of concurrent builds do not interleave
            println!("{shown}");
        }
        self.dry_run
    }

    /// Work a dry run skips without a word (scratch directories, records): what it would
    /// change is already said by the commands printed around it. `None` in a dry run.
    pub fn silently<T>(self, act: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        if self.dry_run {
            return Ok(None);
        }
        act().map(Some)
    }

    /// `# text` for the reader of a dry run; nothing otherwise.
    pub fn note(self, text: &str) {
        if self.dry_run {
            println!("# {text}");
        }
    }
}

/// The last `n` lines of `text`, each as `  | line`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut tail = Vec::new();
    for line in &lines[lines.len().saturating_sub(n)..] {
        tail.push(format!("  | {line}"));
    }
    tail.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_read_them_otherwise() {
        let cmd =
            Cmd::new("podman").args(["run", "--rm", "-i", "ghcr.io/siderolabs/imager:v1.13.99"]);
        assert_eq!(
            cmd.to_string(),
            "podman run --rm -i ghcr.io/siderolabs/imager:v1.13.99"
        );
        let cmd = Cmd::new("echo").args(["a b", "it's", "", "$HOME", "a*", "x;y"]);
        assert_eq!(
            cmd.to_string(),
            r#"echo 'a b' 'it'\''s' '' '$HOME' 'a*' 'x;y'"#
        );
    }

    #[test]
    fn secrets_never_appear_in_the_line_or_in_errors() {
        let cmd = Cmd::new("sh")
            .args(["-c", "echo \"denied for $TOKEN\" >&2; exit 3"])
            .env("TOKEN", "ghp_secretvalue")
            .secret("ghp_secretvalue")
            .env("PLAIN", "visible")
            .arg("ghp_argsecret")
            .secret("ghp_argsecret")
            .arg("--creds=ci:ghp_secretvalue");
        let line = cmd.to_string();
        assert_eq!(
            line,
            "TOKEN='<redacted>' PLAIN=visible sh -c 'echo \"denied for $TOKEN\" >&2; exit 3' '<redacted>' '--creds=ci:<redacted>'"
        );
        let err = format!("{:#}", cmd.run().unwrap_err());
        assert!(!err.contains("ghp_"), "{err}");
        assert!(
            err.contains("denied for <redacted>"),
            "stderr tail quoted: {err}"
        );
        assert!(err.contains("exit status: 3"), "{err}");
        assert_eq!(cmd.redact("x ghp_secretvalue y"), "x <redacted> y");
    }

    #[test]
    fn a_failure_names_the_command_and_the_last_lines_of_stderr() {
        let script = "for i in $(seq 1 40); do echo line$i >&2; done; exit 1";
        let err = Cmd::new("sh")
            .args(["-c", script])
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`sh -c 'for i in"), "{err}");
        assert!(
            err.contains("  | line40") && err.contains("  | line26"),
            "{err}"
        );
        assert!(!err.contains("line25\n"), "only the tail: {err}");
        let err = Cmd::new("xtask-no-such-program").run().unwrap_err();
        assert!(
            format!("{err:#}").contains("is xtask-no-such-program installed?"),
            "{err:#}"
        );
    }

    #[test]
    fn stdin_prints_as_a_heredoc_and_pipelines_as_one_line() {
        let imager = Cmd::new("podman")
            .args(["run", "-i", "img"])
            .stdin_text("PROFILE", "arch: arm64\n")
            .stderr(Io::File("log".into()));
        let tar = Cmd::new("tar").args(["-xzf", "-", "-C", "out dir"]);
        assert_eq!(
            imager.pipe(tar).to_string(),
            "podman run -i img <<'PROFILE' | tar -xzf - -C 'out dir'\narch: arm64\nPROFILE"
        );
        let cmd = Cmd::new("git")
            .current_dir("/tmp/a b")
            .env_remove("GIT_DIR")
            .args(["status"])
            .stdout(Io::File("out.txt".into()));
        assert_eq!(cmd.to_string(), "(cd '/tmp/a b' && git status > out.txt)");
    }

    #[test]
    fn commands_run_with_their_stdin_environment_and_directory() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo \"$A\"; pwd"])
            .env("A", "from env")
            .current_dir("/")
            .stdin_bytes("from stdin\n")
            .read()
            .unwrap();
        assert_eq!(out, "from stdin\nfrom env\n/");
        std::env::set_var("XTASK_CMD_TEST_REMOVED", "inherited");
        let out = Cmd::new("sh")
            .args(["-c", "echo \"[$XTASK_CMD_TEST_REMOVED]\""])
            .env_remove("XTASK_CMD_TEST_REMOVED")
            .read()
            .unwrap();
        assert_eq!(out, "[]");
        let piped = Cmd::new("printf")
            .arg("b\\na\\n")
            .pipe(Cmd::new("sort"))
            .spawn()
            .unwrap();
        let sorted = piped
            .into_iter()
            .last()
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert_eq!(sorted.stdout, b"a\nb\n");
    }

    #[test]
    fn stdout_streams_into_a_file() {
        let path = std::env::temp_dir().join(format!("xtask-cmd-{}.txt", std::process::id()));
        let path = Utf8PathBuf::try_from(path).unwrap();
        Cmd::new("echo")
            .arg("to a file")
            .stdout(Io::File(path.clone()))
            .run()
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "to a file\n");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_dry_run_prints_instead_of_acting() {
        let mut called = false;
        let done = Runner::DRY_RUN
            .act(&Cmd::new("false"), || {
                called = true;
                Ok(())
            })
            .unwrap();
        assert_eq!((done, called), (None, false));
        assert!(
            Runner::DRY_RUN.run(&Cmd::new("false")).is_ok(),
            "printed, not run"
        );
        assert!(Runner::REAL.run(&Cmd::new("false")).is_err(), "run");
        assert_eq!(Runner::REAL.silently(|| Ok(1)).unwrap(), Some(1));
        assert_eq!(Runner::DRY_RUN.silently(|| Ok(1)).unwrap(), None);
    }
}
