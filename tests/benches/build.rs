//! `cargo bench -p securebuild-tests --bench build`: how fast `securebuild build` is on a
//! realistic image, measured against the floor of the work it cannot avoid.
//!
//! The bench generates a signed repository of about 150 packages and 400 MiB installed (many
//! small text files, some large binaries whose content mixes seeded random bytes with repeated
//! text so that gzip shrinks them about as much as real binaries), serves it over loopback HTTP
//! and starts a real `docker-registry`. Each phase then runs in a child process (this binary,
//! re-executed with [`PHASE_ARG`]) so that its peak RSS (`VmHWM`) is its own:
//!
//! 1. a cold build into an OCI layout, every cache empty;
//! 2. a warm build: the package cache is filled, the layer cache is emptied first (and the
//!    same again bound to one core, to show that the image does not depend on the cores);
//! 3. a first push (uploads), then the measured unchanged rebuild pushed again (must upload
//!    nothing);
//! 4. the floor: decompressing every package's streams, plus gzip-compressing the same
//!    uncompressed layer with the builder's `ParallelGzWriter` at the same level on every core;
//!    both steps use every core, and neither writes its output anywhere, so the floor is the
//!    CPU work any builder must do and nothing more;
//! 5. solving a synthetic 5,000-package index (the solver alone, parsing excluded).
//!
//! It prints a table of times, throughput, peak RSS and ratios against the targets. It reports
//! and never asserts. `SECUREBUILD_BENCH_SCALE` (default 1.0) scales the package count, and so
//! the image size, for quick runs. The bench does not measure network or disk: everything is
//! served from the page cache over loopback.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{self, BufRead as _, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser as _;
use securebuild_builder::apk::constraint::Dependency;
use securebuild_builder::apk::index::parse_index;
use securebuild_builder::apk::solver::{self, SolverRepository};
use securebuild_builder::cli::{Cli, Command as CliCommand};
use securebuild_builder::image::layer::DEFAULT_GZIP_LEVEL;
use securebuild_builder::image::pgzip::ParallelGzWriter;
use securebuild_builder::image::write::CACHE_LAYERS_DIR;
use securebuild_tests::apkgen::{PackageSpec, Repository, TestKey};
use securebuild_tests::registry::TestRegistry;
use securebuild_tests::serve::ServedDir;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// First argument of a child process: the phase to run follows.
const PHASE_ARG: &str = "--securebuild-bench-phase";
/// Line prefix under which a child reports its measurement.
const RESULT_PREFIX: &str = "SECUREBUILD-BENCH-RESULT ";
/// Environment variable scaling the package count.
const SCALE_ENV: &str = "SECUREBUILD_BENCH_SCALE";
/// Packages at scale 1.
const PACKAGES_AT_SCALE_1: f64 = 150.0;
/// Architecture of the synthetic repository.
const ARCH: &str = "x86_64";
/// Build date of every synthetic package.
const BUILD_DATE: u64 = 1_767_225_600;
/// Records in the synthetic index the solver runs against.
const SOLVER_INDEX_SIZE: usize = 5_000;
/// Solver runs; the median is reported.
const SOLVER_RUNS: usize = 7;
/// Repository the image is pushed to.
const PUSH_REPOSITORY: &str = "bench/image";
/// Binds a child to one CPU.
const TASKSET: &str = "/usr/bin/taskset";
const MIB: f64 = 1024.0 * 1024.0;
const KIB: u64 = 1024;

/// Targets from the issue.
const TARGET_COLD_RATIO: f64 = 1.5;
const TARGET_WARM_RATIO: f64 = 1.2;
const TARGET_UNCHANGED_SECONDS: f64 = 1.0;
const TARGET_PEAK_RSS_MIB: f64 = 256.0;
const TARGET_SOLVE_SECONDS: f64 = 0.1;

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == PHASE_ARG) {
        let phase = args.get(position + 1).ok_or("missing phase name")?;
        let rest = args.get(position + 2..).unwrap_or_default();
        return run_child(phase, rest);
    }
    run_parent()
}

// ---------------------------------------------------------------------------------------------
// Parent: generate, serve, run the phases, print the table.
// ---------------------------------------------------------------------------------------------

/// What a child reports.
#[derive(Clone, Debug, Default)]
struct Measurement {
    seconds: f64,
    peak_rss_kib: u64,
    detail: String,
}

/// The package count scale from [`SCALE_ENV`] (1.0 when unset).
fn scale() -> BenchResult<f64> {
    match std::env::var(SCALE_ENV) {
        Ok(value) => Ok(value
            .trim()
            .parse()
            .map_err(|_| format!("{SCALE_ENV}={value} is not a number"))?),
        Err(_) => Ok(1.0),
    }
}

fn run_parent() -> BenchResult<()> {
    let scale = scale()?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let work = tempfile::Builder::new()
        .prefix("securebuild-bench-")
        .tempdir()?;
    let repo_dir = work.path().join("repo");
    let key = TestKey::shared()?;
    let keys_dir = work.path().join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let key_path = key.write_public(&keys_dir)?;

    let generating = Instant::now();
    let repo = generate_repository(&repo_dir, &key, scale, cores)?;
    let generate_seconds = generating.elapsed().as_secs_f64();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let served = runtime.block_on(ServedDir::start(&repo_dir))?;
    let registry = TestRegistry::start()?;
    let config = write_config(work.path(), &served.base_url(), &key_path, &repo.world)?;
    let cache = work.path().join("cache");
    let config_arg = path_arg(&config)?;
    let cache_arg = path_arg(&cache)?;

    eprintln!(
        "bench: {} packages, {:.0} MiB installed, {:.0} MiB of .apk files (ratio {:.2}), {} files, generated in {:.1} s",
        repo.packages,
        repo.installed_bytes as f64 / MIB,
        repo.apk_bytes as f64 / MIB,
        repo.installed_bytes as f64 / repo.apk_bytes.max(1) as f64,
        repo.files,
        generate_seconds
    );

    let cold_out = work.path().join("cold.oci");
    eprintln!("bench: cold build");
    let cold = child("build", &[&config_arg, &cache_arg, &path_arg(&cold_out)?])?;

    eprintln!("bench: warm build");
    remove_dir_if_present(&cache.join(CACHE_LAYERS_DIR))?;
    let warm_out = work.path().join("warm.oci");
    let warm = child("build", &[&config_arg, &cache_arg, &path_arg(&warm_out)?])?;

    eprintln!("bench: warm build on one core");
    remove_dir_if_present(&cache.join(CACHE_LAYERS_DIR))?;
    let one_core_out = work.path().join("one-core.oci");
    let one_core = child_on_one_core(
        "build",
        &[&config_arg, &cache_arg, &path_arg(&one_core_out)?],
    )?;

    let target = format!("{}/{PUSH_REPOSITORY}", registry.host());
    eprintln!("bench: first push");
    let first_push = child("push", &[&config_arg, &cache_arg, &target])?;
    eprintln!("bench: unchanged rebuild and push");
    let unchanged = child("push", &[&config_arg, &cache_arg, &target])?;

    // The floor's compression input: the cold build's layer, uncompressed (not timed).
    let layer_tar = work.path().join("layer.tar");
    let layer_size = gunzip_layer(&cold_out, &layer_tar)?;
    eprintln!("bench: floor");
    let decompress = child("floor-decompress", &[&path_arg(&repo_dir.join(ARCH))?])?;
    let compress = child("floor-compress", &[&path_arg(&layer_tar)?])?;
    eprintln!("bench: solver");
    let solve = child("solve", &[])?;

    let report = Report {
        scale,
        cores,
        repo,
        layer_size,
        cold,
        warm,
        one_core,
        first_push,
        unchanged,
        decompress,
        compress,
        solve,
    };
    print!("{}", report.table());
    eprintln!(
        "bench: finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(served);
    drop(registry);
    Ok(())
}

fn path_arg(path: &Path) -> BenchResult<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()).into())
}

fn remove_dir_if_present(dir: &Path) -> BenchResult<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Runs one phase in a child process and returns what it measured.
fn child(phase: &str, args: &[&str]) -> BenchResult<Measurement> {
    let exe = std::env::current_exe()?;
    run_child_command(Command::new(exe), phase, args)
}

/// Runs one phase in a child process bound to the first CPU (`taskset -c 0`), so that the
/// builder sees one core; `None` when `taskset` is not available.
fn child_on_one_core(phase: &str, args: &[&str]) -> BenchResult<Option<Measurement>> {
    if !Path::new(TASKSET).exists() {
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let mut command = Command::new(TASKSET);
    command.args(["-c", "0"]).arg(exe);
    run_child_command(command, phase, args).map(Some)
}

fn run_child_command(mut command: Command, phase: &str, args: &[&str]) -> BenchResult<Measurement> {
    let output = command.arg(PHASE_ARG).arg(phase).args(args).output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "phase {phase} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| format!("phase {phase} reported nothing:\n{stdout}"))?;
    let mut fields = line.splitn(3, ' ');
    let seconds = fields.next().unwrap_or_default().parse()?;
    let peak_rss_kib = fields.next().unwrap_or_default().parse()?;
    let detail = fields.next().unwrap_or_default().to_owned();
    Ok(Measurement {
        seconds,
        peak_rss_kib,
        detail,
    })
}

/// The apko configuration of the benchmark image.
fn write_config(dir: &Path, repo_url: &str, key: &Path, world: &[String]) -> BenchResult<PathBuf> {
    let mut text = String::new();
    writeln!(text, "contents:")?;
    writeln!(text, "  repositories:\n    - {repo_url}")?;
    writeln!(text, "  keyring:\n    - {}", key.display())?;
    writeln!(text, "  packages:")?;
    for name in world {
        writeln!(text, "    - {name}")?;
    }
    writeln!(text, "entrypoint:\n  command: /usr/bin/tool-0004")?;
    writeln!(text, "work-dir: /home/nonroot")?;
    writeln!(
        text,
        "accounts:\n  groups:\n    - groupname: nonroot\n      gid: 65532\n  users:\n    - username: nonroot\n      uid: 65532\n      gid: 65532\n  run-as: 65532"
    )?;
    writeln!(text, "archs:\n  - {ARCH}")?;
    let path = dir.join("bench.apko.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Decompresses the (single) layer of an OCI layout into `out`; returns its size.
fn gunzip_layer(layout: &Path, out: &Path) -> BenchResult<u64> {
    let blobs = layout.join("blobs/sha256");
    let read_json = |digest: &str| -> BenchResult<serde_json::Value> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or("digest without sha256:")?;
        Ok(serde_json::from_slice(&std::fs::read(blobs.join(hex))?)?)
    };
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let index_digest = top["manifests"][0]["digest"].as_str().ok_or("no index")?;
    let index = read_json(index_digest)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("no manifest")?;
    let manifest = read_json(manifest_digest)?;
    let layer = manifest["layers"][0]["digest"].as_str().ok_or("no layer")?;
    let hex = layer.strip_prefix("sha256:").ok_or("layer digest")?;
    let file = std::fs::File::open(blobs.join(hex))?;
    let mut decoder = flate2::read::GzDecoder::new(BufReader::new(file));
    let mut output = io::BufWriter::new(std::fs::File::create(out)?);
    let size = io::copy(&mut decoder, &mut output)?;
    output.flush()?;
    Ok(size)
}

/// The measurements of one run and how they compare with the targets.
struct Report {
    scale: f64,
    cores: usize,
    repo: GeneratedRepository,
    layer_size: u64,
    cold: Measurement,
    warm: Measurement,
    one_core: Option<Measurement>,
    first_push: Measurement,
    unchanged: Measurement,
    decompress: Measurement,
    compress: Measurement,
    solve: Measurement,
}

impl Report {
    fn table(&self) -> String {
        let installed = self.repo.installed_bytes as f64 / MIB;
        let floor = self.decompress.seconds + self.compress.seconds;
        let floor_rss = self.decompress.peak_rss_kib.max(self.compress.peak_rss_kib);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nsecurebuild build benchmark (scale {}, {} cores): {} packages, {} files, {:.1} MiB installed, {:.1} MiB of .apk, layer tar {:.1} MiB",
            self.scale,
            self.cores,
            self.repo.packages,
            self.repo.files,
            installed,
            self.repo.apk_bytes as f64 / MIB,
            self.layer_size as f64 / MIB
        );
        let _ = writeln!(
            out,
            "{:<34} {:>9} {:>10} {:>10} {:>9}  target",
            "phase", "time s", "MiB/s", "peak RSS", "/ floor"
        );
        let row = |out: &mut String, name: &str, m: &Measurement, ratio: bool, target: &str| {
            let _ = writeln!(
                out,
                "{:<34} {:>9.3} {:>10.1} {:>7.1} MiB {:>9}  {}",
                name,
                m.seconds,
                installed / m.seconds.max(1e-9),
                m.peak_rss_kib as f64 / 1024.0,
                if ratio {
                    format!("{:.2}x", m.seconds / floor.max(1e-9))
                } else {
                    String::new()
                },
                target
            );
        };
        row(
            &mut out,
            "floor: decompress packages",
            &self.decompress,
            false,
            &self.decompress.detail,
        );
        row(
            &mut out,
            &format!("floor: pgzip -{DEFAULT_GZIP_LEVEL} the layer"),
            &self.compress,
            false,
            &self.compress.detail,
        );
        let floor_measurement = Measurement {
            seconds: floor,
            peak_rss_kib: floor_rss,
            detail: String::new(),
        };
        row(&mut out, "floor (sum)", &floor_measurement, true, "");
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let cold_ratio = self.cold.seconds / floor.max(1e-9);
        row(
            &mut out,
            "cold build (empty caches)",
            &self.cold,
            true,
            &format!(
                "<= {TARGET_COLD_RATIO}x floor: {}",
                verdict(cold_ratio <= TARGET_COLD_RATIO)
            ),
        );
        let warm_ratio = self.warm.seconds / floor.max(1e-9);
        row(
            &mut out,
            "warm build (package cache)",
            &self.warm,
            true,
            &format!(
                "<= {TARGET_WARM_RATIO}x floor: {}",
                verdict(warm_ratio <= TARGET_WARM_RATIO)
            ),
        );
        if let Some(one_core) = &self.one_core {
            row(
                &mut out,
                "warm build on one core",
                one_core,
                true,
                "(determinism check, not a target)",
            );
        }
        row(
            &mut out,
            "first push",
            &self.first_push,
            false,
            &self.first_push.detail,
        );
        let uploaded_nothing = self.unchanged.detail.starts_with("0 blobs uploaded");
        row(
            &mut out,
            "unchanged rebuild + push",
            &self.unchanged,
            false,
            &format!(
                "<= {TARGET_UNCHANGED_SECONDS} s: {}; {} ({})",
                verdict(self.unchanged.seconds <= TARGET_UNCHANGED_SECONDS),
                if uploaded_nothing {
                    "uploaded nothing"
                } else {
                    "UPLOADED BLOBS"
                },
                self.unchanged.detail
            ),
        );
        let _ = writeln!(
            out,
            "{:<34} {:>9.4} {:>10} {:>7.1} MiB {:>9}  <= {} ms: {} ({})",
            format!("solve {SOLVER_INDEX_SIZE}-package index"),
            self.solve.seconds,
            "",
            self.solve.peak_rss_kib as f64 / 1024.0,
            "",
            TARGET_SOLVE_SECONDS * 1000.0,
            verdict(self.solve.seconds <= TARGET_SOLVE_SECONDS),
            self.solve.detail
        );
        let builds = [&self.cold, &self.warm, &self.first_push, &self.unchanged];
        let peak = builds
            .into_iter()
            .chain(self.one_core.as_ref())
            .map(|m| m.peak_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0;
        let _ = writeln!(
            out,
            "peak RSS of any build: {peak:.1} MiB (target <= {TARGET_PEAK_RSS_MIB} MiB: {})",
            verdict(peak <= TARGET_PEAK_RSS_MIB)
        );
        let same = self.cold.detail == self.warm.detail
            && self
                .one_core
                .as_ref()
                .is_none_or(|one_core| one_core.detail == self.cold.detail);
        let _ = writeln!(
            out,
            "cold, warm{} builds give the same image: {} ({})",
            if self.one_core.is_some() {
                " and one-core"
            } else {
                ""
            },
            if same { "yes" } else { "NO" },
            self.cold.detail
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Children: one phase each, reporting seconds, VmHWM and a detail.
// ---------------------------------------------------------------------------------------------

fn run_child(phase: &str, args: &[String]) -> BenchResult<()> {
    let arg = |index: usize| -> BenchResult<&str> {
        args.get(index)
            .map(String::as_str)
            .ok_or_else(|| format!("phase {phase}: missing argument {index}").into())
    };
    let (seconds, detail) = match phase {
        "build" => {
            let argv = [
                "securebuild",
                "build",
                arg(0)?,
                "--cache-dir",
                arg(1)?,
                "--output",
                arg(2)?,
                "--tag",
                "bench",
            ];
            let (seconds, stdout) = run_cli(&argv)?;
            (seconds, digest_line(&stdout, "index: "))
        }
        "push" => {
            let argv = [
                "securebuild",
                "build",
                arg(0)?,
                "--cache-dir",
                arg(1)?,
                "--push",
                arg(2)?,
                "--tag",
                "bench",
            ];
            let (seconds, stdout) = run_cli(&argv)?;
            let pushed = stdout
                .lines()
                .find(|line| line.starts_with("pushed "))
                .and_then(|line| line.split_once(" ("))
                .map(|(_, counts)| counts.trim_end_matches(')').to_owned())
                .unwrap_or_default();
            (seconds, pushed)
        }
        "floor-decompress" => floor_decompress(Path::new(arg(0)?))?,
        "floor-compress" => floor_compress(Path::new(arg(0)?))?,
        "solve" => solve_synthetic_index()?,
        "generate" => generate_local(Path::new(arg(0)?))?,
        other => return Err(format!("unknown phase {other}").into()),
    };
    let peak = vm_hwm_kib()?;
    println!(
        "{RESULT_PREFIX}{seconds} {peak} {}",
        detail.replace('\n', " ")
    );
    Ok(())
}

/// Writes the repository, its key and a configuration that reads the repository from disk
/// under `dir` (to build the same inputs with two builders and compare their layers).
fn generate_local(dir: &Path) -> BenchResult<(f64, String)> {
    let started = Instant::now();
    let key = TestKey::shared()?;
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let key_path = key.write_public(&keys_dir)?;
    let repo_dir = dir.join("repo");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let repo = generate_repository(&repo_dir, &key, scale()?, cores)?;
    let config = write_config(dir, &path_arg(&repo_dir)?, &key_path, &repo.world)?;
    Ok((
        started.elapsed().as_secs_f64(),
        config.display().to_string(),
    ))
}

/// Runs the CLI in this process; returns the seconds the command took and its output.
fn run_cli(argv: &[&str]) -> BenchResult<(f64, String)> {
    let cli = Cli::try_parse_from(argv)?;
    let CliCommand::Build(args) = &cli.command else {
        return Err("not a build command".into());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    let started = Instant::now();
    runtime.block_on(securebuild_builder::cli::build::run(args, &mut out))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, String::from_utf8_lossy(&out).into_owned()))
}

fn digest_line(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The peak resident set size of this process (`VmHWM`), in KiB.
fn vm_hwm_kib() -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// Decompresses every gzip member of every `.apk` in `dir` (signature, control and data), the
/// packages spread over every core, output discarded.
fn floor_decompress(dir: &Path) -> BenchResult<(f64, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "apk"))
        .collect();
    files.sort();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let next = AtomicUsize::new(0);
    let total = Mutex::new(0u64);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(index) else { break };
                    let result = std::fs::File::open(path).and_then(|file| {
                        let mut decoder = flate2::bufread::MultiGzDecoder::new(
                            BufReader::with_capacity(256 * 1024, file),
                        );
                        io::copy(&mut decoder, &mut io::sink())
                    });
                    match result {
                        Ok(bytes) => {
                            *total.lock().unwrap_or_else(PoisonError::into_inner) += bytes;
                        }
                        Err(error) => {
                            *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                                Some(format!("{}: {error}", path.display()));
                        }
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(error.into());
    }
    let total = total.into_inner().unwrap_or_else(PoisonError::into_inner);
    Ok((
        seconds,
        format!(
            "{} packages, {:.1} MiB out",
            files.len(),
            total as f64 / MIB
        ),
    ))
}

/// gzip-compresses `tar` with the builder's parallel compressor at the default level on every
/// core, output discarded.
fn floor_compress(tar: &Path) -> BenchResult<(f64, String)> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let started = Instant::now();
    let mut input = BufReader::with_capacity(1024 * 1024, std::fs::File::open(tar)?);
    let mut counter = CountingSink(0);
    let mut writer = ParallelGzWriter::new(&mut counter, DEFAULT_GZIP_LEVEL, cores)?;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            break;
        }
        let length = buffer.len();
        writer.write_all(buffer)?;
        input.consume(length);
    }
    writer.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        seconds,
        format!("{:.1} MiB compressed", counter.0 as f64 / MIB),
    ))
}

/// A sink that counts bytes.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Solves a world of 30 packages against a synthetic 5,000-record index; returns the median
/// of [`SOLVER_RUNS`] runs.
fn solve_synthetic_index() -> BenchResult<(f64, String)> {
    let text = synthetic_index(SOLVER_INDEX_SIZE);
    let parsing = Instant::now();
    let records = parse_index(&text)?;
    let parse_seconds = parsing.elapsed().as_secs_f64();
    let repositories = [SolverRepository {
        name: "synthetic".to_owned(),
        tag: None,
        packages: &records,
    }];
    let world: Vec<Dependency> = (0..30)
        .map(|i| Dependency::parse(&format!("app{:04}", 3_900 + i * 3)))
        .collect::<Result<_, _>>()?;
    let mut times = Vec::with_capacity(SOLVER_RUNS);
    let mut selected = 0;
    for _ in 0..SOLVER_RUNS {
        let started = Instant::now();
        let solution = solver::solve(&repositories, &world, ARCH)?;
        times.push(started.elapsed());
        selected = solution.packages.len();
    }
    times.sort();
    let median = times
        .get(times.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    let first = times.first().copied().unwrap_or(Duration::ZERO);
    Ok((
        median.as_secs_f64(),
        format!(
            "median of {SOLVER_RUNS}, fastest {:.1} ms; {selected} packages selected from {} records; parsing took {:.1} ms",
            first.as_secs_f64() * 1000.0,
            records.len(),
            parse_seconds * 1000.0
        ),
    ))
}

/// APKINDEX text of `count` records: libraries providing `so:` names, some with two
/// versions, applications depending on libraries by `so:` name and on each other by name,
/// virtual `cmd:` provides, and a few install-if packages.
fn synthetic_index(count: usize) -> String {
    let mut rng = Rng::new(0x5eed_1dec);
    let mut text = String::new();
    let libraries = count * 3 / 5;
    let mut written = 0;
    let mut number = 0;
    while written < count {
        let is_library = number < libraries * 4 / 5;
        let name = if is_library {
            format!("lib{number:04}")
        } else {
            format!("app{number:04}")
        };
        let versions = if rng.below(4) == 0 { 2 } else { 1 };
        for version in 0..versions {
            if written == count {
                break;
            }
            let _ = writeln!(text, "C:Q1{}", synthetic_checksum(&mut rng));
            let _ = writeln!(text, "P:{name}");
            let _ = writeln!(
                text,
                "V:{}.{}.{version}-r{}",
                1 + number % 3,
                number % 17,
                version
            );
            let _ = writeln!(text, "A:{ARCH}");
            let _ = writeln!(text, "S:{}", 10_000 + rng.below(1_000_000));
            let _ = writeln!(text, "I:{}", 40_000 + rng.below(4_000_000));
            let _ = writeln!(text, "T:synthetic package {name}");
            let _ = writeln!(text, "U:https://example.com/{name}");
            let _ = writeln!(text, "L:MIT");
            let _ = writeln!(text, "o:{name}");
            let _ = writeln!(text, "t:{BUILD_DATE}");
            let mut depends = Vec::new();
            if number > 0 {
                let edges = if is_library {
                    rng.below(3)
                } else {
                    2 + rng.below(5)
                };
                for _ in 0..edges {
                    let target = rng.below(number.min(libraries * 4 / 5) as u64) as usize;
                    depends.push(format!("so:lib{target:04}.so.1"));
                }
                if !is_library && rng.below(3) == 0 {
                    let target = libraries * 4 / 5
                        + rng.below((number - libraries * 4 / 5).max(1) as u64) as usize;
                    if target < number {
                        depends.push(format!("app{target:04}"));
                    }
                }
            }
            depends.sort();
            depends.dedup();
            if !depends.is_empty() {
                let _ = writeln!(text, "D:{}", depends.join(" "));
            }
            if is_library {
                let _ = writeln!(text, "p:so:lib{number:04}.so.1={}.0", 1 + version);
            } else {
                let _ = writeln!(text, "p:cmd:app{number:04}");
            }
            if !is_library && number % 97 == 0 && number > libraries * 4 / 5 + 1 {
                let _ = writeln!(text, "i:app{:04} lib0001", number - 1);
            }
            text.push('\n');
            written += 1;
        }
        number += 1;
    }
    text
}

fn synthetic_checksum(rng: &mut Rng) -> String {
    use base64::Engine as _;
    let mut digest = [0u8; 20];
    for chunk in digest.chunks_mut(8) {
        let bytes = rng.next().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    base64::engine::general_purpose::STANDARD.encode(digest)
}

// ---------------------------------------------------------------------------------------------
// The synthetic repository.
// ---------------------------------------------------------------------------------------------

/// What [`generate_repository`] wrote.
#[derive(Clone, Debug, Default)]
struct GeneratedRepository {
    packages: usize,
    installed_bytes: u64,
    apk_bytes: u64,
    files: usize,
    /// Packages nothing depends on: the image's world.
    world: Vec<String>,
}

/// What kind of package a position in the repository gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A large program with its own shared library (a toolchain, a runtime).
    Big,
    /// Hundreds of small files (locales, a standard library, time zones).
    Data,
    /// A program with configuration, a manual page and an alias.
    Tool,
    /// A shared library with its symlink and documentation.
    Library,
}

fn kind_of(position: usize) -> Kind {
    match position % 20 {
        0 => Kind::Big,
        1..=3 => Kind::Data,
        4..=8 => Kind::Tool,
        _ => Kind::Library,
    }
}

fn package_name(position: usize) -> String {
    match kind_of(position) {
        Kind::Big => format!("runtime-{position:04}"),
        Kind::Data => format!("data-{position:04}"),
        Kind::Tool => format!("tool-{position:04}"),
        Kind::Library => format!("lib{position:04}"),
    }
}

/// Generates the packages on every core, writes them and a signed index under
/// `dir/x86_64/`.
fn generate_repository(
    dir: &Path,
    key: &TestKey,
    scale: f64,
    cores: usize,
) -> BenchResult<GeneratedRepository> {
    let count = ((PACKAGES_AT_SCALE_1 * scale).round() as usize).max(8);
    let arch_dir = dir.join(ARCH);
    std::fs::create_dir_all(&arch_dir)?;
    let plans: Vec<PackagePlan> = (0..count).map(plan_package).collect();
    let mut depended = vec![false; count];
    for plan in &plans {
        for &dependency in &plan.depends {
            depended[dependency] = true;
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<BenchResult<BuiltSummary>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..cores.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(plan) = plans.get(index) else { break };
                    let result = build_package(plan, key, &arch_dir);
                    results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
                }
            });
        }
    });
    let mut summaries = Vec::with_capacity(count);
    for result in results.into_inner().unwrap_or_else(PoisonError::into_inner) {
        summaries.push(result.ok_or("a package was not built")??);
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut index_text = String::new();
    for summary in &summaries {
        index_text.push_str(&summary.index_record);
        index_text.push('\n');
    }
    let index = Repository::new(key)
        .description("securebuild benchmark repository")
        .index_archive(ARCH, &index_text)?;
    std::fs::write(arch_dir.join("APKINDEX.tar.gz"), index)?;
    Ok(GeneratedRepository {
        packages: count,
        installed_bytes: summaries.iter().map(|s| s.installed_size).sum(),
        apk_bytes: summaries.iter().map(|s| s.apk_size).sum(),
        files: summaries.iter().map(|s| s.files).sum(),
        world: (0..count)
            .filter(|&p| !depended[p])
            .map(package_name)
            .collect(),
    })
}

/// One package before it is built.
struct PackagePlan {
    position: usize,
    kind: Kind,
    depends: Vec<usize>,
}

/// Dependencies go to earlier libraries (a few per package), so every package is reachable
/// from the packages nothing depends on.
fn plan_package(position: usize) -> PackagePlan {
    let mut rng = Rng::new(0xbe7c_0000 + position as u64);
    let kind = kind_of(position);
    let libraries: Vec<usize> = (0..position)
        .filter(|&p| kind_of(p) == Kind::Library)
        .collect();
    let edges = match kind {
        Kind::Library => rng.below(3),
        Kind::Tool => 1 + rng.below(3),
        Kind::Big => 2 + rng.below(3),
        Kind::Data => 0,
    };
    let mut depends = Vec::new();
    if !libraries.is_empty() {
        for _ in 0..edges {
            depends.push(libraries[rng.below(libraries.len() as u64) as usize]);
        }
    }
    depends.sort_unstable();
    depends.dedup();
    PackagePlan {
        position,
        kind,
        depends,
    }
}

/// What the index and the report need from a built package.
struct BuiltSummary {
    name: String,
    index_record: String,
    installed_size: u64,
    apk_size: u64,
    files: usize,
}

fn build_package(plan: &PackagePlan, key: &TestKey, arch_dir: &Path) -> BenchResult<BuiltSummary> {
    let name = package_name(plan.position);
    let mut rng = Rng::new(0x0da7_a000 + plan.position as u64);
    let mut spec = PackageSpec::new(&name, format!("1.{}.0-r0", plan.position % 13))
        .builddate(BUILD_DATE)
        .description(format!("{name} benchmark package"))
        .license("Apache-2.0");
    for &dependency in &plan.depends {
        spec = spec.depend(format!("so:{}.so.1", package_name(dependency)));
    }
    let mut files = 0usize;
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_dirs = |spec: PackageSpec, path: &str| -> PackageSpec {
        let mut spec = spec;
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let parent = &path[..end + slash];
            if dirs.insert(parent.to_owned()) {
                spec = spec.dir(parent, 0o755, 0, 0);
            }
            end += slash + 1;
        }
        spec
    };
    match plan.kind {
        Kind::Library => {
            let so = format!("usr/lib/{name}.so.1.{}.0", plan.position);
            spec = add_dirs(spec, &so);
            let size = 100 * KIB + rng.below(2_100 * KIB);
            spec = spec
                .file(&so, binary_bytes(size as usize, &mut rng), 0o755, 0, 0)
                .symlink(
                    format!("usr/lib/{name}.so.1"),
                    format!("{name}.so.1.{}.0", plan.position),
                )
                .provide(format!("so:{name}.so.1=1.0"));
            files += 2;
            for doc in ["README", "CHANGES", "LICENSE"] {
                let path = format!("usr/share/doc/{name}/{doc}");
                spec = add_dirs(spec, &path);
                let size = KIB + rng.below(20 * KIB);
                spec = spec.file(path, text_bytes(size as usize, &mut rng), 0o644, 0, 0);
                files += 1;
            }
        }
        Kind::Tool => {
            let binary = format!("usr/bin/{name}");
            spec = add_dirs(spec, &binary);
            let size = 200 * KIB + rng.below(2_900 * KIB);
            spec = spec
                .file(&binary, binary_bytes(size as usize, &mut rng), 0o755, 0, 0)
                .hardlink(format!("usr/bin/{name}-alias"), binary.clone())
                .provide(format!("cmd:{name}"));
            files += 2;
            let texts = [
                format!("etc/{name}/{name}.conf"),
                format!("etc/{name}/defaults.conf"),
                format!("usr/share/man/man1/{name}.1"),
                format!("usr/share/man/man5/{name}.conf.5"),
                format!("usr/share/doc/{name}/README"),
            ];
            for path in texts {
                spec = add_dirs(spec, &path);
                let size = 512 + rng.below(16 * KIB);
                spec = spec.file(path, text_bytes(size as usize, &mut rng), 0o644, 0, 0);
                files += 1;
            }
        }
        Kind::Data => {
            let count = 300 + rng.below(600) as usize;
            let subdirs = 8 + rng.below(24) as usize;
            for file in 0..count {
                let path = format!(
                    "usr/share/{name}/d{:02}/entry-{file:04}.{}",
                    file % subdirs,
                    if file % 7 == 0 { "bin" } else { "txt" }
                );
                spec = add_dirs(spec, &path);
                let size = 128 + rng.below(7 * KIB) as usize;
                let contents = if file % 7 == 0 {
                    binary_bytes(size, &mut rng)
                } else {
                    text_bytes(size, &mut rng)
                };
                spec = spec.file(path, contents, 0o644, 0, 0);
                files += 1;
            }
        }
        Kind::Big => {
            let binary = format!("usr/lib/{name}/bin/{name}");
            let library = format!("usr/lib/{name}/lib/{name}-core.so");
            spec = add_dirs(spec, &binary);
            spec = add_dirs(spec, &library);
            spec = add_dirs(spec, &format!("usr/bin/{name}"));
            let size = 16 * 1024 * KIB + rng.below(12 * 1024 * KIB);
            spec = spec
                .file(&binary, binary_bytes(size as usize, &mut rng), 0o755, 0, 0)
                .file(
                    &library,
                    binary_bytes((2 * 1024 * KIB) as usize, &mut rng),
                    0o755,
                    0,
                    0,
                )
                .symlink(
                    format!("usr/bin/{name}"),
                    format!("../lib/{name}/bin/{name}"),
                );
            files += 3;
            for part in 0..24 {
                let path = format!("usr/lib/{name}/share/part-{part:02}.txt");
                spec = add_dirs(spec, &path);
                let size = 2 * KIB + rng.below(30 * KIB);
                spec = spec.file(path, text_bytes(size as usize, &mut rng), 0o644, 0, 0);
                files += 1;
            }
        }
    }
    let built = spec.build(key)?;
    std::fs::write(arch_dir.join(built.file_name()), built.bytes())?;
    Ok(BuiltSummary {
        name,
        index_record: built.index_record(),
        installed_size: built.installed_size(),
        apk_size: built.size(),
        files,
    })
}

// ---------------------------------------------------------------------------------------------
// Deterministic content.
// ---------------------------------------------------------------------------------------------

/// SplitMix64: fast, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }
}

const SYLLABLES: [&str; 32] = [
    "ab", "er", "in", "on", "ta", "ul", "ex", "fo", "ri", "mu", "lo", "za", "ke", "pi", "do", "ne",
    "sa", "tri", "con", "pre", "ver", "lib", "mem", "str", "init", "get", "set", "buf", "ptr",
    "len", "cfg", "io",
];

/// One of 1,024 words built from the syllables.
fn word(index: u64) -> String {
    let a = SYLLABLES[(index % 32) as usize];
    let b = SYLLABLES[((index / 32) % 32) as usize];
    if index.is_multiple_of(3) {
        format!("{a}{b}")
    } else {
        format!("{a}_{b}")
    }
}

/// Text: lines of words from a 1,024-word vocabulary (gzip shrinks it about 3x).
fn text_bytes(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut line = 0;
    while out.len() < len {
        let w = word(rng.below(1024));
        out.extend_from_slice(w.as_bytes());
        line += w.len() + 1;
        if line > 64 {
            out.push(b'\n');
            line = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// Binary-like content: random "code", symbol-table text, zero padding and repetitive
/// records, mixed so that gzip shrinks it about 2-3x, like real executables.
fn binary_bytes(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    while out.len() < len {
        let choice = rng.below(100);
        let segment = 64 + rng.below(960) as usize;
        if choice < 15 {
            // Code: incompressible.
            let mut left = segment;
            while left > 0 {
                let bytes = rng.next().to_le_bytes();
                let take = left.min(8);
                out.extend_from_slice(&bytes[..take]);
                left -= take;
            }
        } else if choice < 70 {
            // Symbol names and strings.
            let start = out.len();
            while out.len() - start < segment {
                out.extend_from_slice(word(rng.below(1024)).as_bytes());
                out.push(0);
            }
        } else if choice < 80 {
            // Alignment padding.
            out.resize(out.len() + segment, 0);
        } else {
            // Tables: 16-byte records with a counter and a few random bits.
            let base = rng.next();
            for record in 0..segment / 16 {
                let value = base.wrapping_add(record as u64 * 16);
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&((rng.next() & 0xff) as u32).to_le_bytes());
                out.extend_from_slice(&[0, 0, 0, 1]);
            }
        }
    }
    out.truncate(len);
    out
}
