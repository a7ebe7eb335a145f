//! Test support: a real `redis-server` (Debian's package; `FACEID_REDIS_SERVER` names another
//! binary) on a free loopback port with its own data folder, append-only with a sync per write,
//! in plain TCP or TLS only with a password; stopped (and its folder removed) when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// A TLS-only server's certificate, key and password.
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    password: String,
}

impl RedisServer {
    /// Starts one (append-only, a sync per write).
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts one that speaks TLS only (with this PEM certificate and key; clients are not
    /// asked for certificates) and wants `password`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, password: &str) -> Self {
        Self::launch(Some(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            password: password.to_string(),
        }))
    }

    fn launch(tls: Option<Tls>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("faceid-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
            tls,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://:PASSWORD@127.0.0.1:PORT/0` with TLS.
    pub fn url(&self) -> String {
        match &self.tls {
            Some(tls) => format!("rediss://:{}@127.0.0.1:{}/0", tls.password, self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    fn spawn(&mut self) {
        let binary =
            std::env::var("FACEID_REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".into());
        assert!(
            std::path::Path::new(&binary).is_file(),
            "{binary} is missing: install Debian's redis-server (or set FACEID_REDIS_SERVER)"
        );
        let mut command = Command::new(&binary);
        command.args(["--bind", "127.0.0.1"]);
        match &self.tls {
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port"])
                    .arg(self.port.to_string())
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .args(["--tls-auth-clients", "no", "--requirepass", &tls.password]);
            }
            None => {
                command.arg("--port").arg(self.port.to_string());
            }
        }
        let child = command
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                if self.tls.is_some() {
                    // Listening; the callers' own connections check the handshake.
                    return;
                }
                let client = redis::Client::open(self.url()).unwrap();
                if let Ok(mut conn) = client.get_connection() {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL: nothing is flushed that was not already) and starts it again
    /// on the same port and folder.
    pub fn crash_and_restart(&mut self) {
        self.crash();
        self.restart();
    }

    /// Kills the server (SIGKILL); [`RedisServer::restart`] starts it again.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a crashed server again on the same port and folder.
    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
