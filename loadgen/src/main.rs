//! `sentrypeer-loadgen`: scanner-like SIP traffic and a bare receive sink (see the loadgen issue).

fn main() {
    eprintln!("sentrypeer-loadgen: not built yet");
    std::process::exit(2);
}
