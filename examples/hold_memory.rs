//! How much memory a caller can make the gateway hold: starts `demo` from a
//! given binary on loopback ports, reads its resident memory (VmRSS), sends
//! one of the attacks of issue 20 with a raw HTTP/2 client, samples the
//! gateway's memory while the attack holds, then lets go.
//!
//! ```text
//! cargo run --release --example hold_memory -- BINARY reflection
//! cargo run --release --example hold_memory -- BINARY unfinished
//! ```
//!
//! - `reflection`: a stranger (no identity) opens 64 reflection streams on
//!   one connection, each announcing a 4 MiB message and sending all of it
//!   but 16 bytes;
//! - `unfinished`: an identity no principal maps opens 8 connections × 250
//!   calls, each sending 60 KiB of a 64 KiB message.
//!
//! Prints the memory before, the peak during the hold (8 s, sampled every
//! 100 ms) and after the connections closed. Traffic goes to 127.0.0.1 only
//! and stops by itself. `docs/security.md` has the figures.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gRPC frame header announcing `len` bytes, then `sent` of them.
fn partial(len: u32, sent: usize) -> Bytes {
    let mut frame = vec![0];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.resize(5 + sent, 7);
    Bytes::from(frame)
}

type Held = Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)>;

async fn open(
    addr: SocketAddr,
    path: &str,
    identity: Option<&str>,
    streams: usize,
    message: (u32, usize),
) -> (Held, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut held = Vec::new();
    for _ in 0..streams {
        let mut request = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(identity) = identity {
            request = request
                .header("x-forwarded-client-cert", format!("URI={identity}"))
                .header("x-forwarded-for", "127.0.0.1");
        }
        let Ok(ready) = send.clone().ready().await else {
            break;
        };
        send = ready;
        let Ok((response, mut stream)) = send.send_request(request.body(()).unwrap(), false) else {
            break;
        };
        let _ = stream.send_data(partial(message.0, message.1), false);
        held.push((response, stream));
    }
    (held, task)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(binary), Some(attack)) = (args.next(), args.next()) else {
        eprintln!("usage: hold_memory BINARY reflection|unfinished");
        std::process::exit(2);
    };
    let (grpc, admin) = (free_port(), free_port());
    let mut gateway = Command::new(&binary)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{grpc}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{grpc}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the demo did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gateway.id();
    let before = rss_kib(pid);

    let mut connections = Vec::new();
    match attack.as_str() {
        "reflection" => connections.push(
            open(
                addr,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None,
                64,
                (4 << 20, (4 << 20) - 16),
            )
            .await,
        ),
        "unfinished" => {
            for _ in 0..8 {
                connections.push(
                    open(
                        addr,
                        "/ecsgateway.v1.InstanceNetworkService/ModifyInstanceNetworkSpec",
                        Some("spiffe://demo.local/sa/intruder"),
                        250,
                        (64 * 1024 - 5, 60 * 1024),
                    )
                    .await,
                );
            }
        }
        other => panic!("unknown attack {other}"),
    }
    let opened: usize = connections.iter().map(|(held, _)| held.len()).sum();
    let mut peak = 0;
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (held, task) in connections {
        drop(held);
        task.abort();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let _ = gateway.kill();
    let _ = gateway.wait();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{attack}: {opened} streams opened; RSS before {:.1} MiB, peak during the hold {:.1} MiB, after {:.1} MiB",
        mib(before),
        mib(peak),
        mib(after)
    );
}
