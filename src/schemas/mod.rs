//! Whole schemas: copying one into a new schema, creating and dropping
//! them (and tenants), snapshots as rollback points, and verifying that
//! every tenant's structure matches a reference.

pub mod copy;
pub mod lifecycle;
pub mod snapshot;
pub mod verify;
