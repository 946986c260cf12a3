//! Upstream's Talos imager, built from source for the tests, and the STAND-IN images it reads.
//!
//! - The imager binary is the `installer` command of the Go module github.com/siderolabs/talos
//!   at exactly the version xtask/tests/imager/go.mod requires, built as upstream's Makefile
//!   builds it (CGO off, tags `tcell_minimal,grpcnotrace`, `-s -w`) with the commit stamped into
//!   the embedded version data as upstream's release build does (`gendata.VersionSHA`; the tag
//!   is committed in the module). It is cached under the target directory by a hash of go.mod,
//!   go.sum and the flags, so a warm run does not call Go at all.
//! - The image `localhost/imager:<talos>-from-source` holds that binary as /usr/bin/installer
//!   and /usr/bin/imager (entrypoint /bin/imager, as upstream's), Debian's copies of the tools
//!   the imager runs for the output kinds our variants declare, and STAND-IN boot assets under
//!   /usr/install/arm64/: Debian's arm64 kernel, a busybox initramfs of ours whose /init prints
//!   the extensions the imager appended and then behaves like Talos's maintenance mode, and
//!   sd-boot and the systemd stub from Debian's systemd-boot-efi (bookworm-backports: the
//!   bookworm build has no `.sbat` section, which the imager's UKI builder requires).
//! - STAND-IN extension images in Talos's extension format (manifest.yaml, rootfs/), the
//!   extensions index image whose `image-digests` the lock reads, and a STAND-IN installer-base.
//!
//! The users' default stays `ghcr.io/siderolabs/imager:<talos>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use super::arm64::{self, arm64};
use super::podman::Podman;
use super::registry::Registry;
use super::{assert_success, run, stdout};

/// The test-only Go module that builds the imager.
pub fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imager")
}

/// The Talos version go.mod requires (`github.com/siderolabs/talos vX.Y.Z` in a require).
pub fn talos_version() -> String {
    let text = std::fs::read_to_string(module_dir().join("go.mod")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut words = l.trim().trim_start_matches("require").split_whitespace();
            (words.next() == Some("github.com/siderolabs/talos")).then(|| words.next())?
        })
        .map(str::to_owned)
        .expect("xtask/tests/imager/go.mod requires github.com/siderolabs/talos")
}

pub fn image_name(talos: &str) -> String {
    format!("localhost/imager:{talos}-from-source")
}

const BUILD_TAGS: &str = "tcell_minimal,grpcnotrace";

pub struct Binary {
    pub path: PathBuf,
    /// Seconds `go build` took in this run; `None` when the cached binary was used.
    pub build_s: Option<f64>,
    /// `go version -m` of the binary: module path and versions it was built from.
    pub build_info: String,
}

/// The imager binary for the host's architecture (the imager builds arm64 outputs natively).
pub fn binary() -> &'static Binary {
    static BINARY: OnceLock<Binary> = OnceLock::new();
    BINARY.get_or_init(|| {
        let talos = talos_version();
        let sha = talos_commit(&talos);
        let ldflags =
            format!("-s -w -X github.com/siderolabs/talos/pkg/machinery/gendata.VersionSHA={sha}");
        let goarch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => panic!("no Go architecture for host {other}"),
        };
        let mut key_input = Vec::new();
        for file in ["go.mod", "go.sum"] {
            key_input.extend(std::fs::read(module_dir().join(file)).unwrap());
        }
        key_input.extend(format!("{BUILD_TAGS}\n{ldflags}\n{goarch}\n").as_bytes());
        let key = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(&key_input))
        };
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("imager-from-source");
        std::fs::create_dir_all(&cache).unwrap();
        let path = cache.join(format!("installer-{}", &key[..16]));
        let mut build_s = None;
        if !path.is_file() {
            let started = Instant::now();
            let tmp = cache.join(format!(".installer-{}", std::process::id()));
            let out = run(Command::new("go")
                .args(["build", "-tags", BUILD_TAGS, "-ldflags", &ldflags, "-o"])
                .arg(&tmp)
                .arg("github.com/siderolabs/talos/cmd/installer")
                .current_dir(module_dir())
                .env("CGO_ENABLED", "0")
                .env("GOOS", "linux")
                .env("GOARCH", goarch));
            assert_success(
                &out,
                &format!(
                    "go build of the imager (github.com/siderolabs/talos/cmd/installer {talos})"
                ),
            );
            std::fs::rename(&tmp, &path).unwrap();
            build_s = Some(started.elapsed().as_secs_f64());
        }
        let out = run(Command::new("go").args(["version", "-m"]).arg(&path));
        assert_success(&out, "go version -m");
        Binary {
            path,
            build_s,
            build_info: stdout(&out),
        }
    })
}

/// The first 8 hex digits of the commit the module version was made from, as upstream's
/// Makefile stamps it (`git describe --abbrev=8`); the module proxy records the commit.
fn talos_commit(talos: &str) -> String {
    let out = run(Command::new("go")
        .args(["mod", "download", "-json"])
        .arg(format!("github.com/siderolabs/talos@{talos}"))
        .current_dir(module_dir()));
    assert_success(
        &out,
        &format!("go mod download -json github.com/siderolabs/talos@{talos}"),
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hash = info["Origin"]["Hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no Origin.Hash for talos {talos}: {info}"));
    hash[..8].to_owned()
}

/// Host tools the imager runs for installer, kernel, initramfs and disk-image outputs
/// (pkg/imager, pkg/makefs, internal/pkg/extensions at the pinned tag). ISO tools (xorriso,
/// grub-mkrescue) and open-vmdk are left out: no variant declares an iso or ova output.
pub const TOOLS: &[&str] = &[
    "cpio",
    "xz",
    "zstd",
    "pigz",
    "tar",
    "qemu-img",
    "unsquashfs",
    "depmod",
    "mkfs.vfat",
    "mcopy",
    "mkfs.xfs",
];

/// What `/init` of the stand-in initramfs prints per extension it finds in /extensions.yaml
/// (the imager's list of the extensions it appended), e.g. `[stand-in] extension: drbd`.
pub const EXTENSION_LINE: &str = "[stand-in] extension: ";

/// The STAND-IN Talos init: prints the extensions the imager appended, then acts as Talos's
/// maintenance mode does (the console line, a TLS answer on port 50000). It writes to
/// /dev/kmsg as Talos does, so the lines reach every console the command line names.
fn stand_in_init() -> String {
    let modules = arm64::NET_MODULES
        .iter()
        .map(|m| Path::new(m).file_stem().unwrap().to_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"#!/bin/busybox sh
# STAND-IN for Talos's init (tests only), in the initramfs of the imager built from source.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
log() {{ echo "$*" > /dev/kmsg; }}
if [ -f /extensions.yaml ]; then
    /bin/busybox sed -n 's/^ *name: *//p' /extensions.yaml | while read -r name; do log "{EXTENSION_LINE}$name"; done
else
    log "[stand-in] no /extensions.yaml: the imager appended no extensions"
fi
for m in {modules}; do /bin/busybox insmod /lib/modules/$m.ko; done
/bin/busybox ip link set eth0 up
/bin/busybox ip addr add 10.0.2.15/24 dev eth0
/bin/busybox nc -ll -p 50000 -e /bin/answer &
log '{line}'
while true; do /bin/busybox sleep 3600; done
"#,
        line = arm64::MAINTENANCE_LINE
    )
}

/// Builds `localhost/imager:<talos>-from-source` in `podman`'s storage; `work` is scratch space.
pub fn build_image(podman: &Podman, work: &Path) -> String {
    let talos = talos_version();
    let binary = binary();
    let fixtures = arm64();
    let root = work.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    for dir in [
        "usr/bin",
        "tmp",
        "etc",
        "usr/install/arm64",
        "usr/libexec/stand-in",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::copy(&binary.path, root.join("usr/bin/installer")).unwrap();
    std::os::unix::fs::symlink("installer", root.join("usr/bin/imager")).unwrap();

    for tool in TOOLS {
        let path = super::which(tool).unwrap_or_else(|| panic!("{tool} is not installed"));
        copy_with_libraries(&path, &path, &root);
    }
    // squashfs-tools 4.6 options on Debian 12's 4.5.1 (see tests/standin/mksquashfs.sh).
    let mksquashfs = super::which("mksquashfs").expect("mksquashfs is installed");
    copy_with_libraries(
        &mksquashfs,
        Path::new("/usr/libexec/stand-in/mksquashfs"),
        &root,
    );
    std::fs::copy("/bin/busybox", root.join("usr/libexec/stand-in/busybox")).unwrap();
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/mksquashfs.sh");
    install_file(&shim, &root.join("usr/bin/mksquashfs"), 0o755);
    // glibc loads libgcc_s for pthread_exit, and mtools converts names through iconv.
    let lib = Path::new("/lib/x86_64-linux-gnu");
    if lib.join("libgcc_s.so.1").exists() {
        copy_file(
            &lib.join("libgcc_s.so.1"),
            &root.join("lib/x86_64-linux-gnu/libgcc_s.so.1"),
        );
    }
    let gconv = Path::new("/usr/lib/x86_64-linux-gnu/gconv");
    if gconv.is_dir() {
        let to = root.join(gconv.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for name in ["gconv-modules", "gconv-modules.cache", "IBM850.so"] {
            if gconv.join(name).exists() {
                copy_file(&gconv.join(name), &to.join(name));
            }
        }
        if gconv.join("gconv-modules.d").is_dir() {
            super::copy_dir(&gconv.join("gconv-modules.d"), &to.join("gconv-modules.d"));
        }
    }

    // STAND-IN boot assets.
    let assets = root.join("usr/install/arm64");
    copy_file(&fixtures.kernel, &assets.join("vmlinuz"));
    let initramfs = stand_in_initramfs(&work.join("initramfs"));
    copy_file(&initramfs, &assets.join("initramfs.xz"));
    let boot = sd_boot();
    copy_file(
        &boot.join("systemd-bootaa64.efi"),
        &assets.join("systemd-boot.efi"),
    );
    copy_file(
        &boot.join("linuxaa64.efi.stub"),
        &assets.join("systemd-stub.efi"),
    );

    let tar = work.join("rootfs.tar");
    let out = run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    assert_success(&out, "tar -cf rootfs.tar");
    let name = image_name(&talos);
    let container = podman.buildah(&["from", "scratch"]);
    podman.buildah(&["add", &container, tar.to_str().unwrap(), "/"]);
    let version_env = format!("VERSION={talos}");
    let version_label = format!("alpha.talos.dev/version={talos}");
    podman.buildah(&[
        "config",
        "--entrypoint",
        r#"["/bin/imager"]"#,
        "--env",
        &version_env,
        "--label",
        &version_label,
        &container,
    ]);
    podman.buildah(&["commit", "-q", "--rm", &container, &name]);
    name
}

/// sd-boot and the systemd stub for arm64 (systemd-boot-efi from bookworm-backports).
pub fn sd_boot() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smoke-arm64");
    std::fs::create_dir_all(&cache).unwrap();
    let dir = arm64::unpack(
        &cache,
        "systemd-boot-efi:arm64",
        &["-t", "bookworm-backports"],
        "systemd-boot-efi-backports",
    );
    dir.join("usr/lib/systemd/boot/efi")
}

/// The stand-in initramfs: busybox, the virtio-net modules, /init and /bin/answer (a TLS
/// alert), as a newc cpio compressed with xz (crc32, as the kernel requires).
pub fn stand_in_initramfs(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let cpio = arm64::initramfs(dir, &stand_in_init(), Some(arm64::ANSWER_TLS));
    let out = run(Command::new("xz")
        .args(["-f", "-C", "crc32", "-6"])
        .arg(&cpio));
    assert_success(&out, "xz -f -C crc32 -6");
    cpio.with_extension("cpio.xz")
}

fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {from:?} to {to:?}: {e}"));
}

fn install_file(from: &Path, to: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    copy_file(from, to);
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Copies the program at `from` (its target, when a symlink) to `at` inside `root`, with every
/// shared library `ldd` names at the library's own path.
fn copy_with_libraries(from: &Path, at: &Path, root: &Path) {
    let real = std::fs::canonicalize(from).unwrap();
    install_file(&real, &root.join(at.strip_prefix("/").unwrap()), 0o755);
    let out = run(Command::new("ldd").arg(&real));
    for line in stdout(&out).lines() {
        let Some(lib) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from)
        else {
            continue;
        };
        let dest = root.join(lib.strip_prefix("/").unwrap());
        if !dest.exists() {
            copy_file(&std::fs::canonicalize(&lib).unwrap(), &dest);
        }
    }
}

/// A STAND-IN image built from `dir`'s contents for linux/arm64, pushed to `target`
/// (`HOST:PORT/path:tag`); returns the pushed manifest's digest.
pub fn push_dir(podman: &Podman, dir: &Path, config: &[&str], target: &str) -> String {
    let container = podman.buildah(&["from", "scratch"]);
    podman.buildah(&["add", &container, dir.to_str().unwrap(), "/"]);
    let mut args = vec!["config", "--arch", "arm64", "--os", "linux"];
    args.extend_from_slice(config);
    args.push(&container);
    podman.buildah(&args);
    let local = format!("localhost/stand-in-{}", crate_safe(target));
    podman.buildah(&["commit", "-q", "--rm", &container, &local]);
    let digest_file = dir.with_extension("digest");
    let out = run(podman
        .command("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--digestfile"])
        .arg(&digest_file)
        .arg(format!("containers-storage:{local}"))
        .arg(format!("docker://{target}")));
    assert_success(&out, &format!("skopeo copy to {target}"));
    std::fs::read_to_string(&digest_file)
        .unwrap()
        .trim()
        .to_owned()
}

fn crate_safe(target: &str) -> String {
    target.rsplit('/').next().unwrap().replace([':', '@'], "-")
}

/// A stand-in extension: Talos's extension format (manifest.yaml, rootfs/), one marker file.
pub struct Extension<'a> {
    pub name: &'a str,
    pub tag: &'a str,
    /// `metadata.compatibility.talos.version`, e.g. `>= v1.13.0`.
    pub talos_constraint: &'a str,
}

/// Pushes the stand-in extensions to `registry` as `siderolabs/<name>:<tag>`, then the
/// extensions index image `siderolabs/extensions:<talos>` whose `image-digests` lists them
/// under ghcr.io (as the real one does), and the stand-in `siderolabs/installer:<talos>` and
/// `siderolabs/installer-base:<talos>`. Returns the `image-digests` text.
pub fn push_stand_ins(
    podman: &Podman,
    registry: &Registry,
    work: &Path,
    talos: &str,
    extensions: &[Extension],
) -> String {
    let mut digests = String::new();
    for ext in extensions {
        let dir = work.join(format!("ext-{}", ext.name));
        let _ = std::fs::remove_dir_all(&dir);
        let marker = dir.join("rootfs/usr/local/lib/stand-in").join(ext.name);
        std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
        std::fs::write(&marker, format!("stand-in extension {}\n", ext.name)).unwrap();
        std::fs::write(
            dir.join("manifest.yaml"),
            format!(
                "version: v1alpha1\nmetadata:\n  name: {}\n  version: {}\n  author: xtask tests\n  description: STAND-IN extension for the tests\n  compatibility:\n    talos:\n      version: \"{}\"\n",
                ext.name, ext.tag, ext.talos_constraint
            ),
        )
        .unwrap();
        let target = format!("{}/siderolabs/{}:{}", registry.addr, ext.name, ext.tag);
        let digest = push_dir(podman, &dir, &[], &target);
        digests.push_str(&format!(
            "ghcr.io/siderolabs/{}:{}@{digest}\n",
            ext.name, ext.tag
        ));
    }
    let index = work.join("extensions-index");
    let _ = std::fs::remove_dir_all(&index);
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join("image-digests"), &digests).unwrap();
    std::fs::write(
        index.join("descriptions.yaml"),
        "stand-in: STAND-IN extensions\n",
    )
    .unwrap();
    push_dir(
        podman,
        &index,
        &[],
        &format!("{}/siderolabs/extensions:{talos}", registry.addr),
    );

    // The STAND-IN installer-base: busybox and an /usr/bin/installer script, entrypoint
    // /bin/installer and the version label as upstream's. The imager keeps its one layer and
    // config and adds the boot assets as a second layer.
    let base = work.join("installer-base");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("usr/bin")).unwrap();
    std::fs::copy(&arm64().busybox, base.join("usr/bin/busybox")).unwrap();
    std::fs::write(
        base.join("usr/bin/installer"),
        "#!/usr/bin/busybox sh\necho \"STAND-IN installer-base: $*\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        base.join("usr/bin/installer"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("usr/bin", base.join("bin")).unwrap();
    let label = format!("alpha.talos.dev/version={talos}");
    let config = ["--entrypoint", r#"["/bin/installer"]"#, "--label", &label];
    for repository in ["installer-base", "installer"] {
        push_dir(
            podman,
            &base,
            &config,
            &format!("{}/siderolabs/{repository}:{talos}", registry.addr),
        );
    }
    digests
}
