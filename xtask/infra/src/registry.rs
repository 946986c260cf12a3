//! The registry client: skopeo, wrapped in a small typed API that every stage shares (lock
//! resolution, build publishing, smoke tag checks).
//!
//! Why an external tool and not a crate: see docs/dev/registry-client.md (an HTTP/TLS stack would
//! triple xtask's cold build; skopeo already speaks the distribution protocol, bearer-token auth
//! and every auth file format).
//!
//! What this layer adds on top of skopeo:
//! - mirrors: `--registry-mirror ghcr.io=HOST:PORT` (repeatable, or `REGISTRY_MIRRORS`) rewrites
//!   references to a mirror (plain HTTP, or HTTPS without certificate checks), for air-gapped
//!   users and for the tests;
//! - auth: `--authfile`/`REGISTRY_AUTH_FILE`, skopeo's default auth files, or `GITHUB_TOKEN` for
//!   ghcr.io, handed to skopeo in a private temporary auth file so it never appears on a command
//!   line, in `--dry-run` output or in an error;
//! - bounded retries with exponential backoff on 429, 5xx, timeouts and refused connections, and
//!   errors that say which reference was not found or not allowed;
//! - a count of the registry commands run, so callers can report what a stage cost.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cmd::{Cmd, Runner};

/// Registry options shared by every subcommand that talks to a registry.
#[derive(Clone, clap::Args)]
pub struct RegistryArgs {
    /// Resolve `REGISTRY` through the mirror `HOST:PORT` instead (plain HTTP, or HTTPS without
    /// certificate checks), e.g. `ghcr.io=127.0.0.1:5000` (repeatable; env: comma-separated list).
    #[arg(
        long = "registry-mirror",
        value_name = "REGISTRY=HOST:PORT",
        env = "REGISTRY_MIRRORS",
        value_delimiter = ','
    )]
    pub mirrors: Vec<String>,
    /// Credentials file (containers auth.json or docker config.json). Default: skopeo's lookup
    /// ($REGISTRY_AUTH_FILE, containers/auth.json, ~/.docker/config.json); $GITHUB_TOKEN is used
    /// for ghcr.io when no file is given.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<Utf8PathBuf>,
}

/// `ghcr.io=127.0.0.1:5000`: references on `registry` are fetched from `endpoint` (`--tls-verify=false`).
#[derive(Debug)]
pub struct Mirror {
    pub registry: String,
    pub endpoint: String,
}

impl Mirror {
    pub fn parse(spec: &str) -> Result<Mirror> {
        let fix = "write it as REGISTRY=HOST:PORT, e.g. --registry-mirror ghcr.io=127.0.0.1:5000";
        let shown = domain::shell::address_shown;
        let (registry, endpoint) = spec.trim().split_once('=').ok_or_else(|| {
            domain::diag::Usage(format!(
                "--registry-mirror (or REGISTRY_MIRRORS) `{}` has no `=`\n    fix: {fix}",
                shown(spec)
            ))
        })?;
        let valid = domain::image::is_host;
        if !valid(registry) || !valid(endpoint) {
            // each side may carry credentials (`u:token@host`, `https://u:token@host`)
            let spec = match spec.split_once('=') {
                Some((before, after)) => format!("{}={}", shown(before), shown(after)),
                None => spec.to_owned(),
            };
            return domain::diag::usage(format!("--registry-mirror (or REGISTRY_MIRRORS) `{spec}` is not REGISTRY=HOST:PORT (host names only, a port from 1 to 65535, no scheme or path)\n    fix: {fix}"));
        }
        Ok(Mirror {
            registry: registry.to_owned(),
            endpoint: endpoint.to_owned(),
        })
    }
}

/// Where a registry command spends its time before giving up, and how long it waits in between.
pub struct Retry {
    /// Total tries, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one.
    pub base: Duration,
    /// Timeout of one read (`inspect`), skopeo's `--command-timeout`; copies get ten times it,
    /// since they move whole images.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 4,
            base: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Retry {
    /// The defaults, with `XTASK_RETRY_ATTEMPTS`, `XTASK_RETRY_BASE_MS` and
    /// `XTASK_REGISTRY_TIMEOUT_SECS` applied (tests shorten them). An empty variable counts as
    /// unset; a value that is not a whole number in its range is a usage error naming the
    /// variable, every one of them at once.
    pub fn from_env() -> Result<Retry> {
        // a value that is not Unicode is refused as a bad value, not read as unset
        Retry::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Retry> {
        let mut retry = Retry::default();
        let mut problems = Vec::new();
        let mut read = |name: &str,
                        range: std::ops::RangeInclusive<u64>,
                        what: &str,
                        unset: &str| {
            let value = var(name).filter(|v| !v.is_empty())?;
            match value.parse::<u64>() {
                Ok(n) if range.contains(&n) => Some(n),
                _ => {
                    let (low, high) = (range.start(), range.end());
                    problems.push(format!(
                        "{name} = {value:?}: not a whole number from {low} to {high}\n    fix: set {name} to {what}, {low} to {high}, or unset it for {unset}"
                    ));
                    None
                }
            }
        };
        let attempts = read("XTASK_RETRY_ATTEMPTS", 1..=10, "the number of tries", "4");
        let base = read(
            "XTASK_RETRY_BASE_MS",
            0..=60_000,
            "the wait before the second try in milliseconds (doubled for each further one)",
            "1000",
        );
        // copies get ten times it, and skopeo takes it in seconds
        let timeout = read(
            "XTASK_REGISTRY_TIMEOUT_SECS",
            1..=86_400,
            "the timeout of one registry read in seconds (copies get ten times it)",
            "60",
        );
        if !problems.is_empty() {
            return domain::diag::usage(problems.join("\n"));
        }
        if let Some(n) = attempts.and_then(|n| u32::try_from(n).ok()) {
            retry.attempts = n;
        }
        if let Some(ms) = base {
            retry.base = Duration::from_millis(ms);
        }
        if let Some(secs) = timeout {
            retry.timeout = Duration::from_secs(secs);
        }
        Ok(retry)
    }

    /// The wait after failed try number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base * 2u32.saturating_pow(attempt.saturating_sub(1).min(10))
    }
}

/// What a failed registry command means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    Unauthorized,
    Forbidden,
    /// 429, 5xx, timeouts, refused or reset connections: worth another try.
    Transient,
    Other,
}

/// Classifies skopeo's error output (containers/image's messages, which carry the registry's
/// error codes and HTTP statuses).
pub fn classify(stderr: &str) -> Failure {
    let s = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if any(&[
        "manifest unknown",
        "name unknown",
        "blob unknown",
        "not found",
        "status: 404",
        "404 not found",
    ]) {
        Failure::NotFound
    } else if any(&[
        "unauthorized",
        "authentication required",
        "status: 401",
        "invalid username/password",
    ]) {
        Failure::Unauthorized
    } else if any(&["denied", "forbidden", "status: 403"]) {
        Failure::Forbidden
    } else if any(&[
        "toomanyrequests",
        "too many requests",
        "status: 429",
        "status: 500",
        "status: 502",
        "status: 503",
        "status: 504",
        "internal server error",
        "bad gateway",
        "service unavailable",
        "gateway timeout",
        "timeout",
        "deadline exceeded",
        "connection refused",
        "connection reset",
        "broken pipe",
        "unexpected eof",
        "no such host",
        "network is unreachable",
    ]) {
        Failure::Transient
    } else {
        Failure::Other
    }
}

/// A registry command failed; `failure` says how.
#[derive(Debug)]
pub struct RegistryError {
    pub reference: String,
    pub failure: Failure,
    pub message: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.reference;
        match self.failure {
            Failure::NotFound => write!(
                f,
                "{r} was not found in the registry\n    fix: check the name and tag; behind --registry-mirror, copy the image into the mirror"
            )?,
            Failure::Unauthorized => write!(
                f,
                "{r}: the registry refused the credentials (401 unauthorized)\n    fix: log in with `skopeo login`, pass --authfile, or set GITHUB_TOKEN for ghcr.io"
            )?,
            Failure::Forbidden => write!(
                f,
                "{r}: access denied (403): the credentials in use may not read or write it"
            )?,
            Failure::Transient => write!(
                f,
                "{r}: the registry could not be reached\n    fix: check the network (or the mirror's address); without network access, resolve through a mirror with --registry-mirror ghcr.io=HOST:PORT"
            )?,
            Failure::Other => write!(f, "{r}: the registry command failed")?,
        }
        write!(f, "\n    skopeo said: {}", self.message)
    }
}

impl std::error::Error for RegistryError {}

/// One skopeo command line; printable exactly as it runs (it never carries a secret: credentials
/// travel in a private auth file).
pub struct SkopeoCmd {
    pub args: Vec<String>,
    /// The reference errors name (as the user wrote it, before mirror rewriting).
    pub reference: String,
}

impl SkopeoCmd {
    pub fn to_cmd(&self) -> Cmd {
        Cmd::new("skopeo").args(&self.args)
    }
}

impl fmt::Display for SkopeoCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_cmd().fmt(f)
    }
}

/// Where a reference is actually fetched from.
#[derive(Clone)]
pub struct Target {
    /// `docker://…` transport string for skopeo.
    pub transport: String,
    /// Plain HTTP without certificate checks (mirrors, loopback registries).
    pub insecure: bool,
    pub host: String,
}

/// The registry client. Build one per subcommand run with `Skopeo::new` and share it.
pub struct Skopeo {
    mirrors: Vec<Mirror>,
    authfile: Option<Utf8PathBuf>,
    /// GITHUB_TOKEN credentials for ghcr.io, written to a private temp file on first use.
    github_token: Option<Secret>,
    token_file: std::cell::OnceCell<TempAuthFile>,
    retry: Retry,
    /// Mutating commands (copies) are printed instead of run in a dry run; reads always run.
    pub runner: Runner,
    commands: Cell<u32>,
}

struct Secret {
    user: String,
    token: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}:***)", self.user)
    }
}

impl Skopeo {
    pub fn new(args: &RegistryArgs) -> Result<Skopeo> {
        let mut mirrors = Vec::new();
        for m in &args.mirrors {
            if !m.trim().is_empty() {
                mirrors.push(Mirror::parse(m)?);
            }
        }
        if let Some(file) = &args.authfile {
            if !file.is_file() {
                let what = if file.exists() {
                    "not a file"
                } else {
                    "no such file"
                };
                return domain::diag::usage(format!("--authfile {file}: {what}\n    fix: name a registry auth file (the JSON `podman login` writes), or drop --authfile"));
            }
        }
        let github_token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(|token| Secret {
                user: std::env::var("GITHUB_ACTOR")
                    .ok()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "token".into()),
                token,
            });
        Ok(Skopeo {
            mirrors,
            authfile: args.authfile.clone(),
            github_token,
            token_file: Default::default(),
            retry: Retry::from_env()?,
            runner: Runner::REAL,
            commands: Cell::new(0),
        })
    }

    /// The flags that reproduce this client's mirrors, for "run this to fix it" hints.
    pub fn mirror_flags(&self) -> String {
        self.mirrors
            .iter()
            .map(|m| format!(" --registry-mirror {}={}", m.registry, m.endpoint))
            .collect()
    }

    /// Registry commands run so far (tries included).
    pub fn commands_run(&self) -> u32 {
        self.commands.get()
    }

    /// Where `reference` (`host/path[:tag][@digest]`) is fetched from, mirrors applied.
    pub fn target(&self, reference: &str) -> Target {
        let (host, rest) = split_host(reference);
        match self.mirrors.iter().find(|m| m.registry == host) {
            Some(m) => Target {
                transport: format!("docker://{}/{rest}", m.endpoint),
                insecure: true,
                host: m.endpoint.clone(),
            },
            None => Target {
                transport: format!("docker://{reference}"),
                insecure: is_loopback(host),
                host: host.to_owned(),
            },
        }
    }

    /// Auth flags for `host`; `prefix` is `""`, `"src-"` or `"dest-"`.
    fn auth_args(&self, host: &str, prefix: &str) -> Result<Vec<String>> {
        if let Some(file) = &self.authfile {
            return Ok(vec![format!("--{prefix}authfile"), file.to_string()]);
        }
        if host == "ghcr.io" && std::env::var_os("REGISTRY_AUTH_FILE").is_none() {
            if let Some(secret) = &self.github_token {
                if self.runner.is_dry_run() {
                    // nothing is written in a dry run, the token least of all; the real run
                    // writes it to a file only we can read, removed when xtask exits
                    return Ok(vec![
                        format!("--{prefix}authfile"),
                        "<a temporary auth file holding $GITHUB_TOKEN>".to_owned(),
                    ]);
                }
                let file = match self.token_file.get() {
                    Some(file) => file,
                    None => {
                        let file = TempAuthFile::write(host, secret)?;
                        self.token_file.get_or_init(|| file)
                    }
                };
                return Ok(vec![format!("--{prefix}authfile"), file.path.to_string()]);
            }
        }
        Ok(Vec::new())
    }

    fn timeout_args(&self, factor: u32) -> Vec<String> {
        vec![
            "--command-timeout".into(),
            format!("{}s", (self.retry.timeout * factor).as_secs()),
        ]
    }

    /// `skopeo inspect --raw docker://REF`: the manifest or index exactly as the registry serves it.
    pub fn inspect_raw_cmd(&self, reference: &str) -> Result<SkopeoCmd> {
        let target = self.target(reference);
        let mut args = self.timeout_args(1);
        args.extend(["inspect".into(), "--raw".into()]);
        if target.insecure {
            args.push("--tls-verify=false".into());
        }
        args.extend(self.auth_args(&target.host, "")?);
        args.push(target.transport);
        Ok(SkopeoCmd {
            args,
            reference: reference.to_owned(),
        })
    }

    /// `skopeo copy SRC DEST` where either side may be a registry reference
    /// (`Location::Registry`) or a local transport (`dir:`, `oci:`, `docker-archive:`).
    pub fn copy_cmd(&self, src: &Location, dest: &Location) -> Result<SkopeoCmd> {
        self.copy_cmd_with(src, dest, false)
    }

    /// Like [`Skopeo::copy_cmd`]; with `all_arches`, an image index is copied whole
    /// (`--multi-arch all`: the index and every image it lists), not only this host's image.
    pub fn copy_cmd_with(
        &self,
        src: &Location,
        dest: &Location,
        all_arches: bool,
    ) -> Result<SkopeoCmd> {
        let mut args = self.timeout_args(10);
        args.extend(["copy".into(), "--quiet".into()]);
        // Registry copies must not rewrite manifests (a digest names what was built); a copy
        // between two local layouts is a format conversion (docker-archive to OCI) on purpose.
        if matches!(src, Location::Registry(_)) || matches!(dest, Location::Registry(_)) {
            args.push("--preserve-digests".into());
        }
        if all_arches {
            args.extend(["--multi-arch".into(), "all".into()]);
        }
        let mut reference = String::new();
        let mut endpoint = |location: &Location, prefix: &str, args: &mut Vec<String>| {
            Ok::<_, anyhow::Error>(match location {
                Location::Registry(r) => {
                    let target = self.target(r);
                    if target.insecure {
                        args.push(format!("--{prefix}tls-verify=false"));
                    }
                    args.extend(self.auth_args(&target.host, prefix)?);
                    if reference.is_empty() {
                        reference = r.clone();
                    }
                    target.transport
                }
                Location::Local(transport) => transport.clone(),
            })
        };
        let from = endpoint(src, "src-", &mut args)?;
        let to = endpoint(dest, "dest-", &mut args)?;
        args.extend([from, to]);
        if reference.is_empty() {
            reference = src.to_string();
        }
        Ok(SkopeoCmd { args, reference })
    }

    /// The manifest or index bytes of `reference`.
    pub fn inspect_raw(&self, reference: &str) -> Result<Vec<u8>> {
        let cmd = self.inspect_raw_cmd(reference)?;
        self.run(&cmd)
    }

    /// Copies one image (by digest, so it cannot move underneath) into a `dir:` layout: its
    /// manifest as `manifest.json` and every blob under its hex digest, compressed as served.
    pub fn fetch_to_dir(&self, reference: &str, dir: &Utf8Path) -> Result<()> {
        let cmd = self.copy_cmd(
            &Location::Registry(reference.to_owned()),
            &Location::Local(format!("dir:{dir}")),
        )?;
        self.run(&cmd)?;
        Ok(())
    }

    /// `skopeo --override-arch ARCH --override-os linux copy docker://REF oci:DIR`: the one
    /// image of `reference` for linux/`arch` (an index is resolved to that platform's manifest)
    /// as an OCI image layout, the form the imager reads from `ociPath`.
    pub fn fetch_to_oci_cmd(
        &self,
        reference: &str,
        arch: &str,
        dir: &Utf8Path,
    ) -> Result<SkopeoCmd> {
        let mut cmd = self.copy_cmd(
            &Location::Registry(reference.to_owned()),
            &Location::Local(format!("oci:{dir}")),
        )?;
        let platform = ["--override-arch", arch, "--override-os", "linux"].map(String::from);
        cmd.args.splice(0..0, platform);
        Ok(cmd)
    }

    /// Copies between two locations; printed instead of run in a dry run (publishing uses it).
    pub fn copy(&self, src: &Location, dest: &Location) -> Result<()> {
        self.copy_with(src, dest, false)
    }

    /// [`Skopeo::copy`], of every architecture of an index with `all_arches`.
    pub fn copy_with(&self, src: &Location, dest: &Location, all_arches: bool) -> Result<()> {
        let cmd = self.copy_cmd_with(src, dest, all_arches)?;
        self.runner.act(&cmd, || self.run(&cmd))?;
        Ok(())
    }

    /// Runs a registry command with bounded retries on transient failures; returns stdout.
    pub fn run(&self, cmd: &SkopeoCmd) -> Result<Vec<u8>> {
        let command = self.command(cmd);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.commands.set(self.commands.get() + 1);
            let output = command.output()?;
            if output.status.success() {
                return Ok(output.stdout);
            }
            let message = command.redact(&skopeo_message(&output.stderr));
            let failure = classify(&message);
            if failure == Failure::Transient && attempt < self.retry.attempts {
                let wait = self.retry.backoff(attempt);
                eprintln!(
                    "registry: {}: {message}; try {attempt} of {} failed, retrying in {} ms",
                    cmd.reference,
                    self.retry.attempts,
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                continue;
            }
            let error = RegistryError {
                reference: cmd.reference.clone(),
                failure,
                message,
            };
            return Err(
                anyhow::Error::new(error).context(if failure == Failure::Transient {
                    format!(
                        "gave up on {} after {attempt} tr{} over {} ms of backoff (`{cmd}`)",
                        cmd.reference,
                        if attempt == 1 { "y" } else { "ies" },
                        (1..attempt)
                            .map(|a| self.retry.backoff(a).as_millis())
                            .sum::<u128>()
                    )
                } else {
                    format!("`{cmd}` failed")
                }),
            );
        }
    }

    /// The command that runs `cmd`, knowing the credential it must never show (skopeo may
    /// echo what it read from the auth file).
    fn command(&self, cmd: &SkopeoCmd) -> Cmd {
        let command = cmd.to_cmd();
        match &self.github_token {
            Some(secret) => command.secret(&secret.token),
            None => command,
        }
    }
}

/// One side of a copy.
pub enum Location {
    /// `host/path:tag` or `host/path@sha256:…`, mirrors and auth applied.
    Registry(String),
    /// A skopeo transport string used as is: `dir:PATH`, `oci:PATH:TAG`, `docker-archive:FILE`.
    Local(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) | Location::Local(r) => f.write_str(r),
        }
    }
}

/// skopeo prints `time=… level=fatal msg="…"`; keep just the message.
fn skopeo_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let msg = text
        .lines()
        .rev()
        .find_map(|line| {
            let start = line.find("msg=\"")? + 5;
            let body = &line[start..];
            let end = body.rfind('"')?;
            Some(body[..end].replace("\\\"", "\""))
        })
        .unwrap_or_else(|| text.to_owned());
    // skopeo 1.9 wraps every inspect failure in this, whatever the cause
    let msg = match msg.strip_prefix("Error parsing image name \"") {
        Some(rest) => rest
            .split_once("\": ")
            .map_or(msg.clone(), |(_, cause)| cause.to_owned()),
        None => msg,
    };
    if msg.is_empty() {
        "(no error output)".into()
    } else {
        msg
    }
}

fn split_host(reference: &str) -> (&str, &str) {
    match reference.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => (host, rest),
        _ => ("docker.io", reference),
    }
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

/// A containers auth.json holding one credential, readable by us only, removed on drop, and
/// by the signal handler when SIGINT or SIGTERM ends the process first.
struct TempAuthFile {
    path: Utf8PathBuf,
    _on_signal: crate::interrupt::RemoveOnSignal,
}

impl TempAuthFile {
    fn write(host: &str, secret: &Secret) -> Result<TempAuthFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = Utf8PathBuf::try_from(std::env::temp_dir()).context("temp dir is not UTF-8")?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("xtask-auth-{}-{nanos}.json", std::process::id()));
        let auth = base64(format!("{}:{}", secret.user, secret.token).as_bytes());
        let body = serde_json::json!({ "auths": { host: { "auth": auth } } });
        let on_signal = crate::interrupt::remove_on_signal(&path)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating the temporary auth file {path}"))?;
        // from here on, a failed write removes the file too
        let auth = TempAuthFile {
            path,
            _on_signal: on_signal,
        };
        file.write_all(body.to_string().as_bytes())
            .with_context(|| format!("writing {}", auth.path))?;
        Ok(auth)
    }
}

impl Drop for TempAuthFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skopeo(mirrors: &[&str]) -> Skopeo {
        let mut s = Skopeo::new(&RegistryArgs {
            mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
            authfile: None,
        })
        .unwrap();
        s.github_token = None;
        s.retry = Retry::default();
        s
    }

    #[test]
    fn mirrors_rewrite_only_their_registry_and_skip_tls() {
        let s = skopeo(&["ghcr.io=127.0.0.1:5000"]);
        let t = s.target("ghcr.io/siderolabs/extensions:v1.13.99");
        assert_eq!(
            t.transport,
            "docker://127.0.0.1:5000/siderolabs/extensions:v1.13.99"
        );
        assert!(t.insecure);
        let other = s.target("quay.io/org/img@sha256:00");
        assert_eq!(other.transport, "docker://quay.io/org/img@sha256:00");
        assert!(!other.insecure);
        assert!(s.target("localhost:5000/a/b:c").insecure);
    }

    #[test]
    fn retry_variables_are_read_in_range_or_refused_all_at_once() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let retry = Retry::from_vars(vars(&[
            ("XTASK_RETRY_ATTEMPTS", "10"),
            ("XTASK_RETRY_BASE_MS", "0"),
            ("XTASK_REGISTRY_TIMEOUT_SECS", ""),
        ]))
        .unwrap();
        assert_eq!(retry.attempts, 10);
        assert_eq!(retry.base, Duration::ZERO);
        assert_eq!(retry.timeout, Duration::from_secs(60), "empty is unset");
        let err = Retry::from_vars(vars(&[
            ("XTASK_RETRY_ATTEMPTS", "4294967296"),
            ("XTASK_RETRY_BASE_MS", "-1"),
            ("XTASK_REGISTRY_TIMEOUT_SECS", "abc"),
        ]))
        .map(|_| ())
        .unwrap_err();
        assert!(domain::diag::is_usage(&err), "{err:#}");
        assert_eq!(
            err.to_string(),
            "XTASK_RETRY_ATTEMPTS = \"4294967296\": not a whole number from 1 to 10\n    fix: set XTASK_RETRY_ATTEMPTS to the number of tries, 1 to 10, or unset it for 4\n\
             XTASK_RETRY_BASE_MS = \"-1\": not a whole number from 0 to 60000\n    fix: set XTASK_RETRY_BASE_MS to the wait before the second try in milliseconds (doubled for each further one), 0 to 60000, or unset it for 1000\n\
             XTASK_REGISTRY_TIMEOUT_SECS = \"abc\": not a whole number from 1 to 86400\n    fix: set XTASK_REGISTRY_TIMEOUT_SECS to the timeout of one registry read in seconds (copies get ten times it), 1 to 86400, or unset it for 60"
        );
        for (name, value) in [
            ("XTASK_RETRY_ATTEMPTS", "0"),
            ("XTASK_RETRY_ATTEMPTS", "11"),
            ("XTASK_RETRY_BASE_MS", "60001"),
            ("XTASK_REGISTRY_TIMEOUT_SECS", "0"),
            ("XTASK_REGISTRY_TIMEOUT_SECS", "18446744073709551616"),
        ] {
            let err = Retry::from_vars(|n| (n == name).then(|| value.to_owned()))
                .map(|_| ())
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("{name} = \"{value}\": ")),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_mirror_specs_name_the_fix() {
        for bad in ["ghcr.io", "ghcr.io=http://h:1", "=h:1", "ghcr.io/x=h:1"] {
            let err = Mirror::parse(bad).unwrap_err().to_string();
            assert!(err.contains("REGISTRY=HOST:PORT"), "{bad}: {err}");
        }
        for (bad, shown) in [
            (
                "ghcr.io=https://u:s3cr3t@m:5000",
                "`ghcr.io=https://<redacted>@m:5000` is not",
            ),
            (
                "u:s3cr3t@ghcr.io=m:5000",
                "`<redacted>@ghcr.io=m:5000` is not",
            ),
            ("u:s3cr3t@m:5000", "`<redacted>@m:5000` has no `=`"),
        ] {
            let err = Mirror::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains(shown) && !err.contains("s3cr3t"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn commands_print_exactly_with_mirror_flags() {
        let s = skopeo(&["ghcr.io=127.0.0.1:5000"]);
        let cmd = s
            .inspect_raw_cmd("ghcr.io/siderolabs/extensions:v1")
            .unwrap();
        assert_eq!(
            cmd.to_string(),
            "skopeo --command-timeout 60s inspect --raw --tls-verify=false docker://127.0.0.1:5000/siderolabs/extensions:v1"
        );
        let copy = s
            .copy_cmd(
                &Location::Local("docker-archive:out/installer-arm64.tar".into()),
                &Location::Registry("ghcr.io/acme/talos:v1".into()),
            )
            .unwrap();
        assert_eq!(copy.to_string(), "skopeo --command-timeout 600s copy --quiet --preserve-digests --dest-tls-verify=false docker-archive:out/installer-arm64.tar docker://127.0.0.1:5000/acme/talos:v1");
        assert_eq!(copy.reference, "ghcr.io/acme/talos:v1");
        assert_eq!(
            s.mirror_flags(),
            " --registry-mirror ghcr.io=127.0.0.1:5000"
        );
    }

    #[test]
    fn github_token_travels_in_a_private_file_never_on_the_command_line() {
        let mut s = skopeo(&[]);
        s.github_token = Some(Secret {
            user: "ci".into(),
            token: "ghp_secretvalue".into(),
        });
        let cmd = s.inspect_raw_cmd("ghcr.io/acme/img:v1").unwrap();
        let shown = cmd.to_string();
        assert!(!shown.contains("ghp_secretvalue"), "{shown}");
        let file = &cmd.args[cmd.args.iter().position(|a| a == "--authfile").unwrap() + 1];
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains(&base64(b"ci:ghp_secretvalue")), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "auth file readable by others: {mode:o}");
        assert_eq!(
            s.command(&cmd).redact("denied for ghp_secretvalue"),
            "denied for <redacted>",
            "errors never show the token"
        );
        // Other registries never receive the GitHub token.
        assert!(!s
            .inspect_raw_cmd("quay.io/a/b:c")
            .unwrap()
            .args
            .contains(&"--authfile".to_string()));
        drop(s);
        assert!(!std::path::Path::new(file).exists(), "auth file removed");
    }

    #[test]
    fn a_dry_run_writes_no_auth_file_and_names_one_the_real_run_writes() {
        let mut s = skopeo(&[]);
        s.runner = Runner::DRY_RUN;
        s.github_token = Some(Secret {
            user: "ci".into(),
            token: "ghp_secretvalue".into(),
        });
        let cmd = s.inspect_raw_cmd("ghcr.io/acme/img:v1").unwrap();
        let shown = cmd.to_string();
        assert!(
            shown.contains("--authfile '<a temporary auth file holding $GITHUB_TOKEN>'"),
            "{shown}"
        );
        assert!(s.token_file.get().is_none(), "no file written");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:tok"), "dXNlcjp0b2s=");
    }

    #[test]
    fn failures_are_classified_from_skopeo_messages() {
        let cases = [
            ("reading manifest v1 in 127.0.0.1:5099/siderolabs/extensions: manifest unknown: manifest unknown", Failure::NotFound),
            ("reading manifest latest in ghcr.io/acme/x: unauthorized: authentication required", Failure::Unauthorized),
            ("reading manifest v1 in ghcr.io/acme/x: denied: permission_denied: read_package", Failure::Forbidden),
            ("reading manifest v1 in ghcr.io/a/b: toomanyrequests: retry later", Failure::Transient),
            ("received unexpected HTTP status: 503 Service Unavailable", Failure::Transient),
            ("pinging container registry 127.0.0.1:5098: Get \"http://127.0.0.1:5098/v2/\": dial tcp 127.0.0.1:5098: connect: connection refused", Failure::Transient),
            ("Get \"https://ghcr.io/v2/\": net/http: TLS handshake timeout", Failure::Transient),
            ("invalid reference format", Failure::Other),
        ];
        for (message, expected) in cases {
            assert_eq!(classify(message), expected, "{message}");
        }
    }

    #[test]
    fn skopeo_log_lines_reduce_to_the_message() {
        let stderr = br#"time="2026-11-25T21:17:30Z" level=fatal msg="Error parsing image name \"docker://h/x:v1\": manifest unknown""#;
        assert_eq!(skopeo_message(stderr), "manifest unknown");
        let copy = br#"time="x" level=fatal msg="initializing source docker://h/x:v1: reading manifest v1 in h/x: manifest unknown""#;
        assert_eq!(
            skopeo_message(copy),
            "initializing source docker://h/x:v1: reading manifest v1 in h/x: manifest unknown"
        );
    }

    #[test]
    fn backoff_doubles_from_the_base() {
        let r = Retry {
            attempts: 4,
            base: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            (1..4).map(|a| r.backoff(a).as_millis()).collect::<Vec<_>>(),
            [100, 200, 400]
        );
    }
}
