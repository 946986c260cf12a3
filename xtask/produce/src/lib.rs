//! The stages that make things, each a subcommand with its own `Args` and `run`: `upstream`
//! (fetch the pinned CozyStack tree), `patch` (apply the series), `lock` (pin every extension by
//! digest), `profiles` (the imager's input), `build` (run the imager, publish by digest), `config`
//! (each role's machine-config patches), and `changed` (what CI must rebuild).

pub mod build;
pub mod changed;
pub mod config;
pub mod lock;
pub mod patch;
pub mod profiles;
pub mod upstream;
