//! The man page `contrib/sentrypeer.1` is generated from the clap definition so it never drifts:
//! this test renders it and compares. `UPDATE_MANPAGE=1 cargo test manpage` rewrites the file.

use std::path::Path;

#[test]
fn manpage_matches_clap_definition() {
    let mut rendered = Vec::new();
    clap_mangen::Man::new(sentrypeer::config::command())
        .render(&mut rendered)
        .expect("render man page");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sentrypeer.1");
    if std::env::var_os("UPDATE_MANPAGE").is_some() {
        std::fs::write(&path, &rendered).expect("write man page");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "contrib/sentrypeer.1 is out of date: run `UPDATE_MANPAGE=1 cargo test manpage`"
    );
}
