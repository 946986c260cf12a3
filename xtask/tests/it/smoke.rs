//! `cargo xtask smoke`: the boot harness with a real arm64 kernel, and the static checks with
//! a real registry.
//!
//! The boot tests download Debian's arm64 kernel, busybox and systemd-boot packages with
//! `apt-get download` (cached under the target directory), build initramfs images whose /init
//! behaves like Talos (or panics, or stays silent), and run the real xtask binary on them.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::arm64::*;
use crate::support::registry::Registry;
use crate::support::*;
use serde_json::{json, Value};
use sha2::Digest;

/// Runs `xtask smoke boot ... --json` and returns its result object and stderr.
fn smoke_boot(dir: &Path, extra: &[&str]) -> (Value, std::process::Output) {
    let log = dir.join("console.log");
    let out = run(xtask(dir)
        .args(["smoke", "boot", "--json", "--cpus", "1", "--memory", "1024"])
        .arg("--log")
        .arg(&log)
        .args(extra));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "smoke boot printed no JSON ({e}): stdout {} stderr {}",
            stdout(&out),
            stderr(&out)
        )
    });
    assert_eq!(result["log"].as_str(), Some(log.to_str().unwrap()));
    assert!(
        stderr(&out).lines().all(|l| l.starts_with("error: ")),
        "--json keeps progress off stderr: {}",
        stderr(&out)
    );
    (result, out)
}

fn kernel_args(initramfs: &Path, cmdline: &str) -> Vec<String> {
    vec![
        "--kernel".into(),
        arm64().kernel.to_str().unwrap().into(),
        "--initramfs".into(),
        initramfs.to_str().unwrap().into(),
        "--cmdline".into(),
        cmdline.into(),
    ]
}

/// True when a qemu process boots `image` (each test boots its own image file).
fn qemu_running_with(image: &Path) -> bool {
    let needle = image.to_str().unwrap();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let program = cmdline.split('\0').next().unwrap_or_default();
        program.contains("qemu-system-aarch64") && cmdline.contains(needle)
    })
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// Boot

#[test]
fn boot_succeeds_on_the_maintenance_line_once_the_port_answers() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-ok");
    let image = initramfs(
        &dir,
        &init_talos_like(Some(ANSWER_PLAIN)),
        Some(ANSWER_PLAIN),
    );
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--port", "50000", "--timeout", "300"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_success(&out, &format!("smoke boot --json: {result:#}"));
    assert_eq!(result["result"], "passed", "{result:#}");
    assert_eq!(result["failure"], Value::Null);
    assert_eq!(result["port_answer"], "13 bytes (not TLS)", "{result:#}");
    let expect = result["time_to_expect_s"].as_f64().unwrap();
    assert!(expect > 0.0 && expect <= result["time_to_port_s"].as_f64().unwrap());
    assert!(expect <= result["elapsed_s"].as_f64().unwrap());
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(
        console.contains("Booting Linux on physical CPU"),
        "the console is logged: {console}"
    );
    assert!(console.contains(MAINTENANCE_LINE));
    assert!(!qemu_running_with(&image), "qemu left running");

    // Talos's API speaks TLS: with --tls, plain bytes are a failure, said at once.
    args.push("--tls".into());
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_failure(&out, "smoke boot --json --tls");
    assert_eq!(result["failure"], "port-not-tls", "{result:#}");
    assert_eq!(
        result["reason"],
        "guest port 50000 answered, but not with TLS: 13 bytes (not TLS)"
    );
}

#[test]
fn boot_fails_fast_on_a_kernel_panic() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-panic");
    let image = initramfs(&dir, INIT_PANIC, None);
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--timeout", "300"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_failure(&out, "smoke boot --json of a panicking kernel");
    assert_eq!(result["result"], "failed");
    assert_eq!(result["failure"], "kernel-panic", "{result:#}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("kernel panic") && reason.contains("Attempted to kill init"),
        "{reason}"
    );
    assert!(stderr(&out).contains("kernel panic"), "{}", stderr(&out));
    // Fails on the panic line, not at the timeout (a bound, not a benchmark).
    assert!(result["elapsed_s"].as_f64().unwrap() < 150.0, "{result:#}");
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(console.contains("Kernel panic - not syncing"), "{console}");
    assert!(!qemu_running_with(&image), "qemu left running");
}

#[test]
fn boot_fails_at_the_timeout_when_the_console_stays_silent() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-silent");
    let image = initramfs(&dir, INIT_SILENT, None);
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--timeout", "8"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_failure(&out, "smoke boot --json --timeout 8 of a silent console");
    assert_eq!(result["failure"], "timeout", "{result:#}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("timed out after 8s without a console line matching"),
        "{reason}"
    );
    assert!(result["elapsed_s"].as_f64().unwrap() >= 8.0);
    assert_eq!(result["time_to_expect_s"], Value::Null);
    assert!(!qemu_running_with(&image), "qemu left running");
}

#[test]
fn a_forwarded_port_without_a_listener_does_not_count_as_an_answer() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-noport");
    let image = initramfs(&dir, &init_talos_like(None), None);
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--port", "50000", "--timeout", "30"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_failure(&out, "smoke boot --json --port 50000 without a listener");
    assert_eq!(result["failure"], "timeout", "{result:#}");
    assert!(result["time_to_expect_s"].as_f64().is_some(), "{result:#}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("guest port 50000 never answered"),
        "{result:#}"
    );
}

#[test]
fn boot_fails_when_qemu_exits_and_custom_patterns_match() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-exit");
    let image = initramfs(&dir, INIT_POWEROFF, None);
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--timeout", "300", "--expect", r"^login: \w+$"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_failure(&out, "smoke boot --json of a guest that powers off");
    assert_eq!(result["failure"], "qemu-exited", "{result:#}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .starts_with("qemu exited"),
        "{result:#}"
    );

    // A pattern that does not parse is refused before booting, naming itself and the fix.
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--expect", r"^init: power(ing off"].map(String::from));
    let out = run(xtask(&dir).args(["smoke", "boot"]).args(&args));
    let err = assert_usage(&out, "smoke boot --expect '^init: power(ing off'");
    assert!(
        err.contains("--expect: pattern `^init: power(ing off` is not a regular expression")
            && err.contains("fix: escape characters meant literally with `\\`"),
        "{err}"
    );
    // The same boot passes when the pattern names a line it prints (groups work).
    let mut args = kernel_args(&image, "console=ttyAMA0");
    args.extend(["--timeout", "300", "--expect", r"^init: power(ing)? off$"].map(String::from));
    let (result, out) = smoke_boot(&dir, &strs(&args));
    assert_success(
        &out,
        &format!("smoke boot --json --expect '^init: power(ing)? off$': {result:#}"),
    );
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

#[test]
fn qemu_dies_with_xtask_when_killed_or_interrupted() {
    if !have_tools(BOOT_TOOLS) {
        return;
    }
    let dir = temp_dir("smoke-boot-killed");
    let image = initramfs(&dir, INIT_SILENT, None);
    for signal in ["KILL", "INT"] {
        let log = dir.join(format!("console-{signal}.log"));
        let mut child = xtask(&dir)
            .args(["smoke", "boot", "--json", "--cpus", "1", "--timeout", "300"])
            .arg("--log")
            .arg(&log)
            .args(kernel_args(&image, "console=ttyAMA0"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(started.elapsed().as_secs() < 120, "qemu wrote no console");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(qemu_running_with(&image));
        // SIGKILL to xtask alone (nothing can run in it); SIGINT to the whole group, as Ctrl-C.
        let pid = child.id() as i32;
        let (target, number) = match signal {
            "KILL" => (pid, 9),
            _ => (-pid, 2),
        };
        assert_eq!(
            unsafe { kill(target, number) },
            0,
            "kill({target}, {number})"
        );
        let _ = child.wait();
        let stopped = std::time::Instant::now();
        while qemu_running_with(&image) {
            assert!(
                stopped.elapsed().as_secs() < 10,
                "qemu outlived xtask ({signal})"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// A GPT disk with an EFI system partition holding systemd-boot, a loader entry, the kernel
/// (an EFI stub) and the initramfs: built as a plain file, without root or loop devices.
fn uefi_disk(dir: &Path, initramfs: &Path) -> PathBuf {
    let fixtures = arm64();
    const MIB: u64 = 1024 * 1024;
    let (disk_size, esp_start, esp_size) = (96 * MIB, MIB, 94 * MIB);
    let esp = dir.join("esp.img");
    std::fs::File::create(&esp)
        .unwrap()
        .set_len(esp_size)
        .unwrap();
    let ok = |cmd: &mut Command| {
        let out = run(cmd);
        assert_success(&out, &format!("{cmd:?}"));
    };
    ok(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "ESP"])
        .arg(&esp));
    let esp_arg = esp.to_str().unwrap();
    for d in ["::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"] {
        ok(Command::new("mmd").args(["-i", esp_arg, d]));
    }
    let files = dir.join("esp-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("loader.conf"), "timeout 0\ndefault smoke.conf\n").unwrap();
    std::fs::write(
        files.join("smoke.conf"),
        "title smoke\nlinux /vmlinuz\ninitrd /initramfs\noptions console=ttyAMA0\n",
    )
    .unwrap();
    for (from, to) in [
        (fixtures.systemd_boot.clone(), "::/EFI/BOOT/BOOTAA64.EFI"),
        (files.join("loader.conf"), "::/loader/loader.conf"),
        (files.join("smoke.conf"), "::/loader/entries/smoke.conf"),
        (fixtures.kernel.clone(), "::/vmlinuz"),
        (initramfs.to_owned(), "::/initramfs"),
    ] {
        ok(Command::new("mcopy")
            .args(["-i", esp_arg])
            .arg(&from)
            .arg(to));
    }
    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(disk_size)
        .unwrap();
    // sgdisk without -q: with it the table was not written on these machines.
    ok(Command::new("sgdisk")
        .args([
            "-n",
            &format!("1:{}:+{}M", esp_start / 512, esp_size / MIB),
            "-t",
            "1:ef00",
        ])
        .arg(&disk));
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.seek(SeekFrom::Start(esp_start)).unwrap();
        f.write_all(&std::fs::read(&esp).unwrap()).unwrap();
    }
    ok(Command::new("xz").args(["-0", "-f", "-T1"]).arg(&disk));
    dir.join("disk.raw.xz")
}

#[test]
fn uefi_disk_boots_through_firmware_from_an_esp() {
    if !have_tools(&[BOOT_TOOLS, &["sgdisk", "mkfs.vfat", "mcopy", "mmd", "xz"]].concat()) {
        return;
    }
    let dir = temp_dir("smoke-boot-uefi");
    let image = initramfs(&dir, &init_talos_like(Some(ANSWER_TLS)), Some(ANSWER_TLS));
    let disk = uefi_disk(&dir, &image);
    let (result, out) = smoke_boot(
        &dir,
        &[
            "--disk",
            disk.to_str().unwrap(),
            "--port",
            "50000",
            "--timeout",
            "300",
        ],
    );
    assert_success(&out, &format!("smoke boot --json --disk: {result:#}"));
    assert_eq!(result["result"], "passed", "{result:#}");
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    assert!(
        console.contains("EFI stub"),
        "booted through the firmware: {console}"
    );
    assert!(console.contains(MAINTENANCE_LINE));
    // The image is never written, and the scratch copies (firmware, disk) are gone.
    assert!(disk.exists());
    assert!(!dir
        .join("target/smoke")
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false));
}

// ---------------------------------------------------------------------------------------------
// Static checks

fn digest_of(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// A docker-archive like the imager's installer: one layer, a config with `arch`.
fn docker_archive(path: &Path, arch: &str, marker: &str) {
    let dir = path.with_extension("parts");
    let _ = std::fs::remove_dir_all(&dir);
    let assets = dir.join("content/usr/install").join(arch);
    std::fs::create_dir_all(&assets).unwrap();
    std::fs::write(dir.join("content/marker"), marker).unwrap();
    // What the imager puts where `talosctl upgrade --image` looks: sd-boot and the UKI.
    std::fs::write(assets.join("systemd-boot.efi"), "sd-boot").unwrap();
    std::fs::write(assets.join("vmlinuz.efi"), "uki").unwrap();
    let out = run(Command::new("tar")
        .args(["-cf", "layer.tar", "-C", "content", "marker", "usr"])
        .current_dir(&dir));
    assert_success(&out, "tar -cf layer.tar");
    let layer = std::fs::read(dir.join("layer.tar")).unwrap();
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Labels": {"marker": marker}, "Entrypoint": ["/bin/installer"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", digest_of(&layer))]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!([{"Config": "config.json", "RepoTags": ["installer:test"], "Layers": ["layer.tar"]}])
            .to_string(),
    )
    .unwrap();
    let out = run(Command::new("tar")
        .arg("-cf")
        .arg(path)
        .args(["manifest.json", "config.json", "layer.tar"])
        .current_dir(&dir));
    assert_success(&out, &format!("tar -cf {}", path.display()));
}

#[track_caller]
fn push(archive: &Path, target: &str) {
    let out = run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{target}"),
    ]));
    assert_success(&out, &format!("skopeo copy (push) to {target}"));
}

const FAKE: [&str; 4] = [
    "1111111111111111111111111111111111111111111111111111111111111111",
    "2222222222222222222222222222222222222222222222222222222222222222",
    "3333333333333333333333333333333333333333333333333333333333333333",
    "4444444444444444444444444444444444444444444444444444444444444444",
];

fn locked(name: &str) -> String {
    let (tag, i) = match name {
        "drbd" => ("9.3.2-v1.13.99", 0),
        "zfs" => ("2.4.3-v1.13.99", 1),
        "spin" => ("v0.25.1", 2),
        _ => ("1.98.5", 3),
    };
    format!("ghcr.io/siderolabs/{name}:{tag}@sha256:{}", FAKE[i])
}

/// Writes `_out/<variant>/` as a build would: outputs, and build.json recording them.
fn built_variant(
    root: &Path,
    registry: &Registry,
    variant: &str,
    repository: &str,
    extensions: &[&str],
    installer_arch: &str,
) -> Value {
    let out = root.join("_out").join(variant);
    std::fs::create_dir_all(&out).unwrap();
    docker_archive(&out.join("installer-arm64.tar"), installer_arch, variant);
    for (name, content) in [
        ("kernel-arm64", format!("kernel of {variant}")),
        (
            "initramfs-metal-arm64.xz",
            format!("initramfs of {variant}"),
        ),
        ("metal-arm64.raw.xz", format!("disk of {variant}")),
    ] {
        std::fs::write(out.join(name), content).unwrap();
    }
    let image = format!("{}/{repository}", registry.addr);
    for tag in ["v1.13.99", "v1.13.99-test"] {
        push(&out.join("installer-arm64.tar"), &format!("{image}:{tag}"));
    }
    let (_, digest) = registry.manifest(repository, "v1.13.99").unwrap();

    let refs: Vec<String> = extensions.iter().map(|e| locked(e)).collect();
    let artifacts = [
        ("installer", "installer-arm64.tar"),
        ("kernel", "kernel-arm64"),
        ("initramfs", "initramfs-metal-arm64.xz"),
        ("metal", "metal-arm64.raw.xz"),
    ];
    let profiles: Vec<Value> = artifacts
        .iter()
        .map(|(kind, artifact)| {
            json!({
                "kind": kind, "artifact": artifact, "key": digest_of(kind.as_bytes()), "cache_hit": false,
                "profile": {
                    "arch": "arm64", "platform": "metal", "secureboot": false, "version": "v1.13.99",
                    "input": {
                        "kernel": {"path": "/usr/install/arm64/vmlinuz"},
                        "initramfs": {"path": "/usr/install/arm64/initramfs.xz"},
                        "baseInstaller": {"imageRef": "ghcr.io/siderolabs/installer-base:v1.13.99"},
                        "systemExtensions": refs.iter().map(|r| json!({"imageRef": r})).collect::<Vec<_>>()
                    },
                    "output": {"kind": if *kind == "metal" { "image" } else { kind }, "outFormat": "raw"}
                }
            })
        })
        .collect();
    let files: Vec<Value> = artifacts
        .iter()
        .map(|(_, name)| {
            let bytes = std::fs::read(out.join(name)).unwrap();
            json!({"name": name, "sha256": digest_of(&bytes), "size": bytes.len()})
        })
        .collect();
    let record = json!({
        "variant": variant, "talos_version": "v1.13.99", "arch": "arm64",
        "imager": "ghcr.io/siderolabs/imager:v1.13.99",
        "extensions": extensions.iter().map(|e| json!({"name": e, "ref": locked(e)})).collect::<Vec<_>>(),
        "profiles": profiles,
        "files": files,
        "published": [{"kind": "installer", "image": image, "digest": digest, "tags": ["v1.13.99", "v1.13.99-test"]}],
        "imager_runs": 4, "cache_hits": 0, "timings": {"build": 1.0}
    });
    std::fs::write(
        out.join("build.json"),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
    record
}

fn checked_root(name: &str) -> (PathBuf, Registry) {
    let root = temp_dir(name);
    copy_repo_data(&root);
    let lock = json!({
        "talos_version": "v1.13.99",
        "extensions_image": format!("ghcr.io/siderolabs/extensions:v1.13.99@sha256:{}", FAKE[0]),
        "extensions": {
            "drbd": locked("drbd"), "spin": locked("spin"), "tailscale": locked("tailscale"), "zfs": locked("zfs")
        }
    });
    std::fs::write(root.join("variants/extensions.lock"), lock.to_string()).unwrap();
    let registry = Registry::start(&root.join("registry"));
    (root, registry)
}

#[test]
fn static_checks_pass_for_a_faithful_build() {
    if !have_tools(&["docker-registry", "skopeo", "tar"]) {
        return;
    }
    let (root, registry) = checked_root("smoke-check-good");
    built_variant(
        &root,
        &registry,
        "gateway",
        "talos-cozystack-spin-tailscale/talos",
        &["drbd", "zfs", "spin", "tailscale"],
        "arm64",
    );
    built_variant(
        &root,
        &registry,
        "compute",
        "talos-cozystack-spin-only/talos",
        &["drbd", "zfs", "spin"],
        "arm64",
    );
    let out = run(xtask(&root).args(["smoke", "check"]));
    assert_success(&out, "smoke check");
    let text = stdout(&out);
    assert!(text.contains("gateway: static checks passed"), "{text}");
    assert!(text.contains("compute: static checks passed"), "{text}");
    assert!(
        text.contains("installer-arm64.tar: config is linux/arm64"),
        "{text}"
    );
    assert!(text.contains("registry config is linux/arm64"), "{text}");
    assert!(
        text.contains("talos-cozystack-spin-tailscale/talos:v1.13.99-test -> sha256:"),
        "{text}"
    );

    let out = run(xtask(&root).args(["smoke", "check", "--variant", "compute", "--json"]));
    assert_success(&out, "smoke check --variant compute --json");
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["variant"], "compute");
    assert_eq!(reports[0]["findings"], json!([]));
    assert_eq!(reports[0]["record"], "_out/compute/build.json");
}

#[test]
fn static_checks_report_every_problem_at_once() {
    if !have_tools(&["docker-registry", "skopeo", "tar"]) {
        return;
    }
    let (root, registry) = checked_root("smoke-check-bad");
    let repository = "talos-cozystack-spin-only/talos";
    // compute built with tailscale in its profiles, from an amd64 installer
    let mut record = built_variant(
        &root,
        &registry,
        "compute",
        repository,
        &["drbd", "zfs", "spin"],
        "amd64",
    );
    let tailscale = json!({"imageRef": locked("tailscale")});
    for profile in record["profiles"].as_array_mut().unwrap() {
        profile["profile"]["input"]["systemExtensions"]
            .as_array_mut()
            .unwrap()
            .push(tailscale.clone());
    }
    let out = root.join("_out/compute");
    std::fs::write(
        out.join("build.json"),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
    // the kernel changed after the build (same size, other bytes)
    let kernel = std::fs::read(out.join("kernel-arm64")).unwrap();
    std::fs::write(
        out.join("kernel-arm64"),
        kernel.iter().map(|b| b ^ 1).collect::<Vec<_>>(),
    )
    .unwrap();
    // a tag moved to another image
    let other = root.join("other.tar");
    docker_archive(&other, "arm64", "someone else");
    push(
        &other,
        &format!("{}/{repository}:v1.13.99-test", registry.addr),
    );

    let out = run(xtask(&root).args(["smoke", "check", "--variant", "compute"]));
    let err = assert_failure(&out, "smoke check --variant compute");
    assert!(
        err.contains("static checks of variant `compute` failed: "),
        "{err}"
    );
    for expected in [
        "field `files[1].sha256`",
        "kernel-arm64 has sha256",
        "installer-arm64.tar: image config says linux/amd64, not linux/arm64",
        "in the registry, image config says linux/amd64, not linux/arm64",
        "carries extension `tailscale`, which variant `compute` does not have",
        "field `profiles[3].profile.input.systemExtensions[3].imageRef`",
        ":v1.13.99-test points at sha256:",
        "field `published[0].tags[1]`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    // one finding per profile for tailscale, one each for the others
    assert_eq!(
        err.matches("carries extension `tailscale`").count(),
        4,
        "{err}"
    );
    assert!(
        !err.contains("tags[0]"),
        "the tag left alone is fine: {err}"
    );
    // the dry run runs the checks on disk, as the real run does before booting, and refuses:
    // the registry's are left to the real run
    let out = run(xtask(&root).args(["smoke", "--variant", "compute", "--dry-run"]));
    let err = assert_failure(&out, "smoke --dry-run of a build its record does not match");
    assert!(err.contains("a real run would fail"), "{err}");
    assert!(err.contains("kernel-arm64 has sha256"), "{err}");
    assert!(
        !err.contains(":v1.13.99-test points at"),
        "no registry read: {err}"
    );
    assert_eq!(stdout(&out), "", "no boot printed");
}

#[test]
fn smoke_of_an_unbuilt_variant_says_how_to_build_it() {
    let root = temp_dir("smoke-unbuilt");
    copy_repo_data(&root);
    let out = run(xtask(&root).args(["smoke", "check", "--variant", "gateway"]));
    let err = assert_failure(&out, "smoke check --variant gateway");
    assert!(
        err.contains("variant `gateway` is not built; run `cargo xtask build --variant gateway`"),
        "{err}"
    );
    // every variant is reported, as JSON too, though none can be checked
    let out = run(xtask(&root).args(["smoke", "check", "--json"]));
    assert_failure(&out, "smoke check --json");
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(strings(&reports, "/variant"), ["compute", "gateway"]);
    assert!(
        reports[1]["findings"][0]
            .as_str()
            .unwrap()
            .contains("variant `gateway` is not built"),
        "{reports:#}"
    );
    let out = run(xtask(&root).args(["smoke", "--json"]));
    assert_failure(&out, "smoke --json");
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = strings(&results, "/variant");
    assert_eq!(names, ["compute", "gateway"], "every variant is tried");
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .contains("run `cargo xtask build --variant gateway`"));
    // a dry run refuses what the real run refuses, for every variant at once, printing nothing
    let out = run(xtask(&root).args(["smoke", "--dry-run"]));
    let err = assert_failure(&out, "smoke --dry-run of unbuilt variants");
    assert!(err.contains("a real run would fail"), "{err}");
    for variant in ["compute", "gateway"] {
        assert!(
            err.contains(&format!(
                "variant `{variant}` is not built; run `cargo xtask build --variant {variant}`"
            )),
            "{err}"
        );
    }
    assert_eq!(stdout(&out), "", "nothing printed before the refusal");
    // without the static checks, the boot needs the kernel and initramfs
    let boot = ["smoke", "--variant", "gateway", "--no-check", "--dry-run"];
    let err = assert_failure(&run(xtask(&root).args(boot)), "a boot of nothing");
    assert!(
        err.contains("_out/gateway/kernel-arm64 and ")
            && err.contains("_out/gateway/initramfs-metal-arm64.xz do not exist (build them first"),
        "both named at once: {err}"
    );
    let out_dir = root.join("_out/gateway");
    std::fs::create_dir_all(&out_dir).unwrap();
    for file in ["kernel-arm64", "initramfs-metal-arm64.xz"] {
        std::fs::write(out_dir.join(file), "stand-in").unwrap();
    }
    let out = run(xtask(&root).args(boot));
    assert_success(&out, "smoke --variant gateway --no-check --dry-run");
    let text = stdout(&out);
    let command = text
        .lines()
        .find(|l| l.starts_with("qemu-system-aarch64 -machine virt"))
        .unwrap_or_else(|| panic!("no qemu line: {text}"));
    assert!(
        command.contains("/_out/gateway/kernel-arm64 -initrd "),
        "{command}"
    );
    assert!(
        command.contains(
            "/_out/gateway/initramfs-metal-arm64.xz -append 'console=ttyAMA0 talos.platform=metal"
        ),
        "{command}"
    );
    assert!(command.contains(",hostfwd=tcp:127.0.0.1:"), "{command}");
    assert!(
        command.contains("-:50000 -device virtio-net-pci,netdev=net0,romfile="),
        "{command}"
    );
}

#[test]
fn a_guest_without_cpus_or_with_too_little_memory_is_a_usage_error() {
    for args in [&["--cpus", "0"][..], &["--memory", "100"][..]] {
        let out = run(xtask(&fixture_root())
            .args(["smoke", "--dry-run"])
            .args(args));
        assert_eq!(
            out.status.code(),
            Some(2),
            "smoke --dry-run {args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("invalid value '{}'", args[1])),
            "{}",
            stderr(&out)
        );
    }
}
