//! A private tansu broker for tests that stop and restart Kafka.
//!
//! It stores its log in SQLite under a temporary folder, so a broker killed
//! and started again on the same port still has every acknowledged message:
//! what a test then misses was lost by the code under test, not by the broker.

use crate::{free_addr, wait_for};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tansu process; killed on drop.
pub struct Broker {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    dir: PathBuf,
}

fn tansu() -> String {
    std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned())
}

impl Broker {
    /// Starts a broker on a free port with its data in a new folder.
    pub async fn start() -> Broker {
        let mut broker = Broker::not_started();
        broker.restart().await;
        broker
    }

    /// A broker with a free port and a folder, not running yet: clients
    /// pointed at it find nothing listening until [`Broker::restart`].
    pub fn not_started() -> Broker {
        let dir = std::env::temp_dir().join(crate::unique("tansu"));
        std::fs::create_dir_all(&dir).expect("create the broker folder");
        Broker {
            child: None,
            addr: free_addr(),
            dir,
        }
    }

    /// `host:port` for `KAFKA_BROKERS`.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }

    /// SIGKILLs the broker.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and data, and waits for it to listen.
    pub async fn restart(&mut self) {
        self.kill();
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(tansu())
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg("sqlite://tansu.db")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (run integration/stack.sh up to install it)");
        self.child = Some(child);
        let addr = self.addr;
        wait_for("tansu to listen", Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
