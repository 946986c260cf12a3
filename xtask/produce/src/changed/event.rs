//! Choosing what to compare from a GitHub Actions event: pure, from the event name and payload.

use serde_json::Value;

use super::output::shown;

/// What the git layer should compare.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection {
    Compare {
        base: BaseSpec,
        head: String,
    },
    /// No base to compare with: every variant builds.
    Everything(String),
    /// Nothing exists to build (a deleted branch).
    Nothing(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum BaseSpec {
    /// Compare the trees of this commit and head.
    Commit(String),
    /// Compare with the merge base of head and the tip of `branch` (fetched if missing), or of
    /// head and `or_commit` when the branch cannot be read.
    MergeBase {
        branch: String,
        or_commit: Option<String>,
    },
    /// Compare with the merge base of head and this revision (`--base REV --merge-base`).
    MergeBaseOf(String),
    /// `commit` while it can still be read (a push's old tip), else the merge base with `branch`.
    CommitOrMergeBase { commit: String, branch: String },
    /// Head is a pull request's merge commit (`refs/pull/N/merge`, what CI checks out): compare
    /// with its first parent, the base branch tip it was merged with. Its second parent must be
    /// `pr_head` (the pull request's head) when the event names one.
    FirstParent { pr_head: Option<String> },
}

/// The default branch when an event names none.
const DEFAULT_BRANCH: &str = "main";

/// Picks base and head for one event. `sha` is `GITHUB_SHA`: on `pull_request` the merge commit
/// CI builds, compared with its first parent; elsewhere used when the payload names no head.
pub fn select(event_name: &str, event: &Value, sha: Option<&str>) -> Selection {
    let text = |path: &[&str]| -> Option<String> {
        let mut v = event;
        for key in path {
            v = v.get(key)?;
        }
        v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    };
    let head_or_sha = |head: Option<String>| head.or_else(|| sha.map(str::to_owned));
    let default_branch = text(&["repository", "default_branch"]);
    match event_name {
        // What CI checks out and builds is the merge commit: its tree holds what the base branch
        // gained meanwhile (a new variant, say), which the pull request's head does not.
        "pull_request" if sha.is_some() => Selection::Compare {
            base: BaseSpec::FirstParent {
                pr_head: text(&["pull_request", "head", "sha"]),
            },
            head: sha.expect("matched").to_owned(),
        },
        "pull_request" | "pull_request_target" => {
            let head = head_or_sha(text(&["pull_request", "head", "sha"]));
            let branch = text(&["pull_request", "base", "ref"]);
            let base_sha = text(&["pull_request", "base", "sha"]);
            match (head, branch) {
                // The base sha in the payload can be stale; the branch tip is read instead.
                (Some(head), Some(branch)) => Selection::Compare {
                    base: BaseSpec::MergeBase {
                        branch,
                        or_commit: base_sha,
                    },
                    head,
                },
                _ => Selection::Everything(
                    "the pull_request event names no base branch or head commit".into(),
                ),
            }
        }
        "push" => {
            let reference = text(&["ref"]).unwrap_or_default();
            if reference.starts_with("refs/tags/") {
                return Selection::Everything(format!(
                    "tag push ({}): a release builds every variant",
                    shown(&reference)
                ));
            }
            let after = text(&["after"]).filter(|s| !is_zero(s));
            let before = text(&["before"]).filter(|s| !is_zero(s));
            if event.get("deleted").and_then(Value::as_bool) == Some(true)
                || (text(&["after"]).is_some() && after.is_none())
            {
                return Selection::Nothing("the push deleted the branch".into());
            }
            let Some(head) = head_or_sha(after) else {
                return Selection::Everything("the push event names no head commit".into());
            };
            let branch = default_branch.unwrap_or_else(|| DEFAULT_BRANCH.into());
            let pushed = reference.strip_prefix("refs/heads/").unwrap_or(&reference);
            match before {
                Some(before) => Selection::Compare {
                    base: BaseSpec::CommitOrMergeBase {
                        commit: before,
                        branch,
                    },
                    head,
                },
                None if pushed == branch => Selection::Everything(format!(
                    "first push of the default branch `{}`",
                    shown(&branch)
                )),
                None => Selection::Compare {
                    base: BaseSpec::MergeBase {
                        branch,
                        or_commit: None,
                    },
                    head,
                },
            }
        }
        "merge_group" => {
            match (
                text(&["merge_group", "base_sha"]),
                head_or_sha(text(&["merge_group", "head_sha"])),
            ) {
                (Some(base), Some(head)) => Selection::Compare {
                    base: BaseSpec::Commit(base),
                    head,
                },
                _ => Selection::Everything("the merge_group event names no base or head".into()),
            }
        }
        "workflow_dispatch" => match (text(&["inputs", "base"]), sha) {
            (Some(base), Some(head)) => Selection::Compare {
                base: BaseSpec::Commit(base),
                head: head.to_owned(),
            },
            _ => Selection::Everything("manual run without a base: every variant builds".into()),
        },
        "schedule" => Selection::Everything("scheduled run: every variant builds".into()),
        other => Selection::Everything(format!(
            "event `{}` has no rule for choosing a base",
            shown(other)
        )),
    }
}

fn is_zero(sha: &str) -> bool {
    sha.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn pull_requests_compare_their_merge_commit_with_its_first_parent() {
        let event =
            json!({"pull_request": {"base": {"ref": "main", "sha": A}, "head": {"sha": B}}});
        assert_eq!(
            select("pull_request", &event, Some("ffff")),
            Selection::Compare {
                base: BaseSpec::FirstParent {
                    pr_head: Some(B.into())
                },
                head: "ffff".into()
            }
        );
        // pull_request_target runs on the base branch: GITHUB_SHA is no merge commit there.
        assert!(matches!(
            select("pull_request_target", &event, Some("ffff")),
            Selection::Compare {
                base: BaseSpec::MergeBase { .. },
                ..
            }
        ));
    }

    #[test]
    fn without_a_merge_commit_pull_requests_compare_with_the_merge_base_of_the_base_branch() {
        let event =
            json!({"pull_request": {"base": {"ref": "main", "sha": A}, "head": {"sha": B}}});
        assert_eq!(
            select("pull_request", &event, None),
            Selection::Compare {
                base: BaseSpec::MergeBase {
                    branch: "main".into(),
                    or_commit: Some(A.into())
                },
                head: B.into()
            }
        );
    }

    #[test]
    fn a_push_compares_before_and_after() {
        let event = json!({"ref": "refs/heads/main", "before": A, "after": B,
                           "repository": {"default_branch": "main"}});
        assert_eq!(
            select("push", &event, None),
            Selection::Compare {
                base: BaseSpec::CommitOrMergeBase {
                    commit: A.into(),
                    branch: "main".into()
                },
                head: B.into()
            }
        );
    }

    #[test]
    fn a_new_branch_compares_with_the_default_branch() {
        let event = json!({"ref": "refs/heads/topic", "before": ZERO, "after": B, "created": true,
                           "repository": {"default_branch": "trunk"}});
        assert_eq!(
            select("push", &event, None),
            Selection::Compare {
                base: BaseSpec::MergeBase {
                    branch: "trunk".into(),
                    or_commit: None
                },
                head: B.into()
            }
        );
        let first = json!({"ref": "refs/heads/trunk", "before": ZERO, "after": B,
                           "repository": {"default_branch": "trunk"}});
        assert!(matches!(
            select("push", &first, None),
            Selection::Everything(_)
        ));
    }

    #[test]
    fn tags_schedules_and_manual_runs_build_everything() {
        let tag = json!({"ref": "refs/tags/v1.0.0", "before": ZERO, "after": B});
        assert!(
            matches!(select("push", &tag, None), Selection::Everything(r) if r.contains("tag push (refs/tags/v1.0.0)"))
        );
        assert!(matches!(
            select("schedule", &json!({}), Some(B)),
            Selection::Everything(_)
        ));
        assert!(matches!(
            select("workflow_dispatch", &json!({"inputs": {}}), Some(B)),
            Selection::Everything(_)
        ));
        assert!(matches!(
            select("release", &json!({}), Some(B)),
            Selection::Everything(_)
        ));
    }

    #[test]
    fn a_manual_run_with_a_base_compares_with_it() {
        let event = json!({"inputs": {"base": A}});
        assert_eq!(
            select("workflow_dispatch", &event, Some(B)),
            Selection::Compare {
                base: BaseSpec::Commit(A.into()),
                head: B.into()
            }
        );
    }

    #[test]
    fn merge_groups_compare_base_and_head() {
        let event = json!({"merge_group": {"base_sha": A, "head_sha": B}});
        assert_eq!(
            select("merge_group", &event, None),
            Selection::Compare {
                base: BaseSpec::Commit(A.into()),
                head: B.into()
            }
        );
    }

    #[test]
    fn a_deleted_branch_builds_nothing_and_a_payload_without_heads_builds_everything() {
        let deleted = json!({"ref": "refs/heads/x", "before": A, "after": ZERO, "deleted": true});
        assert!(matches!(
            select("push", &deleted, None),
            Selection::Nothing(_)
        ));
        assert!(matches!(
            select("push", &json!({}), None),
            Selection::Everything(_)
        ));
        assert!(matches!(
            select("pull_request", &json!({}), None),
            Selection::Everything(_)
        ));
    }
}
