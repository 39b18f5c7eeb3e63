//! The control schema's side of things: the run ledger (with its writer)
//! and the tenant registry, and the tenant sources a run's list comes from.

pub mod ledger;
pub mod tenants;
