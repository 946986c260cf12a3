//! Exit statuses: 2 when the command line is wrong (an option's value, or the environment
//! variable standing in for it, found by clap or by xtask after parsing), 1 when the
//! repository's files or the run fail. Scripts tell a typo from a failed build by it.

use crate::support::*;

/// Each invocation is wrong in one way; each must exit 2 and name the option.
#[test]
fn a_wrong_command_line_exits_2_and_names_the_option() {
    let root = temp_dir("usage-exit-2");
    copy_repo_data(&root);
    let file = root.join("a-file");
    std::fs::write(&file, "").unwrap();
    let file = file.to_str().unwrap();
    let missing = root.join("no-such-dir");
    let missing = missing.to_str().unwrap();
    let not_a_clone = root.to_str().unwrap();
    let missing_url = format!("file://{missing}");
    let cases: &[(&[&str], &str)] = &[
        // found by clap
        (&["build", "--no-such-option"], "--no-such-option"),
        (&["biuld"], "a similar subcommand exists: 'build'"),
        (
            &["build", "--dryrun"],
            "a similar argument exists: '--dry-run'",
        ),
        (&["smoke", "--dry-run", "--cpus", "0"], "--cpus"),
        // found by xtask once the command line parsed
        (
            &["plan", "--variant", "computee"],
            "did you mean `compute`?",
        ),
        (
            &["plan", "--registry", "acme"],
            "`acme` names no registry host",
        ),
        (
            &["upstream", "--dry-run", "--source", missing],
            "--source (or COZYSTACK_SOURCE)",
        ),
        (
            &["build", "--dry-run", "--source", missing],
            "no such directory",
        ),
        (&["profiles", "--out", file], "--out"),
        (
            &["upstream", "--dry-run", "--source", not_a_clone],
            "not a git repository",
        ),
        (
            &["patch", "--dry-run", "--source", &missing_url],
            "no such directory",
        ),
        (
            &["smoke", "boot", "--kernel", missing, "--initramfs", file],
            "does not exist",
        ),
        (
            &["smoke", "--dry-run", "--registry-mirror", "bogus"],
            "--registry-mirror (or REGISTRY_MIRRORS) `bogus`",
        ),
        (&["ci", "--dry-run", "--push"], "--push needs a registry"),
        (
            &["build", "--dry-run", "--variant", "nope"],
            "pass one of them to --variant",
        ),
        (
            &["build", "--dry-run", "--registry", "ghcr.io/Acme"],
            "--registry (or REGISTRY)",
        ),
        (
            &["build", "--dry-run", "--imager", "localhost/imager"],
            "--imager (or XTASK_IMAGER)",
        ),
        (&["build", "--dry-run", "--push"], "--push needs a registry"),
        (&["build", "--dry-run", "--tree", missing], "--tree"),
        (&["build", "--dry-run", "--authfile", missing], "--authfile"),
        (
            &[
                "build",
                "--dry-run",
                "--registry-mirror",
                "ghcr.io=https://m",
            ],
            "--registry-mirror (or REGISTRY_MIRRORS)",
        ),
        (&["ci", "--publish-only"], "--publish-only needs a registry"),
        (
            &[
                "lock",
                "--dry-run",
                "--registry-mirror",
                "ghcr.io=127.0.0.1:99999",
            ],
            "a port from 1 to 65535",
        ),
        (
            &["smoke", "boot", "--disk", file, "--cmdline", "x"],
            "cannot be used with '--cmdline",
        ),
        (
            &["lock", "--dry-run", "--talos-version", "1.13"],
            "--talos-version",
        ),
        (
            &["changed", "--github"],
            "--github needs $GITHUB_EVENT_NAME",
        ),
        (&["changed", "--base", "HEAD", "--repo", missing], "--repo"),
        (&["smoke", "boot", "--dry-run"], "--kernel"),
        (
            &[
                "smoke",
                "boot",
                "--dry-run",
                "--disk",
                file,
                "--expect",
                "(",
            ],
            "--expect",
        ),
        (
            &["config", "--variant", "gateway", "--install-image", "a b"],
            "--install-image",
        ),
        (
            &["config", "--variant", "compute", "--routes", "10.0.0.0/8"],
            "--routes is for tailscale",
        ),
        (
            &[
                "config",
                "--variant",
                "gateway",
                "--no-judge",
                "--node-subnet",
                "100.64.1.0/24",
            ],
            "--node-subnet 100.64.1.0/24: lies inside 100.64.0.0/10",
        ),
        (
            &["build", "--dry-run", "--registry-mirror", "ghcr.io"],
            "--registry-mirror (or REGISTRY_MIRRORS) `ghcr.io` has no `=`",
        ),
        (
            &[
                "config",
                "--variant",
                "compute",
                "--registry",
                "ghcr.io/acme",
                "--out",
                file,
            ],
            "--out",
        ),
    ];
    for (args, names) in cases {
        let out = run(xtask(&root).args(*args).env_remove("GITHUB_EVENT_NAME"));
        let err = assert_usage(&out, &format!("{args:?}"));
        assert!(err.contains(names), "{args:?} must name {names}: {err}");
    }
}

/// An environment variable standing in for an option is part of the command line: a value that
/// cannot work exits 2, and the message names the variable and its value, not only the option.
#[test]
fn a_wrong_environment_variable_exits_2_and_names_it() {
    let root = temp_dir("usage-env-exit-2");
    copy_repo_data(&root);
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        // not read as on: a typo must not silently change what is fetched
        (
            "XTASK_NO_PREFETCH",
            "maybe",
            &["build", "--dry-run"],
            &[
                "XTASK_NO_PREFETCH = \"maybe\": neither on nor off",
                "1, y, yes, t, true, on",
                "0, n, no, f, false, off",
            ],
        ),
        (
            "XTASK_NO_PREFETCH",
            "maybe",
            &["ci", "--dry-run"],
            &["XTASK_NO_PREFETCH = \"maybe\""],
        ),
        (
            "CONTAINER_ENGINE",
            "nerdctl",
            &["build", "--dry-run"],
            &["CONTAINER_ENGINE) = \"nerdctl\"", "give podman or docker"],
        ),
        // the registry from a variable: named as that variable, not as --registry
        (
            "GITHUB_REPOSITORY_OWNER",
            "a b",
            &["plan"],
            &[
                "error: GITHUB_REPOSITORY_OWNER = \"a b\" makes the default registry \"ghcr.io/a b\"",
                "fix: set GITHUB_REPOSITORY_OWNER to the GitHub user or organisation",
            ],
        ),
        (
            "GITHUB_REPOSITORY_OWNER",
            "a b",
            &["build", "--dry-run"],
            &["error: GITHUB_REPOSITORY_OWNER = \"a b\""],
        ),
        (
            "REGISTRY",
            "ghcr.io/Acme",
            &["plan"],
            &[
                "error: REGISTRY = \"ghcr.io/Acme\": `Acme` is not a valid repository path segment",
                "fix: set REGISTRY to HOST/OWNER without a scheme, e.g. `export REGISTRY=ghcr.io/acme`",
            ],
        ),
        (
            "REGISTRY",
            "ghcr.io/Acme",
            &["config", "--variant", "compute", "--no-judge"],
            &["error: REGISTRY = \"ghcr.io/Acme\""],
        ),
        // the registry client's tuning: a whole number in range, never wrapped or clamped
        (
            "XTASK_REGISTRY_TIMEOUT_SECS",
            "abc",
            &["lock", "--dry-run"],
            &[
                "error: XTASK_REGISTRY_TIMEOUT_SECS = \"abc\": not a whole number from 1 to 86400",
                "fix: set XTASK_REGISTRY_TIMEOUT_SECS to the timeout of one registry read in seconds",
            ],
        ),
        (
            "XTASK_RETRY_ATTEMPTS",
            "4294967296",
            &["lock", "--dry-run"],
            &[
                "error: XTASK_RETRY_ATTEMPTS = \"4294967296\": not a whole number from 1 to 10",
                "fix: set XTASK_RETRY_ATTEMPTS to the number of tries, 1 to 10, or unset it for 4",
            ],
        ),
        (
            "XTASK_RETRY_BASE_MS",
            "1s",
            &["build", "--dry-run"],
            &["error: XTASK_RETRY_BASE_MS = \"1s\": not a whole number from 0 to 60000"],
        ),
    ];
    for (var, value, args, names) in cases {
        let what = format!("{var}={value:?} {args:?}");
        let out = run(xtask(&root).args(*args).env(var, value));
        let err = assert_usage(&out, &what);
        for name in *names {
            assert!(err.contains(name), "{what} must name {name}: {err}");
        }
    }
    // a value that is not Unicode is a bad value too, not an unset variable
    use std::os::unix::ffi::OsStrExt;
    let bytes = std::ffi::OsStr::from_bytes(b"\xff");
    let out = run(xtask(&root)
        .args(["lock", "--dry-run"])
        .env("XTASK_RETRY_ATTEMPTS", bytes));
    let err = assert_usage(&out, "XTASK_RETRY_ATTEMPTS=<not Unicode>");
    assert!(
        err.contains("XTASK_RETRY_ATTEMPTS = \"\u{fffd}\": not a whole number from 1 to 10"),
        "{err}"
    );
}

/// A registry or a mirror written with credentials is refused without repeating them, whether
/// it comes from an option or from the variable standing in for it.
#[test]
fn credentials_in_a_refused_registry_or_mirror_are_never_shown() {
    let root = temp_dir("usage-registry-credentials");
    copy_repo_data(&root);
    // arguments, variables set, what the message says
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["plan", "--registry", "user:s3cr3t@ghcr.io/acme"],
            &[],
            "--registry (or REGISTRY) = \"<redacted>@ghcr.io/acme\": it has an `@`",
        ),
        (
            &["build", "--dry-run", "--registry", "https://user:s3cr3t@ghcr.io/acme"],
            &[],
            "--registry (or REGISTRY) = \"https://<redacted>@ghcr.io/acme\": image references name a registry without a scheme",
        ),
        // a password holding `/`, as base64 tokens do
        (
            &["plan", "--registry", "AWS:ab/s3cr3t@1.dkr.ecr.example/acme"],
            &[],
            "--registry (or REGISTRY) = \"<redacted>@1.dkr.ecr.example/acme\": it has an `@`",
        ),
        (
            &["plan", "--registry", "https://AWS:ab/s3cr3t@1.dkr.ecr.example/acme"],
            &[],
            "--registry (or REGISTRY) = \"https://<redacted>@1.dkr.ecr.example/acme\": image references name a registry without a scheme",
        ),
        (
            &["build", "--dry-run", "--imager", "u:p@s3cr3t@ghcr.io/siderolabs/imager:v1"],
            &[],
            "--imager (or XTASK_IMAGER) = \"<redacted>@ghcr.io/siderolabs/imager:v1\": it carries credentials",
        ),
        (
            &["build", "--dry-run", "--imager", "u:s3cr3t/x@ghcr.io/siderolabs/imager:v1"],
            &[],
            "--imager (or XTASK_IMAGER) = \"<redacted>@ghcr.io/siderolabs/imager:v1\"",
        ),
        (
            &["plan"],
            &[("REGISTRY", "user:s3cr3t@ghcr.io/acme")],
            "REGISTRY = \"<redacted>@ghcr.io/acme\": it has an `@`",
        ),
        (
            &["lock", "--dry-run", "--registry-mirror", "ghcr.io=https://u:s3cr3t@m:5000"],
            &[],
            "--registry-mirror (or REGISTRY_MIRRORS) `ghcr.io=https://<redacted>@m:5000` is not REGISTRY=HOST:PORT",
        ),
        (
            &["build", "--dry-run", "--registry-mirror", "ghcr.io=u:s3cr3t@m:5000"],
            &[],
            "`ghcr.io=<redacted>@m:5000` is not REGISTRY=HOST:PORT",
        ),
        (
            &["smoke", "--dry-run", "--registry-mirror", "u:s3cr3t@m:5000"],
            &[],
            "`<redacted>@m:5000` has no `=`",
        ),
        (
            &["lock", "--dry-run"],
            &[("REGISTRY_MIRRORS", "ghcr.io=https://u:s3cr3t@m:5000")],
            "`ghcr.io=https://<redacted>@m:5000` is not REGISTRY=HOST:PORT",
        ),
    ];
    for (args, vars, names) in cases {
        let out = run(xtask(&root).args(*args).envs(vars.iter().copied()));
        let err = assert_usage(&out, &format!("{vars:?} {args:?}"));
        assert!(err.contains(names), "{args:?} must name {names}: {err}");
        assert!(!err.contains("s3cr3t"), "{args:?}: {err}");
        assert!(!stdout(&out).contains("s3cr3t"), "{args:?}");
    }
}

/// Problems in the files (here a variant's) and failed runs are not the command line's: 1.
#[test]
fn a_problem_in_the_files_exits_1() {
    let root = temp_dir("usage-exit-1");
    copy_repo_data(&root);
    let compute = root.join("variants/compute.json");
    let text = std::fs::read_to_string(&compute).unwrap();
    std::fs::write(&compute, text.replace("\"arm64\"", "\"arm46\"")).unwrap();
    for args in [&["plan"][..], &["build", "--dry-run"], &["smoke", "check"]] {
        let err = assert_failure(&run(xtask(&root).args(args)), &format!("{args:?}"));
        assert!(err.contains("unknown architecture"), "{args:?}");
    }
}

/// A reader that stops early (`cargo xtask build --dry-run | head`) ends xtask quietly with the
/// status a shell gives a program killed by SIGPIPE, not with a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for args in [&["build", "--dry-run"][..], &["plan"], &["ci", "--dry-run"]] {
        let out = xtask(&fixture_root())
            .args(args)
            .stdout(writer.try_clone().unwrap())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // stderr too: warnings (plan has one without a registry), and the final error
    for args in [&["plan"][..], &["plan", "--variant", "nope"]] {
        let out = xtask(&fixture_root())
            .args(args)
            .stderr(writer.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(141), "{args:?} with stderr closed");
    }
}

/// The reader may also leave while the build's worker threads print (`| head -1`): a worker's
/// closed-output panic ends xtask the same way, not as "a scoped thread panicked" (101). The
/// reader leaves at a different moment in each run, so the build dry run of both variants, at
/// the default `--jobs`, runs several times; a run whose output all fits in the pipe before
/// the reader leaves may end 0.
#[test]
fn a_reader_that_stops_during_the_build_ends_it_quietly() {
    use std::io::BufRead as _;
    use std::os::fd::AsRawFd as _;
    extern "C" {
        fn fcntl(fd: std::ffi::c_int, cmd: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    // Linux: the pipe's capacity, here one page, so that the build's workers still have output
    // to write when the reader goes (the whole dry run fits in a default 64 KiB pipe)
    const F_SETPIPE_SZ: std::ffi::c_int = 1031;
    let root = fixture_root();
    let args = [
        "build",
        "--dry-run",
        "--variant",
        "compute",
        "--variant",
        "gateway",
    ];
    for attempt in 1..=5 {
        let (reader, writer) = std::io::pipe().unwrap();
        // SAFETY: fcntl on a pipe this test owns
        let set = unsafe { fcntl(reader.as_raw_fd(), F_SETPIPE_SZ, 4096) };
        assert!(set >= 4096, "F_SETPIPE_SZ: {set}");
        let child = xtask(&root)
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // read up to the first imager command, which a build worker prints; then go away
        let mut lines = std::io::BufReader::new(reader).lines();
        let worker = lines.find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains(" run --rm -i --name xtask-"))
        });
        assert!(worker.is_some(), "run {attempt}: no imager command");
        drop(lines);
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(141),
            "run {attempt}: {args:?} with its reader gone during the build: {err}"
        );
        assert!(!err.contains("panicked"), "run {attempt}: {err}");
    }
}
