//! `cargo xtask`: the program is the library (`lib.rs`), see there.

fn main() -> std::process::ExitCode {
    xtask::main()
}
