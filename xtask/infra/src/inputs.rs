//! The pipeline's inputs, read from the repository once: the variants and the lock (every
//! problem in either at once), the pinned Talos version, and from them the [`Plan`] every stage
//! starts from; a role's install image from its build record; and `--registry`, the option
//! that names where images publish. A thin I/O layer over `domain::plan::make`, shared by the
//! subcommands (plan, profiles, build, ci, config, conformance, patch) so that none of them
//! reaches into another for it.

use anyhow::{bail, Result};

use crate::pin;
use crate::project::Project;
use domain::plan::{self, Plan};

#[derive(Clone, clap::Args)]
pub struct RegistryArg {
    /// Registry and owner images publish under, e.g. `ghcr.io/acme`.
    /// Default: $REGISTRY, else ghcr.io/$GITHUB_REPOSITORY_OWNER.
    #[arg(long, env = "REGISTRY", value_name = "HOST/OWNER")]
    pub registry: Option<String>,
}

impl RegistryArg {
    pub fn resolve(&self) -> Option<String> {
        let from_github = || {
            std::env::var("GITHUB_REPOSITORY_OWNER")
                .ok()
                .filter(|o| !o.is_empty())
                .map(|owner| format!("ghcr.io/{}", owner.to_lowercase()))
        };
        self.registry
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(from_github)
            .map(|r| r.trim_end_matches('/').to_owned())
    }
}

/// Reads the variants and the lock, reporting every problem in either at once (with the
/// extension names checked against the lock); the lock must exist.
pub fn load_inputs(project: &Project) -> Result<(Vec<domain::Variant>, domain::Lock)> {
    let inputs = project.read_inputs()?;
    let variants = inputs.variants_locked()?;
    match inputs.lock()? {
        Some(lock) => Ok((variants, lock)),
        None => bail!(
            "{} is missing: create it with `cargo xtask lock`",
            domain::lock::SHOWN
        ),
    }
}

/// Reads variants, lock and pin from the repository and resolves the plan.
pub fn load_plan(project: &Project, names: &[String], registry: Option<String>) -> Result<Plan> {
    let (variants, lock) = load_inputs(project)?;
    plan_of(project, variants, &lock, names, registry)
}

/// The plan of the variants named (all when none) out of those `load_inputs` read.
pub fn plan_of(
    project: &Project,
    variants: Vec<domain::Variant>,
    lock: &domain::Lock,
    names: &[String],
    registry: Option<String>,
) -> Result<Plan> {
    let variants = domain::variant::select(variants, names)?;
    let talos = pin::talos_version(project, lock)?;
    plan::make(variants, lock, talos, registry)
}

/// Where the install image came from, for the summary.
pub struct InstallImage {
    pub reference: String,
    pub source: String,
}

/// The role's installer: `--install-image`, else by digest from the build record when a build
/// published it for this Talos version, else by tag.
pub fn install_image(
    project: &Project,
    plan: &domain::Plan,
    flag: Option<&str>,
) -> Result<InstallImage> {
    let vp = &plan.variants[0];
    if let Some(reference) = flag {
        return Ok(InstallImage {
            reference: reference.to_owned(),
            source: "--install-image".into(),
        });
    }
    let record_path = crate::record::path(project, &vp.name);
    if let Some(record) = crate::record::read(project, &vp.name)? {
        let published = record
            .published
            .iter()
            .find(|p| p.kind == domain::record::ImageKind::Installer && !p.digest.is_empty());
        let built: Vec<&str> = record.extensions.iter().map(|e| e.name.as_str()).collect();
        if let (Some(p), true) = (published, record.talos_version == plan.talos_version) {
            // A push to another registry, or a build before the role's extensions changed,
            // is not the image this role's nodes should install now.
            let other_registry = plan.registry.is_some() && p.image != vp.image;
            if !other_registry && built == vp.extensions {
                return Ok(InstallImage {
                    reference: format!("{}@{}", p.image, p.digest),
                    source: format!("by digest, from {}", project.display(&record_path)),
                });
            }
            if plan.registry.is_some() {
                return Ok(InstallImage {
                    reference: format!("{}:{}", vp.image, vp.tag),
                    source: format!(
                        "by tag: {} records {} with extensions [{}], not this role's image now; `cargo xtask build --push --variant {}` publishes it",
                        project.display(&record_path), p.image, built.join(", "), vp.name
                    ),
                });
            }
        }
    }
    if plan.registry.is_none() {
        bail!("no registry to name the `{}` role's install image (machine.install.image) with\n    fix: pass --registry ghcr.io/<owner> (or set REGISTRY), or --install-image REF", vp.name);
    }
    Ok(InstallImage {
        reference: format!("{}:{}", vp.image, vp.tag),
        source: "by tag: no build record with a published installer (cargo xtask build --push writes one)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_comes_from_flag_then_github_owner() {
        let flag = RegistryArg {
            registry: Some("registry.example/team/".into()),
        };
        assert_eq!(flag.resolve().as_deref(), Some("registry.example/team"));
    }
}
