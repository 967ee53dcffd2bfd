#![forbid(unsafe_code)]
//! The `sipdispatch` binary. The data-plane issue gives it its commands.

fn main() {
    eprintln!("sipdispatch: the data plane is not built yet");
    std::process::exit(2);
}
