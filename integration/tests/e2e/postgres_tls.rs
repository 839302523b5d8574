//! `DB_SSL_MODE` and `DB_SSL_ROOT_CERT` against the stack's real
//! PostgreSQL, which serves TLS with Debian's self-signed snakeoil
//! certificate (its only name is `localhost`):
//!
//! - `verify-full` trusts it as a root for `localhost`, and refuses it for
//!   127.0.0.1 (not its name) or without that root (Mozilla's roots);
//! - `verify-ca` accepts it for either name;
//! - a root file that is not PEM, and an unknown mode, are refused naming
//!   the setting;
//! - the PostgreSQL sink and the API really connect over TLS with
//!   `verify-full` (`pg_stat_ssl`), and really do not with `disable`.

use observatory_integration::api::SECRET;
use observatory_integration::postgres::{connect, TestDb};
use observatory_integration::process::Service;
use observatory_integration::{kafka_brokers, unique, wait_for, workspace_bin};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The server's certificate file; fails when the server does not serve TLS.
async fn server_certificate(db: &TestDb) -> PathBuf {
    let client = db.client().await;
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "the stack's PostgreSQL serves TLS");
    let file: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    PathBuf::from(file)
}

/// `observatory-consumer migrate` with these TLS settings: did it succeed,
/// and what did it print.
fn migrate(url: &str, mode: &str, root: Option<&PathBuf>) -> (bool, String) {
    let mut command = Command::new(workspace_bin("observatory-consumer"));
    command
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("DB_SSL_MODE", mode)
        .env_remove("DB_SSL_ROOT_CERT");
    if let Some(root) = root {
        command.env("DB_SSL_ROOT_CERT", root);
    }
    let out = command.output().expect("run observatory-consumer migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_root_and_the_name_and_verify_ca_the_root() {
    let db = TestDb::create().await;
    let cert = server_certificate(&db).await;
    let by_name = db.url.replace("127.0.0.1", "localhost");
    assert_ne!(by_name, db.url, "the stack's URL names 127.0.0.1");

    let (ok, out) = migrate(&by_name, "verify-full", Some(&cert));
    assert!(ok, "{out}");
    let (ok, out) = migrate(&db.url, "verify-full", Some(&cert));
    assert!(!ok, "127.0.0.1 is not the certificate's name: {out}");
    assert!(out.contains("certificate"), "{out}");
    let (ok, out) = migrate(&by_name, "verify-full", None);
    assert!(!ok, "Mozilla's roots do not trust a self-signed one: {out}");
    assert!(out.contains("certificate"), "{out}");

    let (ok, out) = migrate(&db.url, "verify-ca", Some(&cert));
    assert!(ok, "{out}");
    let (ok, out) = migrate(&db.url, "require", None);
    assert!(ok, "{out}");

    let junk = std::env::temp_dir().join(unique("root"));
    std::fs::write(&junk, "not a certificate").unwrap();
    let (ok, out) = migrate(&db.url, "verify-ca", Some(&junk));
    assert!(!ok && out.contains("DB_SSL_ROOT_CERT"), "{out}");
    let _ = std::fs::remove_file(junk);
    let (ok, out) = migrate(&db.url, "allow", None);
    assert!(!ok && out.contains("DB_SSL_MODE"), "{out}");
}

/// Whether the other connections to `db` use TLS: (with, without).
async fn tls_connections(db: &TestDb) -> (i64, i64) {
    let admin = connect(&db.url).await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_and_the_api_use_tls_when_asked_and_not_when_disabled() {
    let db = TestDb::create().await;
    let cert = server_certificate(&db).await;
    let by_name = db.url.replace("127.0.0.1", "localhost");
    let sink_env = |mode: &str| {
        vec![
            ("KAFKA_BROKERS", kafka_brokers()),
            ("KAFKA_TRACES_TOPIC", unique("spans")),
            ("DATABASE_URL", by_name.clone()),
            ("DB_SSL_MODE", mode.to_owned()),
            ("DB_SSL_ROOT_CERT", cert.display().to_string()),
        ]
    };
    let api_env = |mode: &str| {
        vec![
            ("DATABASE_URL", by_name.clone()),
            ("DB_SSL_MODE", mode.to_owned()),
            ("DB_SSL_ROOT_CERT", cert.display().to_string()),
            ("JWT_SECRET", SECRET.to_owned()),
        ]
    };

    for (mode, tls) in [("verify-full", true), ("disable", false)] {
        let mut sink = Service::consumer("timescale", &sink_env(mode));
        sink.wait_ready(WAIT).await;
        let mut api = Service::api(&api_env(mode));
        api.wait_ready(WAIT).await;
        let (with, without) = wait_for("the sink's and the API's connections", WAIT, || async {
            let (with, without) = tls_connections(&db).await;
            (with + without >= 2).then_some((with, without))
        })
        .await;
        if tls {
            assert_eq!(without, 0, "{mode}: every connection uses TLS");
        } else {
            assert_eq!(with, 0, "{mode}: no connection uses TLS");
        }
        sink.terminate();
        api.terminate();
        wait_for("the connections to close", WAIT, || async {
            (tls_connections(&db).await == (0, 0)).then_some(())
        })
        .await;
    }
}
