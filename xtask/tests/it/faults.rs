//! Faults a build must survive, each against real components (podman, registry, skopeo, tar, a
//! real tmpfs) with misbehaving STAND-IN imagers (tests/standin/fault-imager.sh): interrupts,
//! two builds at once, an imager that fails or cuts its tar short, a full disk, corrupt cache
//! entries and records, and a registry that stops half way through a push. After each, nothing
//! half-written is trusted and a rerun rebuilds only what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::pipeline::*;
use crate::support::*;
use serde_json::Value;

/// A stand-in imager image that misbehaves as `marker` says (see fault-imager.sh).
fn fault_image(env: &Pipeline, name: &str, marker: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin");
    let empty = env.dir.join("empty-marker");
    std::fs::write(&empty, "").unwrap();
    let marker_path = format!("/{marker}");
    env.podman.busybox_image(
        name,
        &[
            (&dir.join("imager.sh"), "/imager"),
            (&dir.join("fault-imager.sh"), "/fault"),
            (&empty, &marker_path),
        ],
        "/fault",
    );
}

/// `cargo xtask build` of the compute variant without matchbox or push (fast), with `imager`.
fn build_cmd(env: &Pipeline, imager: &str) -> Command {
    let mut cmd = env.xtask();
    cmd.args([
        "build",
        "--locked",
        "--engine",
        "podman",
        "--no-matchbox",
        "--variant",
        "compute",
        "--imager",
        imager,
        "--json",
    ]);
    cmd
}

fn out_dir(env: &Pipeline) -> PathBuf {
    env.root.join("_out/compute")
}

/// The outputs the fault left: a kept output has its file and its cache entry; a dropped one
/// has neither, and no temporary directory remains.
fn assert_kept_and_dropped(env: &Pipeline, kept: &[(&str, &str)], dropped: &[(&str, &str)]) {
    let dir = out_dir(env);
    for (kind, file) in kept {
        assert!(dir.join(file).is_file(), "{file} kept");
        assert!(
            dir.join(format!(".cache/{kind}.json")).is_file(),
            "{kind} entry kept"
        );
    }
    for (kind, file) in dropped {
        assert!(!dir.join(file).exists(), "{file} must not exist");
        assert!(
            !dir.join(format!(".cache/{kind}.json")).exists(),
            "no cache entry vouches for {kind}"
        );
        assert!(
            !dir.join(format!(".tmp-{kind}")).exists(),
            ".tmp-{kind} removed"
        );
    }
}

fn record_of(out: &Output) -> Value {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)));
    v["variants"][0].clone()
}

/// Which kinds a build's record says were cache hits.
fn hits(record: &Value) -> Vec<(String, bool)> {
    record["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["cache_hit"] == true,
            )
        })
        .collect()
}

fn containers(env: &Pipeline) -> String {
    let out = run(env
        .podman
        .command("podman")
        .args(["ps", "-a", "--format", "{{.Names}}"]));
    stdout(&out)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const INSTALLER: (&str, &str) = ("installer", "installer-arm64.tar");
const KERNEL: (&str, &str) = ("kernel", "kernel-arm64");

#[test]
fn sigint_and_sigterm_remove_the_imager_container_and_record_nothing_partial() {
    let Some(env) = Pipeline::setup("faults-signals", None) else {
        return;
    };
    let slow = "localhost/fault-imager:interrupted";
    fault_image(&env, slow, "slow-kernel");
    let log = out_dir(&env).join("imager-kernel.log");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let _ = std::fs::remove_file(&log);
        let child = build_cmd(&env, slow)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the slow kernel run", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("fault stand-in: slow kernel"))
        });
        assert!(
            containers(&env).contains("xtask-compute-kernel-"),
            "the imager runs"
        );

        // Two builds at once in one checkout: the second refuses clearly, touching nothing.
        if signal == "INT" {
            let second = run(&mut build_cmd(&env, OK));
            let err = assert_failure(&second, "a second build in the same checkout");
            assert!(
                err.contains("another build is using _out in this checkout (pid ")
                    && err.contains(&format!("pid {}", child.id())),
                "{err}"
            );
        }

        let kill = run(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string()));
        assert_success(&kill, &format!("kill -{signal}"));
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "SIG{signal}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!(
                "interrupted by SIG{signal}: removed the imager container"
            )),
            "{}",
            stderr(&out)
        );
        let left = containers(&env);
        assert!(
            !left.contains("xtask-"),
            "SIG{signal} left a container: {left}"
        );
        assert_kept_and_dropped(&env, &[INSTALLER], &[KERNEL]);
        assert!(
            !out_dir(&env).join("build.json").exists(),
            "no record of a partial build"
        );
    }

    // The rerun: the same imager reference, well-behaved now. Only what was missing runs.
    let tag = run(env.podman.command("podman").args(["tag", OK, slow]));
    assert_success(&tag, &format!("podman tag {OK} {slow}"));
    let out = run(&mut build_cmd(&env, slow));
    assert_success(&out, &format!("build --imager {slow} (the rerun)"));
    let record = record_of(&out);
    assert_eq!(
        hits(&record),
        [
            ("installer".to_owned(), true),
            ("kernel".to_owned(), false),
            ("initramfs".to_owned(), false),
            ("metal".to_owned(), false)
        ]
    );
    assert_eq!(record["imager_runs"], 3);
}

#[test]
fn a_failing_or_truncating_imager_and_corrupt_entries_are_never_trusted() {
    let Some(env) = Pipeline::setup("faults-outputs", None) else {
        return;
    };
    // A tar cut short with exit status 0.
    let truncating = "localhost/fault-imager:truncating";
    fault_image(&env, truncating, "truncate-kernel");
    let out = run(&mut build_cmd(&env, truncating));
    let err = assert_failure(&out, &format!("build --imager {truncating}"));
    assert!(
        err.contains("the imager's output is not a complete gzip tar (cut short, or not gzip)"),
        "{err}"
    );
    assert_kept_and_dropped(&env, &[INSTALLER], &[KERNEL]);
    assert!(!out_dir(&env).join("build.json").exists());

    // An imager that writes part of an output and exits non-zero.
    let out = run(&mut build_cmd(&env, FAIL));
    let err = assert_failure(&out, &format!("build --imager {FAIL}"));
    assert!(err.contains("the imager failed (exit status: 1)"), "{err}");
    assert!(!out_dir(&env).join(".tmp-installer").exists());

    // A good build, then corrupt state: each corrupt piece rebuilds only its own output.
    let out = run(&mut build_cmd(&env, OK));
    assert_success(&out, &format!("build --imager {OK}"));
    let dir = out_dir(&env);
    std::fs::write(dir.join(".cache/kernel.json"), "{\"key\": ").unwrap();
    let initramfs = dir.join("initramfs-metal-arm64.xz");
    let mut bytes = std::fs::read(&initramfs).unwrap();
    bytes[0] ^= 0xff; // same size, other bytes
    std::fs::write(&initramfs, &bytes).unwrap();
    let out = run(&mut build_cmd(&env, OK));
    assert_success(&out, &format!("build --imager {OK} (corrupt cache state)"));
    let record = record_of(&out);
    assert_eq!(
        hits(&record),
        [
            ("installer".to_owned(), true),
            ("kernel".to_owned(), false),
            ("initramfs".to_owned(), false),
            ("metal".to_owned(), true)
        ]
    );

    // A corrupt build record: nothing reads it as valid, and a build rewrites it.
    for corrupt in ["{\"variant\": \"compute\", \"files\": [", "", "[]"] {
        std::fs::write(dir.join("build.json"), corrupt).unwrap();
        let mut publish = env.xtask();
        publish
            .args(["ci", "--publish-only", "--variant", "compute", "--registry"])
            .arg(format!("{}/acme", env.registry.addr));
        let out = run(&mut publish);
        assert_failure(
            &out,
            &format!("ci --publish-only with a corrupt record ({corrupt:?})"),
        );
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            text.contains("_out/compute/build.json is not a build record: rebuild with `cargo xtask build --variant compute`"),
            "{corrupt:?}: {text}"
        );
        assert!(env
            .registry
            .tags("acme/talos-cozystack-spin-only/talos")
            .is_empty());
    }
    let out = run(&mut build_cmd(&env, OK));
    assert_success(
        &out,
        &format!("build --imager {OK} (after the corrupt records)"),
    );
    assert_eq!(env.record("compute")["cache_hits"], 4);
}

#[test]
fn a_full_output_filesystem_fails_the_output_and_keeps_the_others() {
    let Some(env) = Pipeline::setup("faults-full-disk", None) else {
        return;
    };
    let big = "localhost/fault-imager:big";
    fault_image(&env, big, "big-kernel");
    let dir = env.root.join("_out");
    std::fs::create_dir_all(&dir).unwrap();
    // A 16 MiB tmpfs for _out: the installer fits, the 24 MiB kernel does not.
    let mounted = run(Command::new("mount").args([
        "-t",
        "tmpfs",
        "-o",
        "size=16m",
        "xtask-faults",
        dir.to_str().unwrap(),
    ]));
    if !mounted.status.success() {
        assert!(
            std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(),
            "mounting a tmpfs failed: {}",
            stderr(&mounted)
        );
        skipped(&format!(
            "cannot mount a tmpfs here ({})",
            stderr(&mounted).trim()
        ));
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(dir.clone());
    let out = run(&mut build_cmd(&env, big));
    let err = assert_failure(&out, &format!("build --imager {big} on a full filesystem"));
    assert!(err.contains("is full (tar: "), "{err}");
    assert!(err.contains("free space"), "{err}");
    assert_kept_and_dropped(&env, &[INSTALLER], &[KERNEL]);
    assert!(!out_dir(&env).join("build.json").exists());

    // With room again, the rerun builds only what is missing.
    for entry in ["installer-arm64.tar", ".cache/installer.json"] {
        let from = out_dir(&env).join(entry);
        let to = env.dir.join(entry.replace('/', "_"));
        std::fs::copy(&from, &to).unwrap();
    }
    drop(guard);
    std::fs::create_dir_all(out_dir(&env).join(".cache")).unwrap();
    for entry in ["installer-arm64.tar", ".cache/installer.json"] {
        std::fs::copy(
            env.dir.join(entry.replace('/', "_")),
            out_dir(&env).join(entry),
        )
        .unwrap();
    }
    let out = run(&mut build_cmd(&env, big));
    assert_success(
        &out,
        &format!("build --imager {big} (with free space again)"),
    );
    let record = record_of(&out);
    assert_eq!(record["cache_hits"], 1, "the installer survived: {record}");
    assert_eq!(record["imager_runs"], 3);
}

/// A TCP proxy in front of the registry that stops the registry (kills its process) once the
/// client has sent `budget` bytes through it, and cuts every connection then: a registry that
/// dies half way through a push. `restart` brings up a new registry on the same storage.
struct StoppingProxy {
    addr: String,
    state: std::sync::Arc<ProxyState>,
    storage: PathBuf,
}

struct ProxyState {
    upstream: std::sync::Mutex<String>,
    budget: std::sync::atomic::AtomicI64,
    registry: std::sync::Mutex<Option<crate::support::registry::Registry>>,
    stopped_after: std::sync::atomic::AtomicI64,
}

impl StoppingProxy {
    fn start(storage: &Path, budget: i64) -> StoppingProxy {
        use std::sync::atomic::AtomicI64;
        let registry = crate::support::registry::Registry::start(storage);
        let state = std::sync::Arc::new(ProxyState {
            upstream: std::sync::Mutex::new(registry.addr.clone()),
            budget: AtomicI64::new(budget),
            registry: std::sync::Mutex::new(Some(registry)),
            stopped_after: AtomicI64::new(-1),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(client, &state));
            }
        });
        StoppingProxy {
            addr,
            state,
            storage: storage.to_owned(),
        }
    }

    fn restart(&self) {
        use std::sync::atomic::Ordering;
        let registry = crate::support::registry::Registry::start(&self.storage);
        *self.state.upstream.lock().unwrap() = registry.addr.clone();
        *self.state.registry.lock().unwrap() = Some(registry);
        self.state.budget.store(i64::MAX, Ordering::SeqCst);
    }

    fn get(&self, path: &str) -> Option<Value> {
        let guard = self.state.registry.lock().unwrap();
        let registry = guard.as_ref()?;
        let (status, _, body) = registry.get(path, "application/json");
        (status == 200).then(|| serde_json::from_slice(&body).unwrap())
    }
}

impl Drop for StoppingProxy {
    fn drop(&mut self) {
        // The accept loop keeps the state alive: stop the registry here.
        drop(self.state.registry.lock().unwrap().take());
    }
}

fn serve(mut client: std::net::TcpStream, state: &ProxyState) {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::sync::atomic::Ordering;
    let upstream = state.upstream.lock().unwrap().clone();
    let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
        return; // the registry is gone: the client sees the connection close
    };
    let (mut back_from, mut back_to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Both);
    });
    let mut buf = [0u8; 16384];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let left = state.budget.fetch_sub(n as i64, Ordering::SeqCst) - n as i64;
        if left < 0 {
            if let Some(registry) = state.registry.lock().unwrap().take() {
                state.stopped_after.store(left, Ordering::SeqCst);
                drop(registry); // kills docker-registry
            }
            let _ = server.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

#[test]
fn a_registry_that_stops_half_way_through_a_push_tags_nothing_and_a_rerun_pushes_without_rebuilding(
) {
    let Some(env) = Pipeline::setup("faults-registry", None) else {
        return;
    };
    // A 24 MiB incompressible kernel makes the matchbox image's layer big enough to stop the
    // registry in the middle of its upload: after 8 MiB have gone through.
    let big = "localhost/fault-imager:big-push";
    fault_image(&env, big, "big-kernel");
    let proxy = StoppingProxy::start(&env.dir.join("registry-stopping"), 8 << 20);
    let push = || {
        let mut cmd = env.xtask();
        cmd.args([
            "build",
            "--locked",
            "--push",
            "--engine",
            "podman",
            "--variant",
            "compute",
            "--json",
            "--imager",
            big,
            "--matchbox-base",
            BASE,
        ])
        .arg("--tree")
        .arg(&env.tree)
        .arg("--registry")
        .arg(format!("{}/acme", proxy.addr))
        .env("XTASK_RETRY_ATTEMPTS", "2")
        .env("XTASK_RETRY_BASE_MS", "100");
        run(&mut cmd)
    };
    let out = push();
    assert_failure(
        &out,
        "build --push (the registry stops midway: the push must fail)",
    );
    assert!(
        proxy
            .state
            .stopped_after
            .load(std::sync::atomic::Ordering::SeqCst)
            != -1,
        "the registry was stopped during the push"
    );
    let err = stderr(&out);
    assert!(
        err.contains("publishing variant `compute`: no tag was moved"),
        "{err}"
    );

    // Back up: nothing half-pushed carries a tag, and the rerun only pushes.
    proxy.restart();
    for repo in [
        "talos-cozystack-spin-only/talos",
        "talos-cozystack-spin-only/matchbox",
    ] {
        let tags = proxy.get(&format!("/v2/acme/{repo}/tags/list"));
        let tags = tags.map(|t| t["tags"].clone()).unwrap_or(Value::Null);
        assert!(
            tags.is_null() || tags.as_array().is_some_and(|a| a.is_empty()),
            "{repo} has tags after a failed push: {tags}"
        );
    }
    let out = push();
    assert_success(&out, "build --push (again, the registry up)");
    let record = record_of(&out);
    assert_eq!(record["imager_runs"], 0, "nothing rebuilt: {record}");
    assert_eq!(record["cache_hits"], 5, "4 outputs and the matchbox image");
    for published in record["published"].as_array().unwrap() {
        let image = published["image"].as_str().unwrap();
        let repo = image.split_once("/acme/").unwrap().1;
        let tags = proxy
            .get(&format!("/v2/acme/{repo}/tags/list"))
            .unwrap_or_else(|| panic!("{repo} has no tags"));
        assert!(
            tags["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "v1.13.99"),
            "{repo}: {tags}"
        );
    }
}

/// SIGTERM while `ci --push` pushes to ghcr.io with $GITHUB_TOKEN (the imager runs done; real
/// skopeo held on a proxy that accepts and never answers): the run ends by the signal there,
/// without going on to tag or to report success, and the temporary auth file goes with it.
#[test]
fn a_signal_during_a_push_ends_the_run_and_removes_the_temporary_credential() {
    use std::os::unix::process::ExitStatusExt;
    let Some(env) = Pipeline::setup("faults-push-signal", None) else {
        return;
    };
    let address = silent_proxy();
    let tmp = temp_dir("faults-push-signal-tmp");
    let auth_files = || auth_files_in(&tmp);
    let log = env.dir.join("ci.log");
    let mut cmd = env.xtask();
    cmd.args(["ci", "--push", "--no-boot", "--variant", "compute"])
        .args([
            "--engine",
            "podman",
            "--imager",
            OK,
            "--matchbox-base",
            BASE,
        ])
        .args(["--registry", "ghcr.io/acme", "--tree"])
        .arg(&env.tree);
    let mut child = with_token_behind(&mut cmd, &tmp, &address)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pushing = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the push to start", || {
        pushing().contains("push installer to ghcr.io/acme/") && !auth_files().is_empty()
    });
    let kill = run(Command::new("kill").arg("-15").arg(child.id().to_string()));
    assert_success(&kill, "kill -15");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "SIGTERM during the push did not end the run:\n{}",
                pushing()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.signal(), Some(15), "{}", pushing());
    assert_eq!(
        auth_files(),
        Vec::<PathBuf>::new(),
        "the credential was left"
    );
    assert!(
        !pushing().contains("release tags"),
        "went on: {}",
        pushing()
    );
}

/// `cmd` with $GITHUB_TOKEN set, $TMPDIR at `tmp`, and every HTTPS request through `proxy`.
fn with_token_behind<'a>(cmd: &'a mut Command, tmp: &Path, proxy: &str) -> &'a mut Command {
    cmd.env("TMPDIR", tmp)
        .env("GITHUB_TOKEN", "ghp_notarealtoken")
        .env("GITHUB_ACTOR", "someone")
        .env("HTTPS_PROXY", proxy)
        .env("https_proxy", proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
}

/// The temporary registry auth files xtask wrote in `tmp` (its $TMPDIR) and did not remove.
fn auth_files_in(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("xtask-auth-"))
        .collect()
}

/// An HTTP proxy on loopback that accepts every connection and never answers.
fn silent_proxy() -> String {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", proxy.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for client in proxy.incoming() {
            held.push(client); // never answered
        }
    });
    address
}

/// SIGINT or SIGTERM outside a build (here: `lock --check` waiting on the registry) while the
/// temporary auth file holding $GITHUB_TOKEN exists: the file goes with the process, which still
/// ends by the signal. Real skopeo, held on a proxy that accepts and never answers.
#[test]
fn a_signal_outside_a_build_removes_the_temporary_registry_credential() {
    use std::os::unix::process::ExitStatusExt;
    if !have_tools(&["skopeo"]) {
        return;
    }
    let address = silent_proxy();
    let tmp = temp_dir("faults-auth-signal");
    let auth_files = || auth_files_in(&tmp);
    for signal in [15, 2] {
        let mut cmd = xtask(&fixture_root());
        cmd.args(["lock", "--check"]);
        let child = with_token_behind(&mut cmd, &tmp, &address)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the temporary auth file", || !auth_files().is_empty());
        let kill = run(Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string()));
        assert_success(&kill, &format!("kill -{signal}"));
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.signal(), Some(signal), "{}", stderr(&out));
        assert_eq!(
            auth_files(),
            Vec::<PathBuf>::new(),
            "signal {signal} left the credential"
        );
    }
}
