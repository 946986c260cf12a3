//! The pipeline's inputs, read from the repository once: the variants and the lock (every
//! problem in either at once), the pinned Talos version, and from them the [`Plan`] every stage
//! starts from; a role's install image from its build record; and `--registry`, the option
//! that names where images publish. A thin I/O layer over `domain::plan::make`, shared by the
//! subcommands (plan, profiles, build, ci, config, conformance, patch) so that none of them
//! reaches into another for it.

use anyhow::{bail, Result};
use domain::diag::usage;

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
    /// The registry images publish under: `--registry`, else $REGISTRY (which clap reads into
    /// it), else ghcr.io/$GITHUB_REPOSITORY_OWNER (lowercased); an empty value counts as
    /// unset, and `None` when there is none. A value that names no registry is a usage error
    /// naming where it came from: a variable the user never typed on the command line is named
    /// as such, with a fix for it.
    pub fn resolve(&self) -> Result<Option<String>> {
        if let Some(given) = self.registry.as_deref().filter(|r| !r.is_empty()) {
            let registry = given.trim_end_matches('/');
            let Some(problem) = plan::registry_problem(registry) else {
                return Ok(Some(registry.to_owned()));
            };
            let plan::RegistryProblem { what, owner } = &problem;
            // the variable holds the value: named, even if --registry repeats it
            if std::env::var("REGISTRY").is_ok_and(|var| var == given) {
                let given = domain::shell::address_shown(given);
                return usage(format!("REGISTRY = {given:?}: {what}\n    fix: set REGISTRY to HOST/OWNER without a scheme, e.g. `export REGISTRY=ghcr.io/{owner}`, or unset it"));
            }
            // from the command line: worded as everywhere else
            return plan::registry_usage(registry, &problem);
        }
        let Some(owner) = std::env::var("GITHUB_REPOSITORY_OWNER")
            .ok()
            .filter(|o| !o.is_empty())
        else {
            return Ok(None);
        };
        let registry = format!("ghcr.io/{}", owner.to_lowercase());
        let registry = registry.trim_end_matches('/');
        match plan::registry_problem(registry) {
            None => Ok(Some(registry.to_owned())),
            Some(plan::RegistryProblem { what, .. }) => usage(format!(
                "GITHUB_REPOSITORY_OWNER = {owner:?} makes the default registry {registry:?} (used without --registry or REGISTRY): {what}\n    fix: set GITHUB_REPOSITORY_OWNER to the GitHub user or organisation the images publish under (GitHub Actions sets it), or pass --registry HOST/OWNER or set REGISTRY, which come before it"
            )),
        }
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

/// [`install_image`]'s one error that is not a broken input: no `--install-image`, no build
/// record that names a published installer, and no registry to name one by tag with (the
/// variant's name). A preview may fall back to a placeholder for it; anything else (a build
/// record that does not read) is an error everywhere.
#[derive(Debug)]
pub struct NoRegistry(pub String);

impl std::fmt::Display for NoRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no registry to name the `{}` role's install image (machine.install.image) with\n    fix: pass --registry ghcr.io/<owner> (or set REGISTRY), or --install-image REF", self.0)
    }
}

impl std::error::Error for NoRegistry {}

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
        return Err(NoRegistry(vp.name.clone()).into());
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
        assert_eq!(
            flag.resolve().unwrap().as_deref(),
            Some("registry.example/team")
        );
    }
}
