//! A fresh PostgreSQL database per test, on the stack's server.

use tokio_postgres::{Client, NoTls};

/// The stack's server: `DATABASE_URL`'s server, else postgres@127.0.0.1:5432.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connects to `url`.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("postgres is reachable (integration/stack.sh up)");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// Creates a database with a unique name.
    pub async fn create() -> TestDb {
        let name = crate::unique("obs");
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => format!("{base}/{name}"),
        };
        TestDb { name, url }
    }

    /// The URL with another host and port (to go through a proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }

    /// A connection.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A single number from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        self.client()
            .await
            .query_one(sql, &[])
            .await
            .expect("query")
            .get::<_, Option<i64>>(0)
            .unwrap_or(0)
    }
}
