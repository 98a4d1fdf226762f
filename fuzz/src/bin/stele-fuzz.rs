//! The AFL++ driver: `stele-fuzz TARGET` runs the named target on the
//! inputs AFL++ hands over in persistent mode (or once on standard input
//! when run by hand, to reproduce a crash). A panic aborts, which AFL++
//! records as a crash.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = stele_fuzz::find(&name) else {
        eprintln!("usage: stele-fuzz TARGET (one of: {})", names());
        std::process::exit(2);
    };
    // Keys are opened before the fork server starts, so each input pays
    // only for its own parse.
    let _ = stele_fuzz::fixtures::keys();
    afl::fuzz(true, |data| (target.run)(data));
}

fn names() -> String {
    stele_fuzz::TARGETS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}
