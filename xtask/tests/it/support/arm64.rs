//! A real arm64 kernel and userland from Debian's packages (downloaded once with
//! `apt-get download`, cached under the target directory), and initramfs images built from
//! them whose /init behaves like Talos (or panics, or stays silent).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{assert_success, run, stderr, stdout};

pub struct Arm64 {
    /// The kernel image (an EFI stub binary too).
    pub kernel: PathBuf,
    pub busybox: PathBuf,
    /// `lib/modules/<version>/kernel` of the kernel package.
    pub modules: PathBuf,
    /// systemd-boot's arm64 EFI binary.
    pub systemd_boot: PathBuf,
}

pub const BOOT_TOOLS: &[&str] = &[
    "qemu-system-aarch64",
    "apt-get",
    "apt-cache",
    "dpkg-deb",
    "cpio",
];

/// Downloads (once per target directory) and unpacks the arm64 packages the boot tests use.
pub fn arm64() -> &'static Arm64 {
    static FIXTURES: OnceLock<Arm64> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-arm64");
        std::fs::create_dir_all(&cache).unwrap();
        let kernel_package = kernel_package();
        let packages = [
            kernel_package.as_str(),
            "busybox-static:arm64",
            "systemd-boot-efi:arm64",
        ];
        for package in packages {
            unpack(&cache, package, &[], package.split(':').next().unwrap());
        }
        let kernel_dir = cache.join(kernel_package.split(':').next().unwrap());
        let kernel = find_file(&kernel_dir.join("boot"), "vmlinuz-");
        let modules_root = kernel_dir.join("lib/modules");
        let version = std::fs::read_dir(&modules_root)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        Arm64 {
            kernel,
            busybox: cache.join("busybox-static/bin/busybox"),
            modules: modules_root.join(version).join("kernel"),
            systemd_boot: cache
                .join("systemd-boot-efi/usr/lib/systemd/boot/efi/systemd-bootaa64.efi"),
        }
    })
}

/// `apt-get download [APT_ARGS] PACKAGE`, unpacked with `dpkg-deb -x` into `cache/name` (once:
/// a `.done` marker says the unpacking finished).
pub fn unpack(cache: &Path, package: &str, apt_args: &[&str], name: &str) -> PathBuf {
    let unpacked = cache.join(name);
    if unpacked.join(".done").exists() {
        return unpacked;
    }
    let download = cache.join(format!("download-{name}"));
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).unwrap();
    let out = run(Command::new("apt-get")
        .args(["download", "-q"])
        .args(apt_args)
        .arg(package)
        .current_dir(&download));
    assert_success(
        &out,
        &format!("apt-get download {apt_args:?} {package} (the arm64 architecture must be enabled and apt lists updated: `cargo xtask test` does both)"),
    );
    let deb = std::fs::read_dir(&download)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left a .deb");
    let _ = std::fs::remove_dir_all(&unpacked);
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    assert_success(&out, &format!("dpkg-deb -x {deb:?}"));
    std::fs::write(unpacked.join(".done"), "").unwrap();
    let _ = std::fs::remove_dir_all(&download);
    unpacked
}

/// `linux-image-<version>-arm64`, as the `linux-image-arm64:arm64` metapackage names it.
pub fn kernel_package() -> String {
    let depends = || run(Command::new("apt-cache").args(["depends", "linux-image-arm64:arm64"]));
    let mut out = depends();
    if !out.status.success() {
        // Fresh machine whose lists predate the arm64 architecture: update once.
        run(Command::new("apt-get").args(["update", "-q"]));
        out = depends();
    }
    stdout(&out)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Depends: ")
                .filter(|p| p.starts_with("linux-image-"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| {
            panic!(
                "apt-cache names no arm64 kernel package (enable arm64 with `dpkg --add-architecture arm64 && apt-get update`): {}{}",
                stdout(&out),
                stderr(&out)
            )
        })
}

pub fn find_file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {dir:?}"))
}

/// virtio-net is a module in Debian's kernel; these load it (dependencies first).
pub const NET_MODULES: &[&str] = &[
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/net/virtio_net.ko",
];

pub const MAINTENANCE_LINE: &str = "[talos] entering maintenance service";

/// /init scripts (busybox sh) for the cases the harness must tell apart.
/// With an `answer`, /init serves it on TCP 50000 (busybox nc runs /bin/answer per connection).
pub fn init_talos_like(answer: Option<&str>) -> String {
    let listener = match answer {
        Some(_) => "/bin/busybox nc -ll -p 50000 -e /bin/answer &\n",
        None => "",
    };
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         for m in {modules}; do /bin/busybox insmod /lib/modules/$m.ko; done\n\
         /bin/busybox ip link set eth0 up\n\
         /bin/busybox ip addr add 10.0.2.15/24 dev eth0\n\
         {listener}\
         echo '[talos] task startAllServices (1/1): waiting'\n\
         echo '{MAINTENANCE_LINE}'\n\
         while true; do /bin/busybox sleep 3600; done\n",
        modules = NET_MODULES
            .iter()
            .map(|m| Path::new(m).file_stem().unwrap().to_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

pub const INIT_PANIC: &str = "#!/bin/busybox sh\necho 'init: giving up'\nexit 1\n";
pub const INIT_SILENT: &str = "#!/bin/busybox sh\nwhile true; do /bin/busybox sleep 3600; done\n";
pub const INIT_POWEROFF: &str =
    "#!/bin/busybox sh\necho 'init: powering off'\n/bin/busybox poweroff -f\n";

/// What /bin/answer prints to a connection: plain text, or the start of a TLS alert record.
pub const ANSWER_PLAIN: &str = "#!/bin/busybox sh\necho smoke-answer\n";
pub const ANSWER_TLS: &str =
    "#!/bin/busybox sh\n/bin/busybox printf '\\025\\003\\003\\000\\002\\002\\050'\n";

/// A newc cpio initramfs with busybox, the virtio-net modules, `init` and /bin/answer.
pub fn initramfs(dir: &Path, init: &str, answer: Option<&str>) -> PathBuf {
    let fixtures = arm64();
    let root = dir.join("root");
    for sub in ["bin", "lib/modules", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::copy(&fixtures.busybox, root.join("bin/busybox")).unwrap();
    for module in NET_MODULES {
        let name = Path::new(module).file_name().unwrap();
        std::fs::copy(
            fixtures.modules.join(module),
            root.join("lib/modules").join(name),
        )
        .unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    for (path, script) in [("init", Some(init)), ("bin/answer", answer)] {
        if let Some(script) = script {
            std::fs::write(root.join(path), script).unwrap();
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
    }

    let image = dir.join("initramfs.cpio");
    let mut names = Vec::new();
    collect(&root, &root, &mut names);
    let mut child = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&image).unwrap())
        .spawn()
        .expect("running cpio");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(names.join("\n").as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    assert!(child.wait().unwrap().success(), "cpio failed");
    image
}

pub fn collect(root: &Path, dir: &Path, names: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(
            path.strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
        if path.is_dir() {
            collect(root, &path, names);
        }
    }
}

/// Makes sure qemu is registered with binfmt_misc for aarch64 (mounting binfmt_misc and
/// registering Debian's qemu-user-static entry when needed, as root). False (test skipped)
/// when that is impossible, unless XTASK_REQUIRE_TOOLS is set.
pub fn binfmt_aarch64() -> bool {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    if dir.join("qemu-aarch64").exists() {
        return true;
    }
    if !dir.join("register").exists() {
        let _ = run(Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc"])
            .arg(dir));
    }
    let entry = std::fs::read_to_string("/usr/lib/binfmt.d/qemu-aarch64.conf").unwrap_or_default();
    if !entry.is_empty() {
        let _ = std::fs::write(dir.join("register"), entry.trim_end());
    }
    let registered = dir.join("qemu-aarch64").exists();
    if !registered {
        let message =
            "cannot register qemu-aarch64 with binfmt_misc (needs root and qemu-user-static)";
        if std::env::var_os("XTASK_REQUIRE_TOOLS").is_some() {
            panic!("{message}");
        }
        super::skipped(message);
    }
    registered
}
