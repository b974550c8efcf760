//! `cargo xtask lambdas`: build the Lambda zips with cargo-lambda, check
//! their size, and (`--bench`) measure each bootstrap's cold start under a
//! local Lambda runtime API.
//!
//! The zips land in `target/lambda/<function>/bootstrap.zip` (under
//! `$CARGO_TARGET_DIR` when set), where `fleetcert synth`'s `--lambda-dir`
//! default and `infra::assembly::lambda_assets` look for them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rules::functions::Function;

/// The cargo-lambda release `pip` installs into `.tools/venv-lambda`.
pub const CARGO_LAMBDA_VERSION: &str = "1.9.2";
/// Largest zip accepted (a budget well under Lambda's 50 MB upload limit:
/// a small zip loads fast on a cold start).
pub const MAX_ZIP_BYTES: u64 = 6 * 1024 * 1024;
/// Cold starts measured per function by `--bench`.
const BENCH_RUNS: usize = 5;
/// How long one bootstrap may take to ask for its first event.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The target architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// AWS Graviton (the stack's default).
    Arm64,
    /// x86_64.
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    fn flag(self) -> &'static str {
        match self {
            Arch::Arm64 => "--arm64",
            Arch::X86_64 => "--x86-64",
        }
    }

    fn triple(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// What `cargo xtask lambdas` does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Target architecture.
    pub arch: Arch,
    /// Only this function (its binary name), else all seven.
    pub function: Option<String>,
    /// Build for the host into `target/lambda-bench/` and measure cold starts.
    pub bench: bool,
}

/// Runs the command.
pub fn run(root: &Path, options: &Options) -> Result<()> {
    let functions: Vec<Function> = match &options.function {
        None => Function::ALL.to_vec(),
        Some(name) => match Function::ALL.into_iter().find(|f| f.name() == name) {
            Some(f) => vec![f],
            None => bail!(
                "no function {name}; the functions are {}",
                Function::ALL.map(Function::name).join(", ")
            ),
        },
    };
    let venv_bin = ensure_cargo_lambda(root)?;
    let target = target_dir(root);
    if options.bench {
        let Some(host) = Arch::host() else {
            bail!("--bench runs the bootstraps here, on an unsupported host architecture");
        };
        let dir = target.join("lambda-bench");
        build(root, &venv_bin, host, &functions, &dir)?;
        let sizes = check_sizes(&dir, &functions)?;
        bench(&dir, &functions, &sizes)
    } else {
        let dir = target.join("lambda");
        build(root, &venv_bin, options.arch, &functions, &dir)?;
        check_sizes(&dir, &functions)?;
        Ok(())
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Installs cargo-lambda (which brings zig) into `.tools/venv-lambda`
/// unless the pinned version is there; returns the venv's `bin`.
fn ensure_cargo_lambda(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".tools/venv-lambda");
    let bin = venv.join("bin");
    let installed = Command::new(bin.join("cargo-lambda"))
        .args(["lambda", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if installed
        .as_deref()
        .is_some_and(|v| v.contains(CARGO_LAMBDA_VERSION))
    {
        return Ok(bin);
    }
    eprintln!(
        "installing cargo-lambda {CARGO_LAMBDA_VERSION} into {}",
        venv.display()
    );
    run_status(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("creating the cargo-lambda virtualenv (needs python3 with venv)")?;
    run_status(Command::new(bin.join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("cargo-lambda=={CARGO_LAMBDA_VERSION}"),
    ]))
    .context("pip install cargo-lambda")?;
    Ok(bin)
}

/// `cargo lambda build` of the `lambdas` binaries into `dir` as zips, with
/// the size-tuned `lambda` profile.
fn build(
    root: &Path,
    venv_bin: &Path,
    arch: Arch,
    functions: &[Function],
    dir: &Path,
) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup target list")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == arch.triple())
    {
        run_status(Command::new("rustup").args(["target", "add", arch.triple()]))?;
    }
    let path = std::env::join_paths(std::iter::once(venv_bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .env("PATH", path)
        .args(["lambda", "build", "--profile", "lambda", arch.flag()])
        .args(["--package", "lambdas", "--features", "aws", "--locked"])
        .args(["--output-format", "zip", "--lambda-dir"])
        .arg(dir);
    for f in functions {
        cmd.args(["--bin", f.name()]);
    }
    println!("building {} function(s) for {arch:?}", functions.len());
    run_status(&mut cmd).context("cargo lambda build")
}

/// Prints each zip's size; fails when one is missing or over
/// [`MAX_ZIP_BYTES`].
fn check_sizes(dir: &Path, functions: &[Function]) -> Result<Vec<u64>> {
    let mut sizes = Vec::new();
    let mut too_big = Vec::new();
    for f in functions {
        let zip = dir.join(f.name()).join("bootstrap.zip");
        let size = std::fs::metadata(&zip)
            .with_context(|| format!("{} was not written", zip.display()))?
            .len();
        println!("{:<17} {:>8.2} MiB  {}", f.name(), mib(size), zip.display());
        if size > MAX_ZIP_BYTES {
            too_big.push(f.name());
        }
        sizes.push(size);
    }
    if !too_big.is_empty() {
        bail!(
            "over the {} MiB budget: {}",
            mib(MAX_ZIP_BYTES),
            too_big.join(", ")
        );
    }
    Ok(sizes)
}

fn mib(bytes: u64) -> f64 {
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / (1024.0 * 1024.0)
}

/// Kills and reaps the child on drop.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures, for each function, process start → its first
/// `GET /2018-06-01/runtime/invocation/next` on a local runtime API.
fn bench(dir: &Path, functions: &[Function], sizes: &[u64]) -> Result<()> {
    println!();
    println!(
        "cold start to ready (process start -> first /next), {BENCH_RUNS} runs, x86_64 bootstraps on this machine"
    );
    println!(
        "{:<17} {:>9} {:>11} {:>9} {:>9}",
        "function", "zip MiB", "median ms", "min ms", "max ms"
    );
    for (f, size) in functions.iter().zip(sizes) {
        let unpacked = dir.join(f.name()).join("unpacked");
        let _ = std::fs::remove_dir_all(&unpacked);
        run_status(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(dir.join(f.name()).join("bootstrap.zip"))
                .arg(&unpacked),
        )
        .context("unzipping the bootstrap (python3 -m zipfile)")?;
        let bootstrap = unpacked.join("bootstrap");
        make_executable(&bootstrap)?;
        let mut times = Vec::with_capacity(BENCH_RUNS);
        for _ in 0..BENCH_RUNS {
            times.push(cold_start(&bootstrap, *f)?);
        }
        times.sort();
        println!(
            "{:<17} {:>9.2} {:>11.1} {:>9.1} {:>9.1}",
            f.name(),
            mib(*size),
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
        );
        let _ = std::fs::remove_dir_all(&unpacked);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// One cold start: a runtime API on 127.0.0.1 that records when the first
/// `/next` arrives, the bootstrap started with a Lambda-like environment
/// (no AWS call is made at start-up: `IOT_DATA_ENDPOINT` is set).
fn cold_start(bootstrap: &Path, f: Function) -> Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the runtime API")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel::<Result<(Instant, String)>>();
    let server = std::thread::spawn(move || {
        let first = (|| -> Result<(Instant, String)> {
            let (stream, _) = listener.accept()?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            Ok((Instant::now(), line))
        })();
        let _ = tx.send(first);
    });
    let start = Instant::now();
    let child = Command::new(bootstrap)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", f.name())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.name()),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("ROTATION_TABLE", "fleetcert-rotations")
        .env(
            "ROTATION_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        )
        .env(
            "SUPPORT_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:support",
        )
        .env("DEVICE_POLICY_NAME", "fleetcert-device")
        .env("FLEETCERT_CONCURRENCY", "10")
        .env("IOT_DATA_ENDPOINT", "127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let mut child = Reap(child);
    let deadline = start + READY_TIMEOUT;
    let (ready, line) = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(first) => break first.context("reading the first runtime API request")?,
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the runtime API thread ended"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let exited = child.0.try_wait()?;
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.0.kill();
            let mut stderr = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            match exited {
                Some(status) => bail!(
                    "{} exited with {status} before asking for an event",
                    f.name()
                ),
                None => bail!("{} asked for no event within {READY_TIMEOUT:?}", f.name()),
            }
        }
    };
    let elapsed = ready.duration_since(start);
    drop(child);
    let _ = server.join();
    if !line.starts_with("GET /2018-06-01/runtime/invocation/next") {
        bail!("{}: unexpected first request {line:?}", f.name());
    }
    Ok(elapsed)
}

pub(crate) fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
