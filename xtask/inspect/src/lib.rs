//! The stages that show and judge, each a subcommand with its own `Args` and `run`: what would be
//! built (`plan`, `schematic`), and whether it is right (`conformance` with Talos's own Go code,
//! `smoke` on what was built, `test`, the whole suite).

pub mod conformance;
pub mod plan;
pub mod schematic;
pub mod smoke;
pub mod test;
