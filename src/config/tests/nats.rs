//! The `--nats-*` settings: sources, defaults and validation.

use super::{load_err, load_ok, path_str, write_file};
use crate::config::NatsConfig;
use std::path::PathBuf;

fn nats(config: crate::config::Config) -> NatsConfig {
    config.nats.expect("nats on")
}

#[test]
fn config_nats_cli_defaults_and_repeats() {
    let config = nats(load_ok(
        &[
            "--nats-url",
            "nats://127.0.0.1:4222",
            "--nats-url",
            "tls://[::1]:4223",
        ],
        &[],
    ));
    assert_eq!(
        config.urls,
        vec!["nats://127.0.0.1:4222", "tls://[::1]:4223"]
    );
    assert_eq!(config.subject_prefix, "sentrypeer.events");
    assert_eq!(config.stream, "SENTRYPEER");
    assert_eq!(config.creds, None);
    assert_eq!(config.ca, None);
    assert!(!config.ingest);
    let config = nats(load_ok(
        &[
            "--nats-url",
            "127.0.0.1",
            "--nats-subject",
            "acme.sip",
            "--nats-stream",
            "ACME_SIP",
            "--nats-ingest",
        ],
        &[],
    ));
    assert_eq!(config.urls, vec!["127.0.0.1"]);
    assert_eq!(config.subject_prefix, "acme.sip");
    assert_eq!(config.stream, "ACME_SIP");
    assert!(config.ingest);
}

#[test]
fn config_nats_env_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = write_file(dir.path(), "user.creds", "creds");
    let ca = write_file(dir.path(), "ca.pem", "ca");
    let env = [
        ("SENTRYPEER_NATS_URL", "nats://a:4222,nats://b:4222"),
        ("SENTRYPEER_NATS_SUBJECT", "env.subject"),
        ("SENTRYPEER_NATS_STREAM", "ENV"),
        ("SENTRYPEER_NATS_CREDS", path_str(&creds)),
        ("SENTRYPEER_NATS_CA", path_str(&ca)),
        ("SENTRYPEER_NATS_INGEST", ""),
    ];
    let config = nats(load_ok(&[], &env));
    assert_eq!(config.urls, vec!["nats://a:4222", "nats://b:4222"]);
    assert_eq!(config.subject_prefix, "env.subject");
    assert_eq!(config.stream, "ENV");
    assert_eq!(config.creds, Some(creds.clone()));
    assert_eq!(config.ca, Some(ca.clone()));
    assert!(config.ingest);
    // The command line wins over the environment.
    let config = nats(load_ok(&["--nats-url", "nats://c:4222"], &env));
    assert_eq!(config.urls, vec!["nats://c:4222"]);

    let text = format!(
        "nats_url = [\"nats://f:4222\"]\nnats_subject = \"file.s\"\nnats_stream = \"FILE\"\n\
         nats_creds = \"{}\"\nnats_ca = \"{}\"\nnats_ingest = true\n",
        path_str(&creds),
        path_str(&ca)
    );
    let file = write_file(dir.path(), "config.toml", &text);
    let config = nats(load_ok(&["-g", path_str(&file)], &[]));
    assert_eq!(config.urls, vec!["nats://f:4222"]);
    assert_eq!(config.subject_prefix, "file.s");
    assert_eq!(config.stream, "FILE");
    assert_eq!(config.creds, Some(creds));
    assert_eq!(config.ca, Some(ca));
    assert!(config.ingest);
    let file = write_file(dir.path(), "one.toml", "nats_url = \"nats://g:4222\"\n");
    let config = nats(load_ok(&["-g", path_str(&file)], &[]));
    assert_eq!(config.urls, vec!["nats://g:4222"]);
}

#[test]
fn config_nats_options_need_a_url() {
    for (args, key) in [
        (&["--nats-ingest"][..], "nats_ingest"),
        (&["--nats-subject", "a.b"][..], "nats_subject"),
        (&["--nats-stream", "S"][..], "nats_stream"),
        (&["--nats-creds", "/nonexistent"][..], "nats_creds"),
        (&["--nats-ca", "/nonexistent"][..], "nats_ca"),
    ] {
        let error = load_err(args, &[]);
        assert_eq!(error, format!("invalid nats_url: required with {key}"));
    }
    let error = load_err(&[], &[("SENTRYPEER_NATS_INGEST", "1")]);
    assert_eq!(error, "invalid nats_url: required with nats_ingest");
}

#[test]
fn config_nats_values_checked() {
    let url = ["--nats-url", "nats://127.0.0.1:4222"];
    let with = |extra: &[&str]| load_err(&[&url[..], extra].concat(), &[]);
    for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.b*", "ü"] {
        let error = with(&["--nats-subject", bad]);
        assert!(
            error.starts_with("invalid nats_subject: "),
            "{bad}: {error}"
        );
    }
    let long = "a".repeat(129);
    assert!(with(&["--nats-subject", &long]).contains("longer than 128 bytes"));
    for bad in ["", "A.B", "A*", "A>", "A/B", "A\\B", "A B"] {
        let error = with(&["--nats-stream", bad]);
        assert!(error.starts_with("invalid nats_stream: "), "{bad}: {error}");
    }
    for bad in [
        "http://127.0.0.1:4222",
        "nats://",
        "ws://127.0.0.1:80",
        "nats://a b",
    ] {
        let error = load_err(&["--nats-url", bad], &[]);
        assert!(error.starts_with("invalid nats_url: "), "{bad}: {error}");
    }
    let error = load_err(
        &["--nats-url", "nats://a:1", "--nats-url", "nats://a:1"],
        &[],
    );
    assert!(error.contains("given twice"), "{error}");
    let error = load_err(&["--nats-url", "http://user:s3cr3t@host:4222"], &[]);
    assert!(!error.contains("s3cr3t"), "{error}");
    let many: Vec<String> = (0..17).map(|n| format!("nats://h{n}:4222")).collect();
    let mut args: Vec<&str> = Vec::new();
    for url in &many {
        args.extend(["--nats-url", url]);
    }
    assert!(load_err(&args, &[]).contains("at most 16 allowed"));
}

#[test]
fn config_nats_files_must_be_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.creds");
    let error = load_err(
        &[
            "--nats-url",
            "nats://127.0.0.1",
            "--nats-creds",
            path_str(&missing),
        ],
        &[],
    );
    assert!(error.starts_with("cannot read nats_creds "), "{error}");
    let error = load_err(
        &[
            "--nats-url",
            "nats://127.0.0.1",
            "--nats-ca",
            path_str(dir.path()),
        ],
        &[],
    );
    assert!(error.contains("is a directory"), "{error}");
}

#[test]
fn config_nats_debug_hides_url_passwords() {
    let config = NatsConfig {
        urls: vec!["nats://user:s3cr3t@127.0.0.1:4222".into()],
        subject_prefix: "a".into(),
        stream: "S".into(),
        creds: Some(PathBuf::from("/x.creds")),
        ca: None,
        ingest: false,
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("127.0.0.1:4222"), "{shown}");
}
