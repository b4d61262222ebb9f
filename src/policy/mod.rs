//! Stage 3 of the request flow: may this caller do this? Cedar policies that
//! behave like Alibaba Cloud RAM.
//!
//! - [`catalogue`]: the actions, their access levels, ARN templates,
//!   condition keys and dependent actions;
//! - [`store`]: the policy directory, validated against the schema and
//!   swapped atomically on reload;
//! - [`index`]: which policies can apply to a call, found without
//!   evaluating them;
//! - [`decide`]: the decision as RAM makes it: the control layer must allow,
//!   then the identity layer must allow, for the action and each dependent
//!   action; an explicit forbid wins; nothing permitted is an implicit deny;
//!   any evaluation error denies;
//! - [`log`]: one structured line per decision;
//! - [`reads`]: which policies read what only ECS can tell of an instance
//!   (so a call denied whatever the instance is needs no lookup).
//!
//! The authoring and proof tools (RAM import, policy tests, the enforced
//! model, `policy diff` and `policy lint`) are in `crate::policy_tools`:
//! nothing here depends on them.

pub mod catalogue;
pub mod decide;
pub mod index;
pub mod log;
pub mod reads;
pub mod store;

use std::path::PathBuf;

pub use decide::{Authorizer, Decision, Denial, DenyKind, LayerResult, Outcome, Query, Source};
pub use store::{Layer, Store};

/// When an operator-added dependent action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// On every call of the action.
    Always,
    /// When the call allocates a public IP (`ecs:AssociatePublicIpAddress`).
    AllocatesPublicIp,
}

/// An operator-added dependent action: calling `action` also needs
/// `requires`, for the same principal, resource and context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependentRule {
    /// The action called.
    pub action: String,
    /// The action that must also be allowed.
    pub requires: String,
    /// When.
    pub when: When,
}

/// Authorization settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The policy directory.
    pub dir: PathBuf,
    /// The Alibaba Cloud account that owns the instances, for ARNs.
    pub account_id: String,
    /// Dependent actions beyond the catalogue's.
    pub dependent_actions: Vec<DependentRule>,
}

/// Authorization as the settings give it: the policies in force and, in
/// shadow mode, the candidates decided beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The policy directory.
    pub dir: PathBuf,
    /// The account owning the instances, for ARNs; required to serve (the
    /// policy tools may take it from their flags instead).
    pub account_id: Option<String>,
    /// Dependent actions beyond the catalogue's.
    pub dependent_actions: Vec<DependentRule>,
    /// Candidate policies decided beside those in force (shadow mode).
    pub shadow_dir: Option<PathBuf>,
}

impl Settings {
    /// The authorizer's configuration for the policies in `dir` (the ones
    /// in force, or the shadow ones); `None` without an account.
    pub fn authorizer(&self, dir: &std::path::Path) -> Option<Config> {
        Some(Config {
            dir: dir.to_owned(),
            account_id: self.account_id.clone()?,
            dependent_actions: self.dependent_actions.clone(),
        })
    }
}

/// Why authorization could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The policies are invalid.
    #[error(transparent)]
    Policies(#[from] store::Error),
    /// A dependent action names an action the catalogue does not know.
    #[error("dependent action {action} → {requires}: {problem}")]
    Dependent {
        /// The action.
        action: String,
        /// The required action.
        requires: String,
        /// What is wrong.
        problem: String,
    },
}

/// Checks that every action a dependent-action rule names is in the
/// catalogue.
///
/// # Errors
///
/// [`BuildError::Dependent`] for the first unknown action.
pub fn check_dependent_actions(rules: &[DependentRule]) -> Result<(), BuildError> {
    for rule in rules {
        // Only a forwarded call's action has dependent actions: a rule on
        // another (say `ecsgateway:Explain`) would be accepted and never
        // applied.
        if catalogue::get(&rule.action).is_some()
            && rule.action != catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name
        {
            return Err(BuildError::Dependent {
                action: rule.action.clone(),
                requires: rule.requires.clone(),
                problem: format!(
                    "{} is not an action the gateway forwards (only {} is)",
                    rule.action,
                    catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name
                ),
            });
        }
        for name in [&rule.action, &rule.requires] {
            if catalogue::get(name).is_none() {
                return Err(BuildError::Dependent {
                    action: rule.action.clone(),
                    requires: rule.requires.clone(),
                    problem: format!("{name} is not in the action catalogue"),
                });
            }
        }
    }
    Ok(())
}

impl Config {
    /// Loads the policies and builds the authorizer.
    ///
    /// # Errors
    ///
    /// Invalid policies (with `file:line`), or unknown dependent actions.
    pub fn build(self) -> Result<Authorizer, BuildError> {
        check_dependent_actions(&self.dependent_actions)?;
        let store = Store::open(&self.dir)?;
        Ok(Authorizer::new(
            std::sync::Arc::new(store),
            self.account_id,
            self.dependent_actions,
        ))
    }
}

#[cfg(test)]
mod tests;
