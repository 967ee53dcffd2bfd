//! `sipload`: the project's SIP load generator. Its subcommands arrive with the data-plane and
//! sipload issues; until then it only says so.

fn main() {
    eprintln!("sipload: no subcommands yet (see the data-plane and sipload issues)");
    std::process::exit(2);
}
