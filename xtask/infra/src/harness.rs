//! The Go conformance harness as a tool: the test-only Go module in `conformance/`, the Go
//! toolchain that builds it (found, or fetched through GOTOOLCHAIN), its build, and one run of
//! it on a request. A thin I/O module: `conformance` decides what its reports mean, `test`
//! builds it before the suite.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cmd::{Cmd, Io};
use crate::project::Project;

/// The harness's directory, relative to the repository root.
pub const DIR: &str = "conformance";

/// A Go toolchain that can build the harness.
pub struct Go {
    pub program: Utf8PathBuf,
    /// `GOTOOLCHAIN` to set when the installed Go is older than the module needs.
    pub toolchain: Option<String>,
}

/// The `go` line of the harness's go.mod, e.g. `1.26.5`.
pub fn required_go(project: &Project) -> Result<String> {
    let path = project.root.join(DIR).join("go.mod");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", project.display(&path)))?;
    go_line(&text).with_context(|| format!("{}: no `go` line", project.display(&path)))
}

pub fn go_line(go_mod: &str) -> Option<String> {
    go_mod
        .lines()
        .find_map(|l| l.strip_prefix("go "))
        .map(|v| v.trim().to_owned())
}

/// `1.26.8` from `go1.26.8`, compared numerically.
pub fn version_at_least(have: &str, need: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim_start_matches("go")
            .split(['.', '-', 'r', 'b'])
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    let (have, need) = (parse(have), parse(need));
    for i in 0..need.len().max(have.len()) {
        let (h, n) = (
            have.get(i).copied().unwrap_or(0),
            need.get(i).copied().unwrap_or(0),
        );
        if h != n {
            return h > n;
        }
    }
    true
}

/// Finds `go` (PATH, then Go's default install directory). An older Go from 1.21 on fetches the
/// needed toolchain itself through the module proxy when GOTOOLCHAIN names it.
pub fn find_go(project: &Project) -> Result<Option<Go>> {
    let need = required_go(project)?;
    let program = which::which("go")
        .ok()
        .and_then(|p| Utf8PathBuf::try_from(p).ok())
        .or_else(|| {
            let default = Utf8PathBuf::from("/usr/local/go/bin/go");
            default.exists().then_some(default)
        });
    let Some(program) = program else {
        return Ok(None);
    };
    let have = Cmd::new(&program)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .read()?;
    let toolchain = (!version_at_least(&have, &need)).then(|| format!("go{need}"));
    if toolchain.is_some() && !version_at_least(&have, "1.21") {
        bail!("{program} is {have}: too old to build {DIR}/ (its go.mod needs go {need}) and too old to fetch a newer toolchain (Go 1.21+ does)\n    fix: install Go {need} or newer (https://go.dev/doc/install), or Debian's golang-1.2x-go from bookworm-backports");
    }
    Ok(Some(Go { program, toolchain }))
}

/// Builds the harness into `target/conformance/` (Go's build cache makes a rebuild cheap).
pub fn build(project: &Project, go: &Go) -> Result<Utf8PathBuf> {
    let (build, out) = build_command(project, go, None);
    build.run().with_context(|| {
        format!(
            "building {DIR}/ with {} (Talos's code as the judge)",
            go.program
        )
    })?;
    Ok(out)
}

/// The `go build` of the harness (with `modfile`, another go.mod) and the binary it writes.
pub fn build_command(project: &Project, go: &Go, modfile: Option<&str>) -> (Cmd, Utf8PathBuf) {
    let name = if modfile.is_some() {
        "conformance-next"
    } else {
        "conformance"
    };
    let out = project.target_dir().join("conformance").join(name);
    // go's own progress and errors (a cold module cache downloads for minutes) stay visible
    let mut build = Cmd::new(&go.program)
        .current_dir(project.root.join(DIR))
        .stdout(Io::Inherit)
        .stderr(Io::Inherit);
    if let Some(toolchain) = &go.toolchain {
        build = build.env("GOTOOLCHAIN", toolchain);
    }
    build = build.args(["build", "-mod=readonly"]);
    if let Some(modfile) = modfile {
        build = build.arg(format!("-modfile={modfile}"));
    }
    (build.args(["-o", out.as_str(), "."]), out)
}

/// Runs the built harness on a request (`conformance::Request`) and reads its report.
pub fn judge<Request: serde::Serialize, Report: serde::de::DeserializeOwned>(
    binary: &Utf8Path,
    request: &Request,
) -> Result<Report> {
    let input = serde_json::to_string(request).expect("requests serialize");
    let out = Cmd::new(binary).stdin_bytes(input).read()?;
    serde_json::from_str(&out).with_context(|| format!("reading the report of {binary}"))
}
