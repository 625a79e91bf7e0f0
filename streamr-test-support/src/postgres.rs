//! Throwaway databases on a real PostgreSQL server.

use sqlx::Connection;

/// The server tests create their databases on: `STREAMR_TEST_POSTGRES_URL`, or the local
/// trust-auth server.
pub fn server_url() -> String {
    std::env::var("STREAMR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A uniquely named database on [`server_url`]'s server, dropped (with its connections) when
/// the test drops it. Creating it fails the test, never skips it, when the server is
/// unreachable.
#[derive(Debug)]
pub struct PgDatabase {
    server: String,
    name: String,
    /// The database's URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates `streamr_test_<pid>_<random>`.
    pub async fn create() -> PgDatabase {
        let server = server_url();
        let name = format!(
            "streamr_test_{}_{}",
            std::process::id(),
            rand::random::<u64>()
        );
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {server} is required: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        PgDatabase { server, name, url }
    }

    /// Takes the database away from its clients, as a server restart or a network fault
    /// would, until [`PgDatabase::restore`]: no new connection is let in and every open one is
    /// ended. The server itself, and every other test's database, stay up.
    pub async fn cut_off(&self) {
        let mut admin = self.admin().await;
        sqlx::query(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS false",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("refuse connections to the test database");
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut admin)
        .await
        .expect("end the test database's connections");
    }

    /// Lets clients connect to the database again after [`PgDatabase::cut_off`].
    pub async fn restore(&self) {
        let mut admin = self.admin().await;
        sqlx::query(&format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS true",
            self.name
        ))
        .execute(&mut admin)
        .await
        .expect("allow connections to the test database");
    }

    async fn admin(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", self.server))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Dropping needs async I/O; do it on a thread of its own so it works inside or outside
        // a runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}
