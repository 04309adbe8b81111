//! The Kafka leg's yardstick: kcat sending the same messages, with a current librdkafka.

use super::*;

/// librdkafka for kcat: Debian's kcat links librdkafka 2.0.2, which cannot
/// talk to tansu; the confluent-kafka wheel carries a current one.
pub(super) const LIBRDKAFKA_WHEEL: &str = "confluent-kafka==2.16.1";

/// `kcat -P` sending the same keyed messages to a topic of its own; the
/// rate counts only if the topic's end offsets grew by all of them.
pub(super) async fn kcat(
    stack: &StackConfig,
    base: &Config,
    participants: &[(String, serde_json::Value)],
) -> anyhow::Result<f64> {
    ensure_kcat()?;
    let lib = librdkafka(stack)?;
    let config = leg(base, stack, "kcat").await?;
    let file = stack.run_dir().join("bench-kcat-input.tsv");
    let lines: Vec<String> = participants
        .iter()
        .map(|(id, p)| format!("{id}\t{p}"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    let started = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-P",
            "-b",
            &config.kafka_bootstrap_servers,
            "-t",
            &config.kafka_topic,
            "-K",
            "\t",
        ])
        // The same messages: our Kafka leg's carry an `outbox_id` header
        // (a UUID) each, and tansu's cost per message doubles with it, so
        // kcat's carry one of the same size.
        .args(["-H", &format!("outbox_id={}", uuid::Uuid::new_v4())])
        .args(["-X", "acks=all", "-X", "partitioner=murmur2", "-l"])
        .arg(&file)
        .env("LD_LIBRARY_PATH", &lib)
        .status()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.success(), "kcat failed: {status}");
    let producer = Producer::connect(&config.kafka_bootstrap_servers, &config.kafka_topic).await?;
    let stored: i64 = producer.end_offsets().await?.iter().sum();
    anyhow::ensure!(
        stored == participants.len() as i64,
        "kcat exited 0 but the topic holds {stored} of {} messages (librdkafka's metadata requests go unanswered by tansu at times)",
        participants.len()
    );
    Ok(rate(participants.len(), elapsed))
}

/// kcat from Debian's packages, installed on first use when we are root.
pub(super) fn ensure_kcat() -> anyhow::Result<()> {
    if local::which("kcat").is_some() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    anyhow::ensure!(
        root && local::which("apt-get").is_some(),
        "kcat is not installed (apt-get install kcat)"
    );
    eprintln!("raffle-outbox: installing kcat (apt-get install -y kcat); first time only");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "kcat"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "apt-get install kcat failed: {status}");
    Ok(())
}

/// A directory with `librdkafka.so.1` from the confluent-kafka wheel,
/// fetched with pip on first use.
pub(super) fn librdkafka(stack: &StackConfig) -> anyhow::Result<PathBuf> {
    let dir = stack.home.join("librdkafka");
    if dir.join("librdkafka.so.1").exists() {
        return Ok(dir);
    }
    eprintln!(
        "raffle-outbox: fetching a current librdkafka for kcat ({LIBRDKAFKA_WHEEL}) into {}",
        dir.display()
    );
    let wheel_dir = stack.home.join("librdkafka-wheel");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&wheel_dir)
        .arg(LIBRDKAFKA_WHEEL)
        .status()?;
    anyhow::ensure!(status.success(), "pip download {LIBRDKAFKA_WHEEL} failed");
    let wheel = std::fs::read_dir(&wheel_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("no wheel downloaded")?;
    let unpacked = wheel_dir.join("unpacked");
    let status = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()?;
    anyhow::ensure!(status.success(), "unpacking {} failed", wheel.display());
    let so = std::fs::read_dir(unpacked.join("confluent_kafka.libs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("librdkafka"))
        })
        .context("no librdkafka in the wheel")?;
    // The wheel's libraries (librdkafka and what it links), librdkafka
    // under the name kcat asks for.
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(so.parent().unwrap_or(Path::new(".")))? {
        let path = entry?.path();
        let name = match path == so {
            true => "librdkafka.so.1".into(),
            false => path.file_name().unwrap_or_default().to_owned(),
        };
        std::fs::copy(&path, dir.join(name))?;
    }
    Ok(dir)
}
