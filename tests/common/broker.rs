//! A tansu broker of a test's own: its own directory (SQLite database,
//! schema files) and its own port, for tests that stop, restart or configure
//! a broker. The shared stack's broker is never stopped: other tests, and
//! other test binaries running at the same time, use it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use raffle_outbox::local::{free_port, StackConfig};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct Broker {
    bin: PathBuf,
    /// The broker's working directory: its SQLite database, and whatever the
    /// test puts there (certificates, schema files). Removed on drop.
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port, in a fresh directory, not started yet. The
    /// tansu binary is the stack's (installed by `common::env()` or
    /// `local::up`).
    pub fn new(stack: &StackConfig) -> Broker {
        let bin = stack.home.join("tansu-0.6.0").join("bin").join("tansu");
        assert!(bin.exists(), "tansu installed at {}", bin.display());
        let dir =
            std::env::temp_dir().join(format!("raffle-outbox-broker-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("broker directory");
        Broker {
            bin,
            dir,
            port: free_port().expect("a free port"),
            child: None,
        }
    }

    /// `127.0.0.1:<port>`: the bootstrap address and what the broker
    /// advertises unless told otherwise.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker advertising its own address, with the same data
    /// as before if it ran already; waits until it listens.
    pub async fn start(&mut self) {
        let advertised = format!("tcp://{}", self.bootstrap());
        self.start_with(&advertised, &[]).await;
    }

    /// [`Broker::start`] advertising `advertised`, with more `tansu broker`
    /// arguments (`--authentication`). Like the stack's, it enforces the
    /// schema files in [`Broker::schemas`] (see [`Broker::create_topic`]).
    pub async fn start_with(&mut self, advertised: &str, args: &[&str]) {
        assert!(self.child.is_none(), "the broker runs already");
        std::fs::create_dir_all(self.schemas()).expect("schema registry directory");
        let child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--advertised-listener-url", advertised])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args(["--schema-registry", "file://./schemas"])
            .args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the broker (a crash, as far as its clients can tell) and waits
    /// until its port is free.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("our tansu stops");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
            assert!(Instant::now() < deadline, "tansu did not release its port");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `tansu <args> --broker <this broker>` and asserts it succeeded.
    pub async fn cli(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .args(args)
            .args(["--broker", &format!("tcp://{}", self.bootstrap())])
            .current_dir(&self.dir)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("tansu cli runs");
        assert!(
            out.status.success(),
            "tansu {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's schema registry: `<topic>.json` files it validates
    /// every produced record of that topic against.
    pub fn schemas(&self) -> PathBuf {
        self.dir.join("schemas")
    }

    /// Creates `topic`, enforcing the event contract on it as the stack's
    /// broker does, unless the test put a schema of its own there first.
    pub async fn create_topic(&self, topic: &str, partitions: u32) {
        let schema = self.schemas().join(format!("{topic}.json"));
        if !schema.exists() {
            std::fs::create_dir_all(self.schemas()).expect("schema registry directory");
            std::fs::write(&schema, raffle_outbox::local::topic_schema()).expect("schema file");
        }
        let partitions = partitions.to_string();
        self.cli(&["topic", "create", topic, "--partitions", &partitions])
            .await;
    }

    pub async fn delete_topic(&self, topic: &str) {
        self.cli(&["topic", "delete", topic]).await;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
