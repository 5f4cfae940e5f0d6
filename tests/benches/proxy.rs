//! `cargo bench -p securebuild-tests --bench proxy`: what `securebuild-proxy` costs on
//! loopback, side by side with pulling from the registry directly, in one run.
//!
//! A real `docker-registry` holds an image with a 100 MiB layer. The proxy runs in a child
//! process (this binary re-executed with [`CHILD_ARG`]) so that its peak RSS (`VmHWM`) is its
//! own. The bench measures:
//!
//! 1. blob throughput: the layer pulled whole, directly and through the proxy, alternating,
//!    best of [`THROUGHPUT_ROUNDS`] each (target: the proxy ≥ 90 % of direct);
//! 2. manifest latency: [`MANIFEST_REQUESTS`] `GET`s of the manifest by digest on one
//!    keep-alive connection, directly and through the proxy (served from its cache), median
//!    of each (target: ≤ 1 ms added);
//! 3. [`CONCURRENT_PULLS`] concurrent pulls of the layer through the proxy, with the proxy's
//!    peak RSS (target: ≤ 128 MiB);
//! 4. blob throughput with the registry across a link: the same pulls, directly and through
//!    the proxy, with a relay in front of the registry that passes at most the rate of each of
//!    [`LINKS`] (1 and 10 Gbit/s), as when the registry is another machine. On loopback alone, every path
//!    shares the machine's cores, and the proxy's path carries each byte over loopback twice
//!    and hashes it; across a link, the link is what a pull waits for.
//!
//! With measure 1 it reports the CPU time the registry, the proxy and the client spend per
//! pull (from each process's `schedstat`, averaged over the rounds), how many cores the
//! fastest direct pull keeps busy, and what hashing the layer costs one core. From those
//! follows a ceiling that no hashing proxy can pass on this machine: that pull's CPU plus the
//! hash, spread over every core, against that pull's time.
//!
//! It prints a table and never asserts. `SECUREBUILD_BENCH_SCALE` (default 1.0) scales the
//! layer size and the number of concurrent pulls for quick runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::error::Error;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use securebuild_proxy::routes::{Route, RouteSpec, RouteTable};
use securebuild_proxy::serve::{Proxy, ProxySettings};
use securebuild_proxy::server::Server;
use securebuild_registry::auth::DockerConfig;
use securebuild_registry::{
    OCI_MANIFEST_MEDIA_TYPE, Registry, RegistryOptions, parse_reference, sha256_digest,
};
use securebuild_tests::registry::{TestRegistry, push_blob_image};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Re-executes this binary as the proxy: `--proxy-child ROUTE`.
const CHILD_ARG: &str = "--proxy-child";
const LAYER_BYTES: f64 = 100.0 * 1024.0 * 1024.0;
const THROUGHPUT_ROUNDS: usize = 5;
const MANIFEST_REQUESTS: usize = 2000;
const CONCURRENT_PULLS: f64 = 200.0;
const MIB: f64 = 1024.0 * 1024.0;
/// The links in front of the registry in measure 4: a name and MiB/s.
const LINKS: [(&str, f64); 2] = [("1 Gbit/s", 119.2), ("10 Gbit/s", 1192.0)];
/// How much the link relay moves at once.
const LINK_CHUNK: usize = 256 << 10;
/// How long a connection may stay idle before the link forgets its pace (no saved-up burst).
const LINK_IDLE: Duration = Duration::from_millis(50);
/// How far ahead of the link's rate the relay may be before it waits.
const LINK_SLACK: Duration = Duration::from_millis(4);

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(position) = args.iter().position(|arg| arg == CHILD_ARG) {
        let routes = args[position + 1..].to_vec();
        if routes.is_empty() {
            return Err("missing route".into());
        }
        return runtime.block_on(run_proxy(&routes));
    }
    runtime.block_on(run_bench())
}

/// The child: serves `routes` on a free port, prints the port, stops when stdin closes.
async fn run_proxy(routes: &[String]) -> BenchResult<()> {
    let mut parsed = Vec::new();
    for route in routes {
        let spec: RouteSpec = route.parse()?;
        parsed.push(Route::parse(&spec)?);
    }
    let routes = RouteTable::new(parsed);
    let registry = Registry::new(RegistryOptions {
        retries: 0,
        ..RegistryOptions::default()
    })?;
    let settings = ProxySettings {
        manifest_cache_bytes: 64 << 20,
        tag_ttl: Duration::from_secs(5),
        upstream_concurrency: 256,
        redirect_blobs: false,
        request_timeout: Duration::from_secs(600),
        https: false,
    };
    let server = Server::bind(
        "127.0.0.1:0".parse()?,
        None,
        Proxy::new(routes, registry, &settings),
        Duration::from_secs(600),
        Duration::from_secs(1),
    )
    .await?;
    println!("{}", server.local_addr()?.port());
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read as _;
            let mut buffer = [0u8; 64];
            while std::io::stdin().read(&mut buffer).unwrap_or(0) > 0 {}
        })
        .await;
    };
    server.run(stdin_closed).await?;
    Ok(())
}

fn scale() -> f64 {
    std::env::var("SECUREBUILD_BENCH_SCALE")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1.0)
}

async fn run_bench() -> BenchResult<()> {
    let scale = scale();
    let layer_size = (LAYER_BYTES * scale) as usize;
    let pulls = ((CONCURRENT_PULLS * scale) as usize).max(1);
    let upstream = TestRegistry::start()?;
    let repository = parse_reference(&format!("{}/bench/app", upstream.host()))?;
    let registry = Registry::new(RegistryOptions {
        docker_config: DockerConfig::empty(),
        ..RegistryOptions::default()
    })?;
    let layer: Vec<u8> = (0..layer_size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // What hashing the layer costs one core, as the proxy does while it streams.
    let mut hash_seconds = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        std::hint::black_box(sha256_digest(&layer));
        hash_seconds = hash_seconds.min(started.elapsed().as_secs_f64());
    }
    let (manifest_digest, layer_digest) = push_blob_image(&registry, &repository, layer).await?;

    let mut links = Vec::new();
    let mut child_args = vec![
        CHILD_ARG.to_owned(),
        format!("app={}/bench/app", upstream.host()),
    ];
    for (index, (name, mib_s)) in LINKS.iter().enumerate() {
        let link = start_link(upstream.host().parse()?, *mib_s).await?;
        child_args.push(format!("remote{index}={link}/bench/app"));
        links.push((
            *name,
            link,
            format!("/v2/remote{index}/blobs/{layer_digest}"),
        ));
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(&child_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut port)?;
    let proxy = format!("127.0.0.1:{}", port.trim());
    let direct = upstream.host();
    let direct_blob = format!("/v2/bench/app/blobs/{layer_digest}");
    let proxy_blob = format!("/v2/app/blobs/{layer_digest}");

    // 1. Throughput, alternating, with the CPU time each process spends on each kind of pull.
    let processes = [upstream.pid(), child.id(), std::process::id()];
    let (mut best_direct, mut best_proxy) = (0.0_f64, 0.0_f64);
    let (mut cpu_direct, mut cpu_proxy) = ([0.0_f64; 3], [0.0_f64; 3]);
    // The CPU time of the registry and the client in the fastest direct round.
    let mut best_direct_cpu = 0.0;
    for _ in 0..THROUGHPUT_ROUNDS {
        let before = cpu_seconds(&processes)?;
        let rate = pull_rate(&direct, &direct_blob).await?;
        let middle = cpu_seconds(&processes)?;
        best_proxy = best_proxy.max(pull_rate(&proxy, &proxy_blob).await?);
        let after = cpu_seconds(&processes)?;
        let direct_round: [f64; 3] = std::array::from_fn(|i| middle[i] - before[i]);
        if rate > best_direct {
            best_direct = rate;
            best_direct_cpu = direct_round[0] + direct_round[2];
        }
        for index in 0..3 {
            cpu_direct[index] += direct_round[index];
            cpu_proxy[index] += after[index] - middle[index];
        }
    }
    let rounds = THROUGHPUT_ROUNDS as f64;
    let (cpu_direct, cpu_proxy) = (
        cpu_direct.map(|s| s / rounds),
        cpu_proxy.map(|s| s / rounds),
    );

    // 2. Manifest latency by digest.
    let direct_median = manifest_median(
        &direct,
        &format!("/v2/bench/app/manifests/{manifest_digest}"),
    )
    .await?;
    let proxy_median =
        manifest_median(&proxy, &format!("/v2/app/manifests/{manifest_digest}")).await?;

    // 3. Concurrent pulls.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..pulls {
        let (proxy, path) = (proxy.clone(), proxy_blob.clone());
        tasks.spawn(async move { pull(&proxy, &path).await });
    }
    let mut received = 0u64;
    while let Some(result) = tasks.join_next().await {
        received += result??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let peak = peak_rss(child.id())?;

    // 4. Throughput with the registry across a link, alternating.
    let mut across_links = Vec::new();
    for (name, link, remote_blob) in &links {
        let link_host = link.to_string();
        let (mut best_link_direct, mut best_link_proxy) = (0.0_f64, 0.0_f64);
        for _ in 0..THROUGHPUT_ROUNDS {
            best_link_direct = best_link_direct.max(pull_rate(&link_host, &direct_blob).await?);
            best_link_proxy = best_link_proxy.max(pull_rate(&proxy, remote_blob).await?);
        }
        across_links.push((*name, best_link_direct, best_link_proxy));
    }

    drop(child.stdin.take());
    let _ = child.wait();

    let layer_mib = layer_size as f64 / MIB;
    println!("securebuild-proxy on loopback, layer {layer_mib:.0} MiB");
    println!(
        "{:<44} {:>12} {:>12} {:>10} {:>10}",
        "measure", "direct", "proxy", "result", "target"
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>9.1}% {:>10}",
        "blob throughput (MiB/s, best of 5)",
        best_direct,
        best_proxy,
        100.0 * best_proxy / best_direct,
        ">= 90%"
    );
    println!(
        "{:<44} {:>12.3} {:>12.3} {:>9.3} {:>10}",
        "manifest by digest, median (ms); added",
        direct_median * 1e3,
        proxy_median * 1e3,
        (proxy_median - direct_median) * 1e3,
        "<= 1 ms"
    );
    println!(
        "{:<44} {:>12} {:>12.0} {:>9.1}M {:>10}",
        format!("{pulls} concurrent pulls: MiB/s; proxy peak RSS"),
        "-",
        received as f64 / MIB / elapsed,
        peak as f64 / MIB,
        "<= 128 MiB"
    );
    // The CPU budget of the fastest direct pull, which the target compares with: it keeps
    // this many cores busy, and a proxy that did nothing but hash would add the hash's time
    // to the same work, shared by the same cores.
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let direct_wall = layer_mib / best_direct;
    let hashing_ceiling = direct_wall / direct_wall.max((best_direct_cpu + hash_seconds) / cores);
    println!(
        "{:<44} {:>12} {:>12} {:>10} {:>10}",
        "CPU per pull (ms): registry / proxy / client",
        format!(
            "{:.0} / - / {:.0}",
            cpu_direct[0] * 1e3,
            cpu_direct[2] * 1e3
        ),
        format!(
            "{:.0} / {:.0} / {:.0}",
            cpu_proxy[0] * 1e3,
            cpu_proxy[1] * 1e3,
            cpu_proxy[2] * 1e3
        ),
        "",
        ""
    );
    println!(
        "{:<44} {:>12.2} {:>12} {:>10} {:>10}",
        format!("cores busy during the best direct pull (of {cores:.0})"),
        best_direct_cpu / direct_wall,
        "",
        "",
        ""
    );
    println!(
        "{:<44} {:>12} {:>12.0} {:>9.1}% {:>10}",
        "SHA-256 of the layer on one core (ms); ceiling",
        "",
        hash_seconds * 1e3,
        100.0 * hashing_ceiling,
        ""
    );
    for (name, best_link_direct, best_link_proxy) in across_links {
        println!(
            "{:<44} {:>12.0} {:>12.0} {:>9.1}% {:>10}",
            format!("blob throughput, registry across {name}"),
            best_link_direct,
            best_link_proxy,
            100.0 * best_link_proxy / best_link_direct,
            ">= 90%"
        );
    }
    if received != (pulls * layer_size) as u64 {
        println!(
            "warning: received {received} bytes, expected {}",
            pulls * layer_size
        );
    }
    Ok(())
}

/// Sends `GET path` on `stream` and reads the whole answer; returns the body length.
async fn exchange(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    buffer: &mut [u8],
) -> BenchResult<u64> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {OCI_MANIFEST_MEDIA_TYPE}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err("connection closed".into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("unexpected answer: {head}").into());
    }
    let length: u64 = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .ok_or("no content-length")?
        .trim()
        .parse()?;
    let mut remaining = length;
    while remaining > 0 {
        let want = buffer.len().min(remaining as usize);
        let read = stream.read(&mut buffer[..want]).await?;
        if read == 0 {
            return Err("body cut short".into());
        }
        remaining -= read as u64;
    }
    Ok(length)
}

/// Pulls a blob once on a fresh connection; returns its size.
async fn pull(host: &str, path: &str) -> BenchResult<u64> {
    let mut stream = TcpStream::connect(host).await?;
    let mut buffer = vec![0u8; 256 << 10];
    exchange(&mut stream, host, path, &mut buffer).await
}

/// MiB/s of one pull.
async fn pull_rate(host: &str, path: &str) -> BenchResult<f64> {
    let started = Instant::now();
    let bytes = pull(host, path).await?;
    Ok(bytes as f64 / MIB / started.elapsed().as_secs_f64())
}

/// Median seconds of [`MANIFEST_REQUESTS`] sequential `GET`s on one connection (after a warm-up).
async fn manifest_median(host: &str, path: &str) -> BenchResult<f64> {
    let mut stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let mut buffer = vec![0u8; 64 << 10];
    for _ in 0..50 {
        exchange(&mut stream, host, path, &mut buffer).await?;
    }
    let mut times = Vec::with_capacity(MANIFEST_REQUESTS);
    for _ in 0..MANIFEST_REQUESTS {
        let started = Instant::now();
        exchange(&mut stream, host, path, &mut buffer).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// CPU seconds used so far by each process (all its threads), from `schedstat`.
fn cpu_seconds(pids: &[u32; 3]) -> BenchResult<[f64; 3]> {
    let mut seconds = [0.0; 3];
    for (index, pid) in pids.iter().enumerate() {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let path = task?.path().join("schedstat");
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let ns: f64 = text
                .split_whitespace()
                .next()
                .ok_or("empty schedstat")?
                .parse()?;
            seconds[index] += ns / 1e9;
        }
    }
    Ok(seconds)
}

/// Peak resident set size (`VmHWM`) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> BenchResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .ok_or("no VmHWM")?;
    let kib: u64 = line.split_whitespace().nth(1).ok_or("no value")?.parse()?;
    Ok(kib * 1024)
}

/// A relay in front of `upstream` that passes the upstream's answers at most at `mib_s` MiB/s
/// per connection (requests go through as they come): the registry as another machine behind
/// a link. Returns its address.
async fn start_link(
    upstream: std::net::SocketAddr,
    mib_s: f64,
) -> BenchResult<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                });
                let mut buffer = vec![0u8; LINK_CHUNK];
                // When the link is free again.
                let mut free_at = tokio::time::Instant::now();
                loop {
                    let read = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    let on_the_wire = Duration::from_secs_f64(read as f64 / (mib_s * MIB));
                    let now = tokio::time::Instant::now();
                    // A connection idle for a while starts afresh; a late timer is made up.
                    if now > free_at + LINK_IDLE {
                        free_at = now;
                    }
                    free_at += on_the_wire;
                    // The timer ticks in milliseconds: wait only once ahead by a few of them.
                    if free_at > now + LINK_SLACK {
                        tokio::time::sleep_until(free_at).await;
                    }
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
                let _ = client_write.shutdown().await;
                requests.abort();
            });
        }
    });
    Ok(addr)
}
