//! DynamoDB Local's install: the jar from the npm package `amplify-dynamodb-simulator`
//! (Amazon's own download site is out of reach here), and `LocalLauncher.java` (next to this
//! file) compiled beside it, which binds the server to 127.0.0.1. Sends requests to the npm
//! registry only when the version is not installed yet.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::local::process;

/// The npm package (and exact version) that carries the jar.
const NPM_PACKAGE: &str = "amplify-dynamodb-simulator@2.9.30";
/// The DynamoDB Local version inside [`NPM_PACKAGE`] (it prints it at startup). Names the
/// install directory; change both together.
const VERSION: &str = "1.25.1";
/// The launcher's source, compiled at install time (see the module docs).
const LAUNCHER_SOURCE: &str = include_str!("LocalLauncher.java");
/// The launcher's main class, also how `down` recognises our process in `/proc/<pid>/cmdline`.
pub(super) const LAUNCHER_CLASS: &str = "LocalLauncher";

/// What to install when `java` or `javac` is missing.
pub(super) const JAVA_HINT: &str = "a Java 17+ JDK, e.g. `apt-get install openjdk-17-jdk-headless`";

/// An installed DynamoDB Local: the jar's directory and the compiled launcher's directory.
pub(crate) struct Install {
    /// Where `DynamoDBLocal.jar` and `DynamoDBLocal_lib/` are.
    pub(super) dir: PathBuf,
    /// Where the compiled launcher class is.
    pub(super) launcher_dir: PathBuf,
}

fn install_dir(home: &Path) -> PathBuf {
    home.join(format!("dynamodb-local-{VERSION}"))
}

impl Install {
    /// The command that starts DynamoDB Local through the 127.0.0.1 launcher on `port`, with
    /// `storage` (`-inMemory`, or `-dbPath <dir> -sharedDb`) and `work_dir` as its working
    /// directory (it writes `dynamodb-local-metadata.json` there).
    pub(super) fn command(
        &self,
        port: u16,
        storage: &[&str],
        work_dir: &Path,
    ) -> anyhow::Result<Command> {
        let java = process::require("java", "DynamoDB Local runs on it", JAVA_HINT)?;
        let mut class_path = self.dir.join("DynamoDBLocal.jar").into_os_string();
        class_path.push(":");
        class_path.push(&self.launcher_dir);
        let mut library_path = std::ffi::OsString::from("-Djava.library.path=");
        library_path.push(self.dir.join("DynamoDBLocal_lib"));
        let mut cmd = Command::new(java);
        cmd.arg(library_path)
            .arg("-cp")
            .arg(class_path)
            .arg(LAUNCHER_CLASS)
            .args(storage)
            .args(["-port", &port.to_string(), "-disableTelemetry"])
            // In 1.25.1 `-disableTelemetry` only sets a field nothing reads; what stops the
            // start-up event to Amazon is this variable (checked with javap:
            // TelemetryUtil.checkForTelemetryFlag is true unless it is "0").
            .env("DDB_LOCAL_TELEMETRY", "0")
            .current_dir(work_dir);
        Ok(cmd)
    }
}

/// Installs DynamoDB Local under `home` if it is not there yet, and compiles the launcher.
///
/// Everything is assembled in a temporary directory next to the final one and renamed into
/// place at the end, so an interrupted install is never mistaken for a complete one.
pub(crate) async fn install(home: &Path) -> anyhow::Result<Install> {
    let dir = install_dir(home);
    if !dir.join("DynamoDBLocal.jar").is_file() {
        fetch(home, &dir).await?;
    }
    let launcher_dir = compile_launcher(&dir).await?;
    Ok(Install { dir, launcher_dir })
}

async fn fetch(home: &Path, dir: &Path) -> anyhow::Result<()> {
    let npm = process::require(
        "npm",
        "it downloads DynamoDB Local",
        "Node.js with npm, e.g. `apt-get install npm`",
    )?;
    let tar = process::require("tar", "it unpacks DynamoDB Local", "`apt-get install tar`")?;
    // Checked now rather than at start: failing after a download is a worse experience.
    process::require(
        "javac",
        "it compiles DynamoDB Local's 127.0.0.1 launcher",
        JAVA_HINT,
    )?;

    eprintln!(
        "raffle-outbox: installing DynamoDB Local {VERSION} (npm package {NPM_PACKAGE}, ~57 MB) into {}; first time only, this takes a minute or so",
        dir.display()
    );
    let started = Instant::now();
    process::remove_stale_temp_dirs(home, ".install-dynamodb-local");
    let tmp = home.join(process::temp_name(".install-dynamodb-local"));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let mut pack = tokio::process::Command::new(npm);
    // --loglevel=warn: without it npm lists all 175 files of the tarball; warnings and
    // errors (network, registry) still come through.
    pack.args(["pack", "--loglevel=warn", NPM_PACKAGE])
        .current_dir(&tmp);
    process::run_visible(pack, &format!("`npm pack {NPM_PACKAGE}`")).await?;

    let tarball = std::fs::read_dir(&tmp)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|ext| ext == "tgz"))
        .with_context(|| format!("`npm pack` left no .tgz in {}", tmp.display()))?;
    let mut untar = tokio::process::Command::new(tar);
    untar.arg("xzf").arg(&tarball).current_dir(&tmp);
    process::run_visible(untar, "unpacking DynamoDB Local (`tar xzf`)").await?;

    let emulator = tmp.join("package").join("emulator");
    let stage = tmp.join("stage");
    std::fs::create_dir_all(&stage)?;
    for (name, required) in [
        ("DynamoDBLocal.jar", true),
        ("DynamoDBLocal_lib", true),
        ("LICENSE.txt", false),
        ("THIRD-PARTY-LICENSES.txt", false),
    ] {
        let from = emulator.join(name);
        if !from.exists() {
            if required {
                bail!(
                    "{NPM_PACKAGE} has no package/emulator/{name}; has the package layout changed?"
                );
            }
            continue;
        }
        std::fs::rename(&from, stage.join(name))
            .with_context(|| format!("moving {}", from.display()))?;
    }
    std::fs::rename(&stage, dir)
        .with_context(|| format!("moving the install into {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&tmp);

    eprintln!(
        "raffle-outbox: DynamoDB Local installed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Compiles `LocalLauncher.java` into `<dir>/launcher-<hash of the source>/`.
///
/// Keyed by the source's hash, so a changed launcher in a newer raffle-outbox is recompiled
/// while the 64 MB jar install is kept.
async fn compile_launcher(dir: &Path) -> anyhow::Result<PathBuf> {
    let launcher_dir = dir.join(format!(
        "launcher-{:016x}",
        fnv1a(LAUNCHER_SOURCE.as_bytes())
    ));
    if launcher_dir
        .join(format!("{LAUNCHER_CLASS}.class"))
        .is_file()
    {
        return Ok(launcher_dir);
    }
    let javac = process::require(
        "javac",
        "it compiles DynamoDB Local's 127.0.0.1 launcher",
        JAVA_HINT,
    )?;
    process::remove_stale_temp_dirs(dir, ".launcher-tmp");
    let tmp = dir.join(process::temp_name(".launcher-tmp"));
    std::fs::create_dir_all(&tmp)?;
    let source = tmp.join(format!("{LAUNCHER_CLASS}.java"));
    std::fs::write(&source, LAUNCHER_SOURCE)?;
    let mut cmd = tokio::process::Command::new(javac);
    // The jar's manifest Class-Path brings DynamoDBLocal_lib/ (Jetty) onto the class path.
    cmd.arg("-cp")
        .arg(dir.join("DynamoDBLocal.jar"))
        .arg("-d")
        .arg(&tmp)
        .arg(&source)
        .current_dir(&tmp);
    process::run_visible(cmd, "compiling LocalLauncher.java (`javac`)").await?;
    std::fs::rename(&tmp, &launcher_dir)
        .with_context(|| format!("moving the launcher into {}", launcher_dir.display()))?;
    Ok(launcher_dir)
}

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`) for naming the launcher directory.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_dir_is_versioned_under_home() {
        assert_eq!(
            install_dir(Path::new("/h")),
            PathBuf::from("/h/dynamodb-local-1.25.1")
        );
    }

    #[test]
    fn fnv1a_is_stable() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
