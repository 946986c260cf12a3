//! Publishing images: push by digest first, then add tags to that digest, so a tag never
//! points at something other than what was built and checked.
//!
//! All registry traffic goes through `registry::Skopeo` (credentials, mirrors, loopback
//! registries over plain HTTP, bounded retries, `--dry-run` printing); secrets never reach a
//! command line.

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use xshell::{cmd, Shell};

use crate::domain::record::Published;
use crate::domain::{Arch, TalosVersion};
use crate::project::Project;
use crate::registry::{Location, Skopeo};

pub struct Publisher<'a> {
    skopeo: &'a Skopeo,
    work: Utf8PathBuf,
}

impl<'a> Publisher<'a> {
    pub fn new(project: &Project, skopeo: &'a Skopeo) -> Publisher<'a> {
        Publisher {
            skopeo,
            work: project.target_dir().join("publish"),
        }
    }

    /// Pushes a docker-archive to `image` by digest only; [`Publisher::add_tags`] tags it later.
    pub fn push_by_digest(&self, kind: &str, archive: &Utf8Path, image: &str) -> Result<Published> {
        let layout = self.work.join(format!(
            "oci-{}",
            crate::fsutil::sha256_hex(image.as_bytes())
        ));
        if !self.skopeo.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
            std::fs::create_dir_all(&self.work)
                .with_context(|| format!("creating {}", self.work))?;
        }
        // An OCI layout first: its manifest digest is what the registry will store, so the
        // push can name the digest and nothing is tagged before it exists.
        let oci = Location::Local(format!("oci:{layout}:build"));
        self.skopeo
            .copy(&Location::Local(format!("docker-archive:{archive}")), &oci)
            .with_context(|| format!("reading {archive}"))?;
        let digest = if self.skopeo.dry_run {
            "<digest of the OCI manifest>".to_owned()
        } else {
            layout_digest(&layout)?
        };
        self.skopeo
            .copy(&oci, &Location::Registry(format!("{image}@{digest}")))
            .with_context(|| format!("pushing {archive} to {image}"))?;
        if !self.skopeo.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
        }
        Ok(Published {
            kind: kind.to_owned(),
            image: image.to_owned(),
            digest,
            tags: Vec::new(),
            arches: Vec::new(),
        })
    }

    /// Pushes one docker-archive per architecture to `image` as one OCI image index, by the
    /// index's digest only: each archive becomes an image in one OCI layout, an index listing
    /// them with their platforms is written beside them, and the layout is copied whole.
    pub fn push_index_by_digest(
        &self,
        kind: &str,
        archives: &[(Arch, Utf8PathBuf)],
        image: &str,
    ) -> Result<Published> {
        let layout = self.work.join(format!(
            "oci-{}",
            crate::fsutil::sha256_hex(image.as_bytes())
        ));
        if !self.skopeo.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
            std::fs::create_dir_all(&self.work)
                .with_context(|| format!("creating {}", self.work))?;
        }
        for (arch, archive) in archives {
            self.skopeo
                .copy(
                    &Location::Local(format!("docker-archive:{archive}")),
                    &Location::Local(format!("oci:{layout}:{arch}")),
                )
                .with_context(|| format!("reading {archive}"))?;
        }
        let arches: Vec<Arch> = archives.iter().map(|(a, _)| *a).collect();
        let digest =
            if self.skopeo.dry_run {
                println!(
                "# write an OCI image index of {} into {layout} (index.json then names it `build`)",
                arches.iter().map(|a| format!("linux/{a}")).collect::<Vec<_>>().join(", ")
            );
                "<digest of the OCI image index>".to_owned()
            } else {
                write_layout_index(&layout, &arches)?
            };
        self.skopeo
            .copy_with(
                &Location::Local(format!("oci:{layout}:build")),
                &Location::Registry(format!("{image}@{digest}")),
                true,
            )
            .with_context(|| format!("pushing the {kind} index to {image}"))?;
        if !self.skopeo.dry_run {
            let _ = std::fs::remove_dir_all(&layout);
        }
        Ok(Published {
            kind: kind.to_owned(),
            image: image.to_owned(),
            digest,
            tags: Vec::new(),
            arches: arches.iter().map(|a| a.to_string()).collect(),
        })
    }

    /// Points each tag at what is already in the registry by digest (every image of an index).
    pub fn add_tags(&self, published: &Published, tags: &[String]) -> Result<()> {
        let (image, digest) = (&published.image, &published.digest);
        for tag in tags {
            self.skopeo
                .copy_with(
                    &Location::Registry(format!("{image}@{digest}")),
                    &Location::Registry(format!("{image}:{tag}")),
                    published.is_index(),
                )
                .with_context(|| format!("tagging {image}@{digest} as {tag}"))?;
        }
        Ok(())
    }
}

/// The image index of an OCI layout's images, one per arch (named by their arch in
/// `index.json`): written as a blob, and `index.json` then lists that index alone, as `build`.
/// Returns the index digest.
fn write_layout_index(layout: &Utf8Path, arches: &[Arch]) -> Result<String> {
    let path = layout.join("index.json");
    let top: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?,
    )
    .with_context(|| format!("parsing {path}"))?;
    let listed = top["manifests"].as_array().cloned().unwrap_or_default();
    let mut manifests = Vec::new();
    for arch in arches {
        let entry = listed
            .iter()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(arch.as_str()))
            .with_context(|| format!("{path} has no image named {arch}"))?;
        manifests.push(serde_json::json!({
            "mediaType": entry["mediaType"],
            "digest": entry["digest"],
            "size": entry["size"],
            "platform": {"architecture": arch.as_str(), "os": "linux"},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::lock::media::OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index)?;
    let digest = crate::registry::sha256_digest(&bytes);
    let blob = layout
        .join("blobs/sha256")
        .join(digest.as_str().trim_start_matches("sha256:"));
    std::fs::write(&blob, &bytes).with_context(|| format!("writing {blob}"))?;
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": crate::lock::media::OCI_INDEX,
            "digest": digest,
            "size": bytes.len(),
            "annotations": {REF_NAME: "build"},
        }],
    });
    std::fs::write(&path, serde_json::to_vec(&top)?).with_context(|| format!("writing {path}"))?;
    Ok(digest.to_string())
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

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
        crate::domain::image::is_sha256_digest(digest),
        "{path}: unexpected digest {digest}"
    );
    Ok(digest.to_owned())
}

/// Tags for a build: the Talos version, and a build-unique `<talos>-<yyyymmdd>-<commit>`.
pub fn build_tags(project: &Project, talos_version: &TalosVersion) -> Result<Vec<String>> {
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
        talos_version.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(20_517), (2026, 3, 5));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }
}
