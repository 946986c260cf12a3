//! Subcommand: `cargo xtask changed`: decide from git what a CI run must build.
//!
//! Docs-only changes build nothing, a change to one role's file builds that role, anything the
//! rules in `build-rules.json` do not know builds every role, and any doubt (git error, shallow
//! clone without the base, no base at all) builds every role with a warning. The exit status is
//! non-zero only when the invocation is wrong. See docs/changed.md.
//!
//! The core is pure: `rules` (the rules file and path classification), `event` (base and head
//! from a GitHub event), `decision` (classified paths to a decision) and `output` (text, JSON,
//! GitHub outputs). `git` is the thin layer that runs git.

mod decision;
mod event;
mod git;
mod output;
mod rules;

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use domain::diag::{short, Usage};

use decision::{Decision, Known};
use event::{BaseSpec, Selection};
use git::Git;
use infra::project::Project;
use rules::Rules;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["base", "github"])))]
pub struct Args {
    /// Compare the tree of this revision (commit, branch, tag) with head.
    #[arg(long, value_name = "REV")]
    pub base: Option<String>,
    /// The revision to build (default: HEAD; uncommitted changes are not looked at).
    #[arg(long, value_name = "REV", requires = "base")]
    pub head: Option<String>,
    /// Compare with the merge base of --base and head: what a branch changed since it forked.
    #[arg(long, requires = "base")]
    pub merge_base: bool,
    /// Choose base and head from the GitHub Actions event ($GITHUB_EVENT_NAME, $GITHUB_EVENT_PATH).
    #[arg(long, conflicts_with = "base")]
    pub github: bool,
    /// How to print the decision.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// The git repository to compare in (default: the project root). CI runs the rules and code
    /// of the base branch against a pull request's checkout with this.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<Utf8PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: what builds, why, and the changed paths.
    Text,
    /// `{"build", "variants", "reason", "files", ...}` on stdout.
    Json,
    /// Append `build`, `test`, `variants`, `matrix` to $GITHUB_OUTPUT, a table to
    /// $GITHUB_STEP_SUMMARY, and print the text form.
    Github,
}

/// What the GitHub environment gives an invocation with `--github` / `--format github`.
struct GithubEnv {
    event_name: String,
    event_path: Option<String>,
    sha: Option<String>,
}

pub fn run(project: &Project, args: Args) -> Result<()> {
    let format = if args.json { Format::Json } else { args.format };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    // Invocation errors first: these are the only failures.
    let github = if args.github {
        Some(GithubEnv {
            event_name: env("GITHUB_EVENT_NAME")
                .ok_or_else(|| Usage("--github needs $GITHUB_EVENT_NAME (set by GitHub Actions); outside Actions use --base REV".into()))?,
            event_path: env("GITHUB_EVENT_PATH"),
            sha: env("GITHUB_SHA"),
        })
    } else {
        None
    };
    let output_file = match format {
        Format::Github => Some(Utf8PathBuf::from(env("GITHUB_OUTPUT").ok_or_else(
            || Usage("--format github needs $GITHUB_OUTPUT (set by GitHub Actions)".into()),
        )?)),
        _ => None,
    };
    let repo = args.repo.clone().unwrap_or_else(|| project.root.clone());
    if !repo.is_dir() {
        return domain::diag::usage(format!("--repo {repo}: no such directory\n    fix: pass the checkout to decide for (CI: the pull request's checkout)"));
    }

    let decision = decide(project, &repo, &args, github.as_ref());
    // "every variant builds" of no variant at all would let CI pass building nothing
    if decision.all && decision.variants.is_empty() {
        let message = format!(
            "every variant must build ({}), but {repo} has no variant files: is it a checkout of this repository?\n    fix: pass --repo the checkout to decide for (CI: the pull request's checkout)",
            decision.reason
        );
        return match args.repo {
            Some(_) => domain::diag::usage(message),
            None => Err(anyhow::anyhow!(message)),
        };
    }

    match format {
        Format::Text => print!("{}", output::text(&decision)),
        Format::Json => print!("{}", output::json(&decision)),
        Format::Github => {
            print!("{}", output::text(&decision));
            for warning in &decision.warnings {
                println!("{}", output::github_warning(warning));
            }
            let path = output_file.expect("checked above");
            let delimiter = output::random_delimiter(&output::output_values(&decision));
            append(&path, &output::github_outputs(&decision, &delimiter))?;
            match env("GITHUB_STEP_SUMMARY") {
                Some(summary) => append(Utf8Path::new(&summary), &output::summary(&decision))?,
                None => eprintln!("note: $GITHUB_STEP_SUMMARY is not set; no job summary written"),
            }
        }
    }
    if format != Format::Github {
        for warning in &decision.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}

fn append(path: &Utf8Path, text: &str) -> Result<()> {
    infra::fsutil::append(path, text).with_context(|| format!("appending to {path}"))
}

/// The decision; never fails: whatever goes wrong builds every variant, with a warning.
fn decide(project: &Project, repo: &Utf8Path, args: &Args, github: Option<&GithubEnv>) -> Decision {
    let mut warnings = Vec::new();
    let rules_path = project.root.join(rules::FILE);
    let rules = std::fs::read_to_string(&rules_path)
        .with_context(|| format!("reading {rules_path}"))
        .and_then(|text| {
            Rules::parse(&text)
                .map_err(|findings| domain::diag::into_result(rules::FILE, findings).unwrap_err())
        });
    let rules = match rules {
        Ok(rules) => rules,
        Err(err) => {
            // Without rules nothing can be classified; the variant list is all that is left.
            let fallback = Rules::parse(FALLBACK_RULES).expect("the fallback rules are valid");
            let mut d = Decision::everything(
                format!("{} cannot be used: every variant builds", rules::FILE),
                &git::variants_on_disk(repo, &fallback),
            );
            d.warnings.insert(0, format!("{err:#}"));
            return d;
        }
    };

    let selection = match github {
        Some(gh) => match read_event(gh) {
            Ok(event) => event::select(&gh.event_name, &event, gh.sha.as_deref()),
            Err(err) => {
                warnings.push(format!("{err:#}"));
                Selection::Everything(
                    "the GitHub event cannot be read: every variant builds".into(),
                )
            }
        },
        None => {
            let base = args
                .base
                .clone()
                .expect("clap requires --base without --github");
            Selection::Compare {
                base: if args.merge_base {
                    BaseSpec::MergeBaseOf(base)
                } else {
                    BaseSpec::Commit(base)
                },
                head: args.head.clone().unwrap_or_else(|| "HEAD".into()),
            }
        }
    };

    let mut git = Git::new(repo);
    let head_variants = |git: &Git, head: Option<&str>| -> BTreeSet<String> {
        head.and_then(|h| git.variants_at(h, &rules).ok())
            .or_else(|| git.variants_at("HEAD", &rules).ok())
            .unwrap_or_else(|| git::variants_on_disk(repo, &rules))
    };

    let mut decision = match selection {
        Selection::Nothing(reason) => Decision::nothing(reason),
        Selection::Everything(reason) => {
            let head = github.and_then(|g| g.sha.clone());
            let mut d = Decision::everything(reason, &head_variants(&git, head.as_deref()));
            d.head = head.and_then(|h| git.commit(&h));
            d
        }
        Selection::Compare { base, head } => match compare(&mut git, &rules, &base, &head) {
            Ok(d) => d,
            Err(err) => {
                let mut d = Decision::everything(
                    "git could not compare base and head: every variant builds".into(),
                    &head_variants(&git, Some(&head)),
                );
                d.warnings.push(format!("{err:#}"));
                d
            }
        },
    };
    warnings.append(&mut decision.warnings);
    decision.warnings = warnings;
    decision
}

fn compare(git: &mut Git, rules: &Rules, base: &BaseSpec, head: &str) -> Result<Decision> {
    let head = git.require_commit(head).context("reading head")?;
    let (base, how) = match base {
        BaseSpec::Commit(rev) => (git.require_commit(rev).context("reading base")?, None),
        BaseSpec::MergeBaseOf(rev) => {
            let other = git.require_commit(rev).context("reading base")?;
            let merge_base = git.merge_base(&other, &head)?;
            (
                merge_base,
                Some(format!("merge base with {}", output::shown(rev))),
            )
        }
        BaseSpec::MergeBase { branch, or_commit } => {
            let (tip, what) = match (git.branch_tip(branch), or_commit) {
                (Ok(tip), _) => (tip, format!("branch `{}`", output::shown(branch))),
                (Err(err), Some(commit)) => {
                    let sha = git.require_commit(commit).context("reading base")?;
                    git.notes.push(format!(
                        "branch `{}` cannot be read ({err:#}), so the event's base commit stands in",
                        output::shown(branch)
                    ));
                    (sha, output::shown(commit))
                }
                (Err(err), None) => return Err(err),
            };
            let merge_base = git.merge_base(&tip, &head)?;
            (merge_base, Some(format!("merge base with {what}")))
        }
        BaseSpec::FirstParent { pr_head } => {
            let first = git
                .parent(&head, 1)
                .context("reading the merge commit's base")?;
            let second = git
                .parent(&head, 2)
                .context("the commit to build is not a pull request's merge commit")?;
            if let Some(pr_head) = pr_head {
                let pr_head = git
                    .require_commit(pr_head)
                    .context("reading the pull request's head")?;
                if second != pr_head {
                    anyhow::bail!(
                        "the commit to build ({}) does not merge the pull request's head {} (its second parent is {})",
                        short(&head),
                        short(&pr_head),
                        short(&second)
                    );
                }
            }
            (
                first,
                Some("merge commit's first parent, the base branch tip it merges".to_owned()),
            )
        }
        BaseSpec::CommitOrMergeBase { commit, branch } => match git.require_commit(commit) {
            Ok(sha) => (sha, None),
            Err(_) => {
                let tip = git.branch_tip(branch)?;
                let merge_base = git.merge_base(&tip, &head)?;
                (
                    merge_base,
                    Some(format!(
                        "old tip {} is gone (force push?): merge base with branch `{}`",
                        output::shown(short(commit)),
                        output::shown(branch)
                    )),
                )
            }
        },
    };
    if how.is_some() && base == head {
        let mut d = Decision::everything(
            format!(
                "head is already part of the base ({}): there is no earlier commit to compare with",
                how.unwrap_or_default()
            ),
            &git.variants_at(&head, rules)?,
        );
        d.base = Some(base);
        d.head = Some(head);
        return Ok(d);
    }
    let changes = git.diff(&base, &head)?;
    let known = Known {
        head: git.variants_at(&head, rules)?,
        base: git.variants_at(&base, rules)?,
    };
    let mut d = decision::decide(rules, changes, &known);
    // A link's target can change without the link changing: the diff would see only the
    // target's path (under docs/, say) while the build reads it through the link.
    let links: Vec<String> = git
        .symlinks_at(&head)?
        .into_iter()
        .filter(|path| !rules.is_docs_only(path))
        .collect();
    if let (Some(first), false) = (links.first(), d.all) {
        let more = match links.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more link{})", domain::diag::plural(n)),
        };
        let mut all = Decision::everything(
            format!(
                "{} is a symbolic link outside the documentation: what it points at can change without it, so every variant builds{more} (replace the link with the file itself)",
                output::shown(first)
            ),
            &known.head,
        );
        all.files = d.files;
        all.removed = std::mem::take(&mut d.removed);
        all.changes = std::mem::take(&mut d.changes);
        all.warnings.append(&mut d.warnings);
        d = all;
    }
    if let Some(how) = how {
        d.reason = format!("{} (compared with the {how})", d.reason);
    }
    for note in git.notes.drain(..) {
        d.reason = format!("{} ({note})", d.reason);
    }
    d.base = Some(base);
    d.head = Some(head);
    Ok(d)
}

fn read_event(gh: &GithubEnv) -> Result<serde_json::Value> {
    let path = gh
        .event_path
        .as_deref()
        .context("$GITHUB_EVENT_PATH is not set")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the event file {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing the event file {path}"))
}

/// Used only to list variant files when build-rules.json itself cannot be read.
const FALLBACK_RULES: &str = r#"{"global": [], "variants": {"file": "variants/{name}.json", "inputs": ["variants/{name}.json"]}, "docs": []}"#;
