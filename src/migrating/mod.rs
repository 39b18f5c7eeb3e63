//! Migrating: the migration files and sets, a schema's state from its
//! history, the engine that plans and runs a fan-out (migrate, `--target`,
//! rollback, stamp), writing new migrations, repairing history rows, and
//! checking migrations before they run.

pub mod authoring;
pub mod engine;
#[cfg(feature = "lint")]
pub mod lint;
pub mod migration;
pub mod repair;
pub mod state;
pub mod statements;
