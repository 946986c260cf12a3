//! Publishing images with skopeo: push by digest first, then add tags to that digest, so a tag
//! never points at something other than what was built and checked.
//!
//! Credentials: skopeo reads REGISTRY_AUTH_FILE and the engines' auth files itself; when only
//! GITHUB_TOKEN is set, a 0600 auth file is written under target/ for the run. The token is
//! never put on a command line or printed.

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::engine::shell_line;
use crate::project::Project;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub kind: String,
    /// Repository, without tag.
    pub image: String,
    pub digest: String,
    pub tags: Vec<String>,
}

pub struct Publisher {
    sh: Shell,
    dry_run: bool,
    authfile: Option<Utf8PathBuf>,
    work: Utf8PathBuf,
}

impl Publisher {
    pub fn new(project: &Project, dry_run: bool) -> Result<Publisher> {
        let work = project.target_dir().join("publish");
        let mut authfile = None;
        let have_authfile = std::env::var_os("REGISTRY_AUTH_FILE").is_some_and(|v| !v.is_empty());
        if let (false, Ok(token)) = (have_authfile, std::env::var("GITHUB_TOKEN")) {
            if !token.is_empty() && !dry_run {
                let user =
                    std::env::var("GITHUB_ACTOR").unwrap_or_else(|_| "x-access-token".into());
                std::fs::create_dir_all(&work).with_context(|| format!("creating {work}"))?;
                let path = work.join("auth.json");
                let auth = base64(format!("{user}:{token}").as_bytes());
                let text =
                    serde_json::json!({ "auths": { "ghcr.io": { "auth": auth } } }).to_string();
                crate::fsutil::write_private(&path, text.as_bytes())?;
                authfile = Some(path);
            } else if !token.is_empty() {
                authfile = Some(work.join("auth.json"));
            }
        }
        Ok(Publisher {
            sh: Shell::new()?,
            dry_run,
            authfile,
            work,
        })
    }

    fn auth_args(&self) -> Vec<String> {
        match &self.authfile {
            Some(path) => vec!["--authfile".into(), path.to_string()],
            None => Vec::new(),
        }
    }

    fn run(&self, args: Vec<String>) -> Result<()> {
        if self.dry_run {
            let mut line = vec!["skopeo".to_owned()];
            line.extend(args);
            println!("{}", shell_line(&line));
            return Ok(());
        }
        let verb = args.first().cloned().unwrap_or_default();
        let output = cmd!(self.sh, "skopeo {args...}")
            .quiet()
            .ignore_status()
            .output()?;
        if !output.status.success() {
            bail!(
                "skopeo {verb} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Pushes a docker-archive to `image` by digest, then tags that digest with each tag.
    pub fn push_archive(
        &self,
        archive: &Utf8Path,
        image: &str,
        tags: &[String],
    ) -> Result<Published> {
        let layout = self.work.join(format!(
            "oci-{}",
            crate::fsutil::sha256_hex(image.as_bytes())
        ));
        if !self.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
            std::fs::create_dir_all(&self.work)
                .with_context(|| format!("creating {}", self.work))?;
        }
        // An OCI layout first: its manifest digest is what the registry will store, so the
        // push can name the digest and nothing is tagged before it exists.
        self.run(vec![
            "copy".into(),
            "--quiet".into(),
            format!("docker-archive:{archive}"),
            format!("oci:{layout}:build"),
        ])
        .with_context(|| format!("reading {archive}"))?;
        let digest = if self.dry_run {
            "<digest of the OCI manifest>".to_owned()
        } else {
            layout_digest(&layout)?
        };
        let mut push = vec!["copy".into(), "--quiet".into(), "--preserve-digests".into()];
        push.extend(self.auth_args());
        push.extend(tls_args("dest", image));
        push.extend([
            format!("oci:{layout}:build"),
            format!("docker://{image}@{digest}"),
        ]);
        self.run(push)
            .with_context(|| format!("pushing {archive} to {image}"))?;
        self.add_tags(image, &digest, tags)?;
        if !self.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
        }
        Ok(Published {
            kind: "installer".into(),
            image: image.to_owned(),
            digest,
            tags: tags.to_vec(),
        })
    }

    /// Points each tag at an image already in the registry by digest.
    pub fn add_tags(&self, image: &str, digest: &str, tags: &[String]) -> Result<()> {
        for tag in tags {
            let mut args = vec!["copy".into(), "--quiet".into(), "--preserve-digests".into()];
            args.extend(self.auth_args());
            args.extend(tls_args("src", image));
            args.extend(tls_args("dest", image));
            args.extend([
                format!("docker://{image}@{digest}"),
                format!("docker://{image}:{tag}"),
            ]);
            self.run(args)
                .with_context(|| format!("tagging {image}@{digest} as {tag}"))?;
        }
        Ok(())
    }
}

/// Registries on the loopback interface (local and test registries) speak plain HTTP.
pub fn is_loopback(image: &str) -> bool {
    let host = image.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn tls_args(side: &str, image: &str) -> Vec<String> {
    if is_loopback(image) {
        vec![format!("--{side}-tls-verify=false")]
    } else {
        Vec::new()
    }
}

/// The manifest digest of the single image in an OCI layout.
fn layout_digest(layout: &Utf8Path) -> Result<String> {
    let path = layout.join("index.json");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?,
    )
    .with_context(|| format!("parsing {path}"))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .with_context(|| format!("{path} lists no manifest"))?;
    anyhow::ensure!(
        crate::lockfile::is_sha256_digest(digest),
        "{path}: unexpected digest {digest}"
    );
    Ok(digest.to_owned())
}

/// Tags for a build: the Talos version, and a build-unique `<talos>-<yyyymmdd>-<commit>`.
pub fn build_tags(project: &Project, talos_version: &str) -> Result<Vec<String>> {
    let sh = Shell::new()?;
    sh.change_dir(&project.root);
    let commit = cmd!(sh, "git rev-parse --short=12 HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| "nogit".into());
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let (y, m, d) = civil_date(secs / 86_400);
    let suffix = if dirty { "-dirty" } else { "" };
    Ok(vec![
        talos_version.to_owned(),
        format!("{talos_version}-{y:04}{m:02}{d:02}-{commit}{suffix}"),
    ])
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_517), (2026, 3, 5));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000/acme/talos"));
        assert!(is_loopback("localhost:5000/acme/talos"));
        assert!(is_loopback("localhost/acme/talos"));
        assert!(!is_loopback("ghcr.io/acme/talos"));
        assert!(!is_loopback("registry.example:443/acme"));
    }
}
