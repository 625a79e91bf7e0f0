//! The coordinator's PostgreSQL storage over TLS against a real server: a throwaway cluster
//! (`initdb`, `ssl = on`, a certificate from a test CA, plain connections refused by
//! `pg_hba.conf`) on a free loopback port, run as the unprivileged `postgres` user when the
//! test runs as root. `sslmode=require` and `verify-full` with the CA connect and migrate;
//! `verify-full` with another CA and plain connections are refused. The cluster is stopped
//! when the test ends, pass or fail.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use streamr_coord::{PostgresStorage, Storage};
use streamr_tls::testing::TestPki;

/// The newest PostgreSQL server binaries installed (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (package postgresql)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an installed PostgreSQL version").1
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// Runs a PostgreSQL tool as the unprivileged `postgres` user when we are root (the server
/// refuses to run as root), as ourselves otherwise.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL cluster serving TLS only; stopped (immediately) when dropped.
struct TlsCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let mut pki = TestPki::new(&root).unwrap();
        pki.issue().unwrap();
        let data = root.join("data");
        if running_as_root() {
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.args(["-R", "postgres"]).arg(&root);
                    chown
                },
                "chown the cluster directory",
            );
        }
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(initdb, "initdb");

        // The server reads its key only when no one else may.
        let files = pki.files();
        for (from, to) in [(&files.cert, "server.crt"), (&files.key, "server.key")] {
            std::fs::copy(from, data.join(to)).unwrap();
            std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown
                .arg("postgres")
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"));
            run(chown, "chown the server key");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n",
            root.display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        // TLS or nothing: a plain connection is refused, so a working one proves TLS.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();

        let mut start = as_server_user(&bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(root.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        let cluster = TlsCluster {
            bin,
            data,
            port,
            pki,
            _dir: dir,
        };
        run(start, "pg_ctl start");
        cluster
    }

    fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{params}",
            self.port
        )
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs PostgreSQL's initdb and pg_ctl, run as root (runuser)"]
async fn storage_connects_over_tls_and_verifies_the_server() {
    let cluster = TlsCluster::start();
    let ca = cluster.pki.ca_file();

    let required = PostgresStorage::open(&cluster.url("sslmode=require"))
        .await
        .expect("sslmode=require connects and migrates");
    required.ping().await.unwrap();
    assert!(required.list_streams(10).await.unwrap().is_empty());

    let verified = PostgresStorage::open(
        &cluster.url(&format!("sslmode=verify-full&sslrootcert={}", ca.display())),
    )
    .await
    .expect("verify-full with the CA connects");
    verified.ping().await.unwrap();

    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = TestPki::new(stranger_dir.path()).unwrap();
    let refused = PostgresStorage::open(&cluster.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        stranger.ca_file().display()
    )))
    .await;
    assert!(refused.is_err(), "a certificate from another CA is refused");

    let plain = PostgresStorage::open(&cluster.url("sslmode=disable")).await;
    assert!(plain.is_err(), "the cluster refuses plain connections");
}
