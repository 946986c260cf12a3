//! Booting an arm64 image under `qemu-system-aarch64` and watching its serial console.
//!
//! The pure part builds qemu's argument list and classifies console lines; the thin part runs
//! qemu, streams its console to a log file, probes the forwarded port and always stops qemu:
//! on success, on failure, on errors (the `Qemu` guard's drop) and when xtask itself dies
//! (the kernel's parent-death signal). Ctrl-C reaches qemu directly: it shares the terminal's
//! process group.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStderr, ChildStdout, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::pattern;
use infra::cmd::{Cmd, Io, Runner};
use infra::progress::Progress;

/// What Talos prints on the console when it is up and waiting for a machine config.
pub const TALOS_MAINTENANCE: &str = r"\[talos\] entering maintenance service";
/// Talos's API port: in maintenance mode it answers TLS there.
pub const TALOS_API_PORT: u16 = 50000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_MEMORY_MIB: u32 = 2048;
pub const DEFAULT_CPUS: u32 = 2;
/// UEFI pflash devices on the `virt` machine are exactly this large.
pub const PFLASH_SIZE: u64 = 64 * 1024 * 1024;

/// What to boot.
pub enum Media {
    /// Direct kernel boot (the netboot pair), no firmware.
    Kernel {
        kernel: Utf8PathBuf,
        initramfs: Utf8PathBuf,
        cmdline: String,
    },
    /// A disk image booted through UEFI firmware. `.xz` images are decompressed first;
    /// the image itself is never written (qemu's `snapshot=on`).
    Disk { path: Utf8PathBuf },
}

pub struct BootOptions {
    pub media: Media,
    /// Success needs a console line matching this.
    pub expect: regex_lite::Regex,
    /// Guest TCP port that must answer (forwarded from a free host port).
    pub port: Option<u16>,
    /// The port's answer must be a TLS record (Talos's apid), not just any bytes.
    pub require_tls: bool,
    pub timeout: Duration,
    /// The console is streamed here as it arrives (kept as a CI artifact).
    pub log: Utf8PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// No progress on stderr (for `--json`).
    pub quiet: bool,
    /// Scratch space for firmware copies and decompressed disks, removed afterwards.
    pub work_dir: Utf8PathBuf,
    /// Names the boot in progress lines (`smoke gateway`).
    pub label: String,
}

impl BootOptions {
    /// Defaults for everything but what to boot and where the log goes.
    pub fn new(media: Media, log: Utf8PathBuf, work_dir: Utf8PathBuf) -> BootOptions {
        BootOptions {
            media,
            expect: pattern::parse(TALOS_MAINTENANCE).expect("the default pattern parses"),
            port: None,
            require_tls: false,
            timeout: DEFAULT_TIMEOUT,
            log,
            memory_mib: DEFAULT_MEMORY_MIB,
            cpus: DEFAULT_CPUS,
            quiet: false,
            work_dir,
            label: "smoke boot".into(),
        }
    }
}

#[derive(PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
}

/// Why a boot failed, for machines; `BootResult::reason` says it for people.
#[derive(Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    KernelPanic,
    QemuExited,
    Timeout,
    /// The port answered, but not with TLS although TLS was required.
    PortNotTls,
}

/// The outcome of one boot: what `--json` prints and what `ci` summarises.
#[derive(Serialize)]
pub struct BootResult {
    pub result: Outcome,
    pub reason: String,
    pub failure: Option<Failure>,
    pub elapsed_s: f64,
    /// From qemu's start to the expected console line.
    pub time_to_expect_s: Option<f64>,
    pub log: Utf8PathBuf,
    /// The guest port probed, and from qemu's start to its first answer.
    pub port: Option<u16>,
    pub time_to_port_s: Option<f64>,
    /// What came back from the port: `TLS record (...)` or `N bytes (not TLS)`.
    pub port_answer: Option<String>,
}

impl BootResult {
    pub fn passed(&self) -> bool {
        self.result == Outcome::Passed
    }
}

/// A UEFI code/vars pair as found on the system.
pub struct Firmware {
    pub code: Utf8PathBuf,
    /// `None`: the firmware has no vars template; an empty (zeroed) store is used.
    pub vars: Option<Utf8PathBuf>,
}

/// Where distributions install arm64 UEFI firmware, and the file pairs they use.
const FIRMWARE_DIRS: &[&str] = &[
    "/usr/share/AAVMF",
    "/usr/share/qemu-efi-aarch64",
    "/usr/share/edk2/aarch64",
    "/usr/share/edk2/arm64",
    "/usr/share/edk2-armvirt/aarch64",
    "/usr/share/qemu",
];
const FIRMWARE_PAIRS: &[(&str, Option<&str>)] = &[
    ("AAVMF_CODE.fd", Some("AAVMF_VARS.fd")),
    ("QEMU_CODE.fd", Some("QEMU_VARS.fd")),
    ("QEMU_EFI-pflash.raw", Some("vars-template-pflash.raw")),
    ("edk2-aarch64-code.fd", Some("edk2-arm-vars.fd")),
    ("QEMU_EFI.fd", None),
];

/// Finds arm64 UEFI firmware in the usual directories (Debian, Fedora, Arch, qemu's own).
pub fn find_firmware() -> Result<Firmware> {
    for dir in FIRMWARE_DIRS {
        for (code, vars) in FIRMWARE_PAIRS {
            let code = Utf8Path::new(dir).join(code);
            let vars = vars.map(|v| Utf8Path::new(dir).join(v));
            if code.is_file() && vars.as_ref().is_none_or(|v| v.is_file()) {
                return Ok(Firmware { code, vars });
            }
        }
    }
    let mut codes = Vec::with_capacity(FIRMWARE_PAIRS.len());
    for (code, _) in FIRMWARE_PAIRS {
        codes.push(*code);
    }
    bail!(
        "no arm64 UEFI firmware found (looked for {} in {}): install it with `apt-get install qemu-efi-aarch64`",
        codes.join(", "),
        FIRMWARE_DIRS.join(", ")
    )
}

/// Copies `from` (or nothing: zeros) to `to`, padded with zeros to the pflash size.
fn pflash_copy(from: Option<&Utf8Path>, to: &Utf8Path) -> Result<()> {
    let mut bytes = match from {
        Some(from) => std::fs::read(from).with_context(|| format!("reading firmware {from}"))?,
        None => Vec::new(),
    };
    if bytes.len() as u64 > PFLASH_SIZE {
        bail!(
            "firmware {} is {} bytes, larger than the 64 MiB pflash of qemu's virt machine",
            from.map(Utf8Path::as_str).unwrap_or_default(),
            bytes.len()
        );
    }
    bytes.resize(PFLASH_SIZE as usize, 0);
    std::fs::write(to, bytes).with_context(|| format!("writing {to}"))
}

/// The files qemu reads, after preparation (firmware copies, decompressed disk).
pub struct Prepared {
    /// pflash code and vars copies.
    pub pflash: Option<(Utf8PathBuf, Utf8PathBuf)>,
    pub disk: Option<Utf8PathBuf>,
    pub host_port: Option<u16>,
}

/// qemu's full argument list: pure, so `--dry-run` and tests see exactly what runs.
pub fn qemu_args(opts: &BootOptions, prepared: &Prepared) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| {
        for item in items {
            args.push(item.to_string());
        }
    };
    let kvm = cfg!(target_arch = "aarch64") && Utf8Path::new("/dev/kvm").exists();
    // pauth-impdef: the architected pointer-auth algorithm is slow to emulate (9 s more to boot
    // on qemu 7.2); the implementation-defined one is equally good for a guest.
    let cpu = if kvm { "host" } else { "max,pauth-impdef=on" };
    let memory = opts.memory_mib.to_string();
    let cpus = opts.cpus.to_string();
    push(&[
        "-machine",
        "virt",
        "-accel",
        if kvm { "kvm" } else { "tcg" },
        "-cpu",
        cpu,
        "-m",
        &memory,
        "-smp",
        &cpus,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        // Entropy for early userspace (Talos generates keys while it boots).
        "-device",
        "virtio-rng-pci",
    ]);
    match &opts.media {
        Media::Kernel {
            kernel,
            initramfs,
            cmdline,
        } => push(&[
            "-kernel",
            kernel.as_str(),
            "-initrd",
            initramfs.as_str(),
            "-append",
            cmdline,
        ]),
        Media::Disk { path } => {
            if let Some((code, vars)) = &prepared.pflash {
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
                    "-drive",
                    &format!("if=pflash,format=raw,unit=1,file={vars}"),
                ]);
            }
            let disk = prepared.disk.as_deref().unwrap_or(path);
            let format = if disk.extension() == Some("qcow2") {
                "qcow2"
            } else {
                "raw"
            };
            push(&[
                "-drive",
                &format!("if=none,id=disk0,format={format},snapshot=on,file={disk}"),
                "-device",
                "virtio-blk-pci,drive=disk0",
            ]);
        }
    }
    let mut netdev = "user,id=net0".to_owned();
    if let (Some(host), Some(guest)) = (prepared.host_port, opts.port) {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    // romfile=: the PXE option ROM (package ipxe-qemu) is only for network boot, which
    // neither direct kernel boot nor UEFI-from-disk uses.
    push(&[
        "-netdev",
        &netdev,
        "-device",
        "virtio-net-pci,netdev=net0,romfile=",
    ]);
    args
}

/// What a console line means for the boot.
#[derive(Debug, PartialEq, Eq)]
pub enum LineKind {
    Panic,
    Expected,
    Other,
}

pub fn classify(line: &str, expect: &regex_lite::Regex) -> LineKind {
    if line.contains("Kernel panic") {
        LineKind::Panic
    } else if expect.is_match(line) {
        LineKind::Expected
    } else {
        LineKind::Other
    }
}

/// A console line as text: lossy UTF-8, without carriage returns and terminal escapes.
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\x1b' => {
                // CSI sequences: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A TLS ClientHello (TLS 1.2 and 1.3, common suites, no key share so any server answers,
/// with a HelloRetryRequest or an alert): enough to make a TLS server send a record back.
pub fn client_hello() -> Vec<u8> {
    fn with_len16(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&with_len16(body));
        out
    }
    fn be16(values: &[u16]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * 2);
        for value in values {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out
    }
    let suite_bytes = be16(&[
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
    ]);
    let groups = be16(&[0x001d, 0x0017, 0x0018]);
    let sigalgs = be16(&[
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807,
    ]);
    let mut extensions = Vec::new();
    extensions.extend_from_slice(&extension(0x002b, &[4, 0x03, 0x04, 0x03, 0x03])); // supported_versions
    extensions.extend_from_slice(&extension(0x000a, &with_len16(&groups))); // supported_groups
    extensions.extend_from_slice(&extension(0x000d, &with_len16(&sigalgs))); // signature_algorithms
    extensions.extend_from_slice(&extension(0x000b, &[1, 0])); // ec_point_formats: uncompressed
    extensions.extend_from_slice(&extension(0x0033, &with_len16(&[]))); // key_share: none offered

    let mut hello = vec![0x03, 0x03]; // legacy_version TLS 1.2
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&with_len16(&suite_bytes));
    hello.extend_from_slice(&[1, 0]); // compression: null
    hello.extend_from_slice(&with_len16(&extensions));

    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&with_len16(&handshake));
    record
}

/// A TLS record starts with its content type (20-23) and major version 3.
pub fn is_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, ..])
}

/// Says what the first bytes from a port are: a TLS record, or just bytes.
pub fn describe_answer(bytes: &[u8]) -> String {
    let kind = match bytes.first() {
        Some(0x14) => Some("change_cipher_spec"),
        Some(0x15) => Some("alert"),
        Some(0x16) => Some("handshake"),
        Some(0x17) => Some("application_data"),
        _ => None,
    };
    match kind {
        Some(kind) if bytes.get(1) == Some(&0x03) => format!("TLS record ({kind})"),
        _ => format!("{} bytes (not TLS)", bytes.len()),
    }
}

/// One attempt: connect, send a ClientHello, wait for bytes. qemu's user network accepts the
/// host side of a forwarded port even when nothing listens in the guest, then closes it: only
/// bytes coming back prove the guest answered.
fn probe_once(addr: SocketAddr) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    // A server that speaks first may already have closed its side: read even if this fails.
    let _ = stream.write_all(&client_hello());
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(buf[..n].to_vec()),
        _ => None,
    }
}

enum Event {
    Line(String),
    ConsoleClosed,
    PortAnswered(Vec<u8>),
}

/// qemu while it runs: killed and reaped when dropped, whatever path drops it.
struct Qemu {
    child: Child,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the scratch directory when the boot is over.
struct Scratch(Utf8PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("finding a free host port for the forwarded guest port")?
        .local_addr()?
        .port())
}

/// qemu is run by name (`qemu_command`): it must be on PATH.
fn require_qemu() -> Result<()> {
    match which::which("qemu-system-aarch64") {
        Ok(_) => Ok(()),
        Err(_) => bail!("qemu-system-aarch64 is not installed: install it with `apt-get install qemu-system-arm qemu-efi-aarch64` (or run `cargo xtask test`, which installs the test tools)"),
    }
}

/// The files `media` boots from must exist: a real run checks this first, and `smoke --dry-run`
/// too (`ci --dry-run` does not: its build stage makes them).
pub fn check_inputs(media: &Media) -> Result<()> {
    let files: Vec<&Utf8Path> = match media {
        Media::Kernel {
            kernel, initramfs, ..
        } => vec![kernel, initramfs],
        Media::Disk { path } => vec![path],
    };
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !f.is_file())
        .map(|f| f.to_string())
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one} does not exist (build it first, or check the path)"),
        all => bail!(
            "{} do not exist (build them first, or check the paths)",
            all.join(" and ")
        ),
    }
}

/// One step of preparing what qemu reads: the shell lines a dry run prints, and the work.
pub struct Step {
    pub shown: String,
    work: Work,
}

enum Work {
    Mkdir(Utf8PathBuf),
    /// The firmware's code and vars copied to these files and padded to the pflash size;
    /// `Err` says why there is no firmware.
    Firmware(
        std::result::Result<Firmware, String>,
        Utf8PathBuf,
        Utf8PathBuf,
    ),
    Decompress(Cmd),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Step {
    fn run(&self) -> Result<()> {
        match &self.work {
            Work::Mkdir(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))
            }
            Work::Firmware(Ok(firmware), code, vars) => {
                pflash_copy(Some(&firmware.code), code)?;
                pflash_copy(firmware.vars.as_deref(), vars)
            }
            Work::Firmware(Err(err), ..) => bail!("{err}"),
            Work::Decompress(xz) => xz
                .run()
                .context("decompressing the disk image (is xz-utils installed?)"),
        }
    }
}

/// The steps that prepare what qemu reads for a disk boot (none for a direct kernel boot):
/// the firmware copies padded to the pflash size and the decompressed disk; and the files
/// qemu is then given.
pub fn preparation(opts: &BootOptions, firmware: Result<Firmware>) -> (Vec<Step>, Prepared) {
    let mut prepared = Prepared {
        pflash: None,
        disk: None,
        host_port: None,
    };
    let Media::Disk { path } = &opts.media else {
        return (Vec::new(), prepared);
    };
    let line = |words: &[&str]| domain::shell::shell_line(words);
    let work = &opts.work_dir;
    let (code, vars) = (work.join("code.fd"), work.join("vars.fd"));
    let mut steps = vec![Step {
        shown: line(&["mkdir", "-p", work.as_str()]),
        work: Work::Mkdir(work.clone()),
    }];
    let mut shown = Vec::new();
    match &firmware {
        Ok(firmware) => {
            shown.push(line(&["cp", firmware.code.as_str(), code.as_str()]));
            if let Some(template) = &firmware.vars {
                shown.push(line(&["cp", template.as_str(), vars.as_str()]));
            }
        }
        Err(err) => shown.push(format!("# {err:#}")),
    }
    let size = format!("{}M", PFLASH_SIZE / (1024 * 1024));
    shown.push(line(&[
        "truncate",
        "-s",
        &size,
        code.as_str(),
        vars.as_str(),
    ]));
    steps.push(Step {
        shown: shown.join("\n"),
        work: Work::Firmware(
            firmware.map_err(|e| format!("{e:#}")),
            code.clone(),
            vars.clone(),
        ),
    });
    prepared.pflash = Some((code, vars));
    if path.extension() == Some("xz") {
        let out = work.join(path.file_stem().unwrap_or("disk"));
        let xz = Cmd::new("xz")
            .args(["-dc", path.as_str()])
            .stdout(Io::File(out.clone()));
        steps.push(Step {
            shown: xz.to_string(),
            work: Work::Decompress(xz),
        });
        prepared.disk = Some(out);
    }
    (steps, prepared)
}

/// The qemu command for `opts` and the prepared files.
fn qemu_command(opts: &BootOptions, prepared: &Prepared) -> Cmd {
    Cmd::new("qemu-system-aarch64").args(qemu_args(opts, prepared))
}

fn prepare(runner: Runner, opts: &BootOptions) -> Result<Prepared> {
    let (steps, mut prepared) = preparation(opts, find_firmware());
    for step in &steps {
        runner.act(step, || step.run())?;
    }
    if let Some(guest) = opts.port {
        // a free port is only known when the boot starts: a dry run shows the guest's, so
        // that two dry runs print the same
        prepared.host_port = Some(match runner.is_dry_run() {
            true => {
                runner.note(&format!("the host port forwarded to the guest's {guest} is a free one, chosen when the boot starts; {guest} is shown"));
                guest
            }
            false => free_port()?,
        });
    }
    Ok(prepared)
}

/// Boots under qemu and watches the console until the expected line (and, with a port, an
/// answer from it), a kernel panic, qemu's exit or the timeout. `Err` only when the boot could
/// not be attempted (missing files or tools); a failed boot is an `Ok` with `result: failed`.
pub fn boot(opts: &BootOptions) -> Result<BootResult> {
    Ok(run(Runner::REAL, opts)?.expect("a real run boots"))
}

/// [`boot`], or in a dry run the commands it would run (`None`).
pub fn run(runner: Runner, opts: &BootOptions) -> Result<Option<BootResult>> {
    // a real run needs its inputs and qemu, and removes its scratch space afterwards
    let _scratch = match runner.is_dry_run() {
        true => None,
        false => {
            check_inputs(&opts.media)?;
            require_qemu()?;
            Some(Scratch(opts.work_dir.clone()))
        }
    };
    let prepared = prepare(runner, opts)?;
    let qemu = qemu_command(opts, &prepared);
    runner.act(&qemu, || watch(opts, &qemu, &prepared))
}

/// Starts qemu and watches it to a verdict; qemu is killed whatever happens.
fn watch(opts: &BootOptions, qemu: &Cmd, prepared: &Prepared) -> Result<BootResult> {
    if let Some(dir) = opts.log.parent().filter(|d| !d.as_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    let log = File::create(&opts.log).with_context(|| format!("creating {}", opts.log))?;
    let log = Arc::new(Mutex::new(log));

    let progress = Progress::new(opts.label.clone(), opts.quiet);
    progress.note(&format!("starting qemu, console: {}", opts.log));
    // stdin closed, console and stderr piped to the readers below
    let mut command = qemu.std_command()?;
    kill_with_parent(&mut command);
    let start = Instant::now();
    let mut qemu = Qemu {
        child: command
            .spawn()
            .with_context(|| format!("starting {}", qemu.program()))?,
    };
    let (tx, rx) = mpsc::channel();
    let stdout = qemu.child.stdout.take().expect("stdout is piped");
    let stderr = qemu.child.stderr.take().expect("stderr is piped");
    {
        let (tx, log) = (tx.clone(), Arc::clone(&log));
        spawn(Box::new(move || read_console(stdout, log, tx)));
    }
    let qemu_stderr = Arc::new(Mutex::new(String::new()));
    let stderr_reader = {
        let (log, text) = (Arc::clone(&log), Arc::clone(&qemu_stderr));
        spawn(Box::new(move || read_stderr(stderr, log, text)))
    };

    let stop_probe = Arc::new(AtomicBool::new(false));
    let mut watch = Watch {
        opts,
        start,
        rx,
        tx,
        progress: &progress,
        prepared,
        stop_probe: Arc::clone(&stop_probe),
        expect_at: None,
        port_at: None,
        port_answer: None,
        last_line: String::new(),
        lines: 0,
    };
    let verdict = watch.run(&mut qemu);
    stop_probe.store(true, Ordering::Relaxed);
    drop(qemu);
    // a panic of the reader goes on here, with its own payload (see xtask's `main`)
    if let Err(payload) = stderr_reader.join() {
        std::panic::resume_unwind(payload);
    }

    let elapsed = start.elapsed();
    let (failure, reason) = match verdict {
        Verdict::Passed(reason) => (None, reason),
        Verdict::Failed(failure, mut reason) => {
            if failure == Failure::QemuExited {
                let text = qemu_stderr.lock().unwrap_or_else(|e| e.into_inner());
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                if !tail.is_empty() {
                    reason.push_str(&format!(
                        "; qemu said: {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
            (Some(failure), reason)
        }
    };
    let result = BootResult {
        result: if failure.is_none() {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        reason,
        failure,
        elapsed_s: round(elapsed),
        time_to_expect_s: watch.expect_at.map(round),
        log: opts.log.clone(),
        port: opts.port,
        time_to_port_s: watch.port_at.map(round),
        port_answer: watch.port_answer.clone(),
    };
    progress.note(&format!(
        "{}: {}",
        if result.passed() { "passed" } else { "FAILED" },
        result.reason
    ));
    Ok(result)
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

enum Verdict {
    Passed(String),
    Failed(Failure, String),
}

struct Watch<'a> {
    opts: &'a BootOptions,
    start: Instant,
    rx: Receiver<Event>,
    tx: Sender<Event>,
    progress: &'a Progress,
    prepared: &'a Prepared,
    stop_probe: Arc<AtomicBool>,
    expect_at: Option<Duration>,
    port_at: Option<Duration>,
    port_answer: Option<String>,
    last_line: String,
    lines: usize,
}

impl Watch<'_> {
    fn run(&mut self, qemu: &mut Qemu) -> Verdict {
        let deadline = self.start + self.opts.timeout;
        loop {
            let now = Instant::now();
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(200));
            match self.rx.recv_timeout(wait) {
                Ok(event) => {
                    if let Some(verdict) = self.handle(event) {
                        return verdict;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            if let Some(verdict) = self.success() {
                return verdict;
            }
            if let Ok(Some(status)) = qemu.child.try_wait() {
                // The last lines may still be in flight: read them before judging.
                while let Ok(event) = self.rx.recv_timeout(Duration::from_millis(500)) {
                    if matches!(event, Event::ConsoleClosed) {
                        break;
                    }
                    if let Some(verdict) = self.handle(event) {
                        return verdict;
                    }
                }
                if let Some(verdict) = self.success() {
                    return verdict;
                }
                return Verdict::Failed(
                    Failure::QemuExited,
                    format!(
                        "qemu exited ({status}) after {:.1}s {}",
                        self.start.elapsed().as_secs_f64(),
                        self.missing()
                    ),
                );
            }
            if Instant::now() >= deadline {
                return Verdict::Failed(
                    Failure::Timeout,
                    format!(
                        "timed out after {}s {}",
                        self.opts.timeout.as_secs(),
                        self.missing()
                    ),
                );
            }
            let status = if self.expect_at.is_some() {
                format!("waiting for guest port {}", self.opts.port.unwrap_or(0))
            } else {
                format!("{} console lines, last: {}", self.lines, self.last_line)
            };
            self.progress.update(&status);
        }
    }

    fn handle(&mut self, event: Event) -> Option<Verdict> {
        match event {
            Event::Line(line) => {
                self.lines += 1;
                match classify(&line, &self.opts.expect) {
                    LineKind::Panic => {
                        self.drain_panic_trace();
                        return Some(Verdict::Failed(
                            Failure::KernelPanic,
                            format!(
                                "kernel panic after {:.1}s: {}",
                                self.start.elapsed().as_secs_f64(),
                                line.trim()
                            ),
                        ));
                    }
                    LineKind::Expected if self.expect_at.is_none() => {
                        let at = self.start.elapsed();
                        self.expect_at = Some(at);
                        self.progress
                            .note(&format!("expected line: {}", line.trim()));
                        self.start_probe();
                    }
                    _ => {}
                }
                self.last_line = line;
            }
            Event::PortAnswered(bytes) => {
                let answer = describe_answer(&bytes);
                let port = self.opts.port.unwrap_or(0);
                self.progress
                    .note(&format!("guest port {port} answered: {answer}"));
                self.port_answer = Some(answer.clone());
                if self.opts.require_tls && !is_tls_record(&bytes) {
                    return Some(Verdict::Failed(
                        Failure::PortNotTls,
                        format!("guest port {port} answered, but not with TLS: {answer}"),
                    ));
                }
                self.port_at = Some(self.start.elapsed());
            }
            Event::ConsoleClosed => {}
        }
        None
    }

    /// The panic message is followed by a trace; give it a moment to reach the log.
    fn drain_panic_trace(&mut self) {
        let until = Instant::now() + Duration::from_secs(1);
        while let Ok(Event::Line(line)) = self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if line.contains("end Kernel panic") {
                break;
            }
        }
    }

    fn start_probe(&self) {
        let (Some(_), Some(host)) = (self.opts.port, self.prepared.host_port) else {
            return;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], host));
        let (tx, stop) = (self.tx.clone(), Arc::clone(&self.stop_probe));
        spawn(Box::new(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(bytes) = probe_once(addr) {
                    let _ = tx.send(Event::PortAnswered(bytes));
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }));
    }

    fn success(&self) -> Option<Verdict> {
        let expect_at = self.expect_at?;
        match (self.opts.port, self.port_at) {
            (None, _) => Some(Verdict::Passed(format!(
                "expected line after {:.1}s",
                expect_at.as_secs_f64()
            ))),
            (Some(port), Some(port_at)) => Some(Verdict::Passed(format!(
                "expected line after {:.1}s, guest port {port} answered after {:.1}s",
                expect_at.as_secs_f64(),
                port_at.as_secs_f64()
            ))),
            (Some(_), None) => None,
        }
    }

    /// What was still missing when the boot stopped.
    fn missing(&self) -> String {
        match (self.expect_at, self.opts.port) {
            (None, _) => format!(
                "without a console line matching `{}` (last line: {:?})",
                self.opts.expect,
                self.last_line.trim()
            ),
            (Some(_), Some(port)) => format!(
                "after the expected line, but guest port {port} never answered (it must send bytes back)"
            ),
            (Some(_), None) => String::new(),
        }
    }
}

/// Starts one of a boot's helper threads (console reader, stderr reader, port probe). Boxed,
/// so that the three share one instance of `thread::spawn` instead of one per closure type.
fn spawn(work: Box<dyn FnOnce() + Send>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(work)
}

fn read_console(mut stdout: ChildStdout, log: Arc<Mutex<File>>, tx: Sender<Event>) {
    let mut buf = [0u8; 8192];
    let mut line = Vec::new();
    while let Ok(n) = stdout.read(&mut buf) {
        if n == 0 {
            break;
        }
        {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = log.write_all(&buf[..n]);
            let _ = log.flush();
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                let _ = tx.send(Event::Line(clean_line(&line)));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        let _ = tx.send(Event::Line(clean_line(&line)));
    }
    let _ = tx.send(Event::ConsoleClosed);
}

/// qemu's own messages go to the log too (marked), and are kept for the failure reason.
fn read_stderr(mut stderr: ChildStderr, log: Arc<Mutex<File>>, text: Arc<Mutex<String>>) {
    let mut all = Vec::new();
    let _ = stderr.read_to_end(&mut all);
    let all = String::from_utf8_lossy(&all).into_owned();
    if !all.is_empty() {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        for line in all.lines() {
            let _ = writeln!(log, "[qemu stderr] {line}");
        }
    }
    *text.lock().unwrap_or_else(|e| e.into_inner()) = all;
}

/// Asks the kernel to kill qemu when xtask dies, however it dies (SIGKILL, a CI timeout):
/// qemu must never outlive the run that started it.
#[cfg(target_os = "linux")]
fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
    const SIGKILL: std::ffi::c_ulong = 9;
    // SAFETY: prctl is async-signal-safe, touches no memory of ours, and runs in the child
    // between fork and exec as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_with_parent(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(media: Media) -> BootOptions {
        BootOptions::new(
            media,
            "target/smoke/boot.log".into(),
            "target/smoke/run".into(),
        )
    }

    fn kernel() -> Media {
        Media::Kernel {
            kernel: "k".into(),
            initramfs: "i.xz".into(),
            cmdline: "console=ttyAMA0 talos.platform=metal".into(),
        }
    }

    #[test]
    fn kernel_boot_uses_virt_tcg_serial_console_and_a_forwarded_port() {
        let mut opts = options(kernel());
        opts.port = Some(50000);
        let args = qemu_args(
            &opts,
            &Prepared {
                pflash: None,
                disk: None,
                host_port: Some(41234),
            },
        )
        .join(" ");
        assert!(args.starts_with("-machine virt -accel tcg -cpu max,pauth-impdef=on -m 2048 -smp 2 -nographic -monitor none -serial stdio -no-reboot -device virtio-rng-pci"), "{args}");
        assert!(
            args.contains("-kernel k -initrd i.xz -append console=ttyAMA0 talos.platform=metal"),
            "{args}"
        );
        assert!(args.ends_with("-netdev user,id=net0,hostfwd=tcp:127.0.0.1:41234-:50000 -device virtio-net-pci,netdev=net0,romfile="), "{args}");
        assert!(!args.contains("pflash"), "{args}");
    }

    #[test]
    fn a_disk_dry_run_prints_how_to_prepare_what_qemu_reads() {
        let opts = options(Media::Disk {
            path: "_out/x/metal-arm64.raw.xz".into(),
        });
        let firmware = Firmware {
            code: "/fw/CODE.fd".into(),
            vars: Some("/fw/VARS.fd".into()),
        };
        let lines = |firmware| -> Vec<String> {
            let (steps, _) = preparation(&opts, firmware);
            steps
                .iter()
                .flat_map(|s| s.shown.lines().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        };
        assert_eq!(
            lines(Ok(firmware)),
            [
                "mkdir -p target/smoke/run",
                "cp /fw/CODE.fd target/smoke/run/code.fd",
                "cp /fw/VARS.fd target/smoke/run/vars.fd",
                "truncate -s 64M target/smoke/run/code.fd target/smoke/run/vars.fd",
                "xz -dc _out/x/metal-arm64.raw.xz > target/smoke/run/metal-arm64.raw",
            ]
        );
        let missing = lines(Err(anyhow::anyhow!("no arm64 UEFI firmware")));
        assert_eq!(missing[1], "# no arm64 UEFI firmware");
        let kernel = options(Media::Kernel {
            kernel: "k".into(),
            initramfs: "i".into(),
            cmdline: "console=ttyAMA0".into(),
        });
        assert!(preparation(&kernel, Ok(firmware_stub())).0.is_empty());
    }

    fn firmware_stub() -> Firmware {
        Firmware {
            code: "/c".into(),
            vars: None,
        }
    }

    #[test]
    fn disk_boot_uses_pflash_copies_and_never_writes_the_image() {
        let opts = options(Media::Disk {
            path: "_out/x/metal-arm64.raw.xz".into(),
        });
        let (_, prepared) = preparation(&opts, Ok(firmware_stub()));
        let text = qemu_command(&opts, &prepared).to_string();
        assert!(text.contains("-drive if=pflash,format=raw,unit=0,readonly=on,file=target/smoke/run/code.fd -drive if=pflash,format=raw,unit=1,file=target/smoke/run/vars.fd"), "{text}");
        assert!(text.contains("-drive if=none,id=disk0,format=raw,snapshot=on,file=target/smoke/run/metal-arm64.raw -device virtio-blk-pci,drive=disk0"), "{text}");
        assert!(!text.contains("hostfwd"), "{text}");
        assert!(!text.contains("-kernel"), "{text}");
    }

    #[test]
    fn panics_and_expected_lines_are_told_apart() {
        let expect = pattern::parse(TALOS_MAINTENANCE).unwrap();
        assert_eq!(
            classify(
                "[    2.1] Kernel panic - not syncing: Attempted to kill init!",
                &expect
            ),
            LineKind::Panic
        );
        assert_eq!(
            classify(
                "[   41.0] [talos] entering maintenance service {\"component\": \"controller-runtime\"}",
                &expect
            ),
            LineKind::Expected
        );
        assert_eq!(
            classify("[talos] task startAllServices", &expect),
            LineKind::Other
        );
    }

    #[test]
    fn console_lines_lose_carriage_returns_and_colours() {
        assert_eq!(clean_line(b"\x1b[0;32mok\x1b[0m done\r"), "ok done");
        assert_eq!(clean_line(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[test]
    fn client_hello_is_one_well_formed_record() {
        let hello = client_hello();
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        let record_len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
        assert_eq!(record_len, hello.len() - 5);
        assert_eq!(hello[5], 1, "handshake type client_hello");
        let body_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) as usize;
        assert_eq!(body_len, record_len - 4);
    }

    #[test]
    fn answers_are_described() {
        assert_eq!(
            describe_answer(&[0x16, 0x03, 0x03, 0, 5]),
            "TLS record (handshake)"
        );
        assert_eq!(describe_answer(&[0x15, 0x03, 0x01]), "TLS record (alert)");
        assert_eq!(describe_answer(b"hello\n"), "6 bytes (not TLS)");
        assert!(is_tls_record(&[0x15, 0x03, 0x03, 0, 2, 2, 40]));
        assert!(!is_tls_record(b"\x16\x02"));
        assert!(!is_tls_record(b"HTTP/1.1 400"));
    }

    #[test]
    fn firmware_is_padded_to_the_pflash_size() {
        let dir = Utf8PathBuf::from_path_buf(std::env::temp_dir())
            .unwrap()
            .join(format!("xtask-pflash-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("code.in"), b"firmware").unwrap();
        pflash_copy(Some(&dir.join("code.in")), &dir.join("code.fd")).unwrap();
        let bytes = std::fs::read(dir.join("code.fd")).unwrap();
        assert_eq!(bytes.len() as u64, PFLASH_SIZE);
        assert_eq!(&bytes[..8], b"firmware");
        assert!(bytes[8..].iter().all(|b| *b == 0));
        pflash_copy(None, &dir.join("vars.fd")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("vars.fd")).unwrap().len(),
            PFLASH_SIZE
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
