//! How the baseline QEMU is made from a tree: as given, or with the fix
//! removed (`patch` removes it), and what `auto` means for a tree's state.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::patch::State;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineMode {
    /// `as-is` for a vulnerable tree, `revert-fix` for a fixed one.
    Auto,
    /// The tree exactly as given.
    AsIs,
    /// The tree with the fix statement (and its comment) removed from aio_add_sqe().
    RevertFix,
}

impl BaselineMode {
    pub fn name(self) -> &'static str {
        match self {
            BaselineMode::Auto => "auto",
            BaselineMode::AsIs => "as-is",
            BaselineMode::RevertFix => "revert-fix",
        }
    }

    /// What `auto` means for a tree in `state`; errors for combinations that
    /// cannot give a pre-fix baseline.
    pub fn resolve(self, state: &State) -> Result<BaselineMode> {
        Ok(match (self, state) {
            (_, State::Unaffected) => {
                bail!("the tree has no aio_add_sqe(): there is nothing to patch")
            }
            (_, State::Conflict { detail }) => {
                bail!("the patch does not apply to this tree: {detail}")
            }
            (BaselineMode::Auto | BaselineMode::AsIs, State::Vulnerable) => BaselineMode::AsIs,
            (BaselineMode::RevertFix, State::Vulnerable) => {
                bail!("--baseline revert-fix needs a tree with the fix, and this one is vulnerable: use --baseline as-is (or auto)")
            }
            (BaselineMode::Auto | BaselineMode::RevertFix, State::Fixed) => BaselineMode::RevertFix,
            (BaselineMode::AsIs, State::Fixed) => {
                bail!("--baseline as-is on a tree that already has the fix would compare fixed with fixed: use --baseline revert-fix (or auto)")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_resolution() {
        use BaselineMode::*;
        assert_eq!(Auto.resolve(&State::Vulnerable).unwrap(), AsIs);
        assert_eq!(Auto.resolve(&State::Fixed).unwrap(), RevertFix);
        assert_eq!(RevertFix.resolve(&State::Fixed).unwrap(), RevertFix);
        assert!(format!("{:#}", AsIs.resolve(&State::Fixed).unwrap_err())
            .contains("use --baseline revert-fix"));
        assert!(
            format!("{:#}", RevertFix.resolve(&State::Vulnerable).unwrap_err())
                .contains("use --baseline as-is")
        );
        assert!(Auto.resolve(&State::Unaffected).is_err());
        assert!(Auto
            .resolve(&State::Conflict {
                detail: "hunk".into()
            })
            .unwrap_err()
            .to_string()
            .contains("hunk"));
    }
}
