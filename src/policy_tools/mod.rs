//! Authoring and proof tools for policies; nothing here runs on a call.
//!
//! They build on the runtime in [`crate::policy`] (the catalogue, the store
//! and the authorizer), never the other way round, and are compiled only
//! with the `tools` feature (on by default), which brings in the symbolic
//! compiler (`cedar-policy-symcc`) that diff and lint prove with:
//!
//! - [`enforced`]: the decisions the gateway enforces (a call's, and the
//!   Explain rpc's permission checks), each as one Cedar policy (what
//!   `policy diff` compares);
//! - [`diff`]: `policy diff`, proving what a change widens or narrows;
//! - [`lint`]: `policy lint`, policies that never apply, are shadowed or can
//!   fail to evaluate;
//! - [`cases`]: declarative policy tests (`ecs-gateway policy test`);
//! - [`ram`]: RAM policy documents as Cedar (`ecs-gateway policy import-ram`);
//! - `solver`: cvc5 and the symbolic compiler's errors, for diff and lint.

pub mod cases;
pub mod diff;
pub mod enforced;
pub mod lint;
pub mod ram;
mod solver;
