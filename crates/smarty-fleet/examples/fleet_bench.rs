//! The parts of `bench/fleet.sh` that talk to NATS (no decoding, no database):
//!
//! ```text
//! fleet_bench consume URL COUNT [BATCH [PARTITIONS]]
//!                                         pull and acknowledge COUNT frames of SMARTY_RAW with
//!                                         ephemeral consumers, one per partition, as workers do
//!                                         (a fetch of BATCH, then an ack per message); prints
//!                                         frames/s
//! fleet_bench drained URL COUNT [TIMEOUT_S] wait until the stream's consumers acknowledged COUNT
//!                                         frames and hold none pending; prints the seconds waited
//! fleet_bench stream URL REPLICAS         create (or check) SMARTY_RAW with REPLICAS replicas
//! fleet_bench count URL                   the frames the stream holds
//! fleet_bench rmconsumers URL             remove every consumer of the stream (between runs)
//! fleet_bench leader URL                  the server leading the stream, and its replicas
//! ```
//!
//! Run with `cargo run --release -p smarty-fleet --example fleet_bench -- …`.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use smarty_fleet::stream::{self, StreamConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}").into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or_default();
    let url: String = arg(&args, 1, "URL")?;
    let client = smarty_fleet::nats::connect(&url, "fleet_bench").await?;
    let js = jetstream::new(client);
    match command {
        "consume" => {
            let count: u64 = arg(&args, 2, "COUNT")?;
            let batch: usize = args.get(3).map_or(Ok(2000), |_| arg(&args, 3, "BATCH"))?;
            let partitions: u32 = args.get(4).map_or(Ok(1), |_| arg(&args, 4, "PARTITIONS"))?;
            consume(&js, count, batch, partitions).await
        }
        "drained" => {
            let count: u64 = arg(&args, 2, "COUNT")?;
            let timeout: u64 = args
                .get(3)
                .map_or(Ok(600), |_| arg(&args, 3, "TIMEOUT_S"))?;
            drained(&js, count, Duration::from_secs(timeout)).await
        }
        "stream" => {
            let mut config = StreamConfig::default();
            config.replicas = arg(&args, 2, "REPLICAS")?;
            let ensured = stream::ensure(&js, &config).await?;
            println!(
                "{} replicas {}",
                ensured.info().config.name,
                ensured.info().config.num_replicas
            );
            Ok(())
        }
        "count" => {
            let mut handle = js.get_stream(stream::DEFAULT_NAME).await?;
            println!("{}", handle.info().await?.state.messages);
            Ok(())
        }
        "leader" => {
            let mut handle = js.get_stream(stream::DEFAULT_NAME).await?;
            let info = handle.info().await?;
            let cluster = info.cluster.clone().ok_or("no cluster information")?;
            let replicas: Vec<String> = cluster
                .replicas
                .iter()
                .map(|r| format!("{}{}", r.name, if r.current { "" } else { "(behind)" }))
                .collect();
            println!(
                "{} {}",
                cluster.leader.unwrap_or_default(),
                replicas.join(",")
            );
            Ok(())
        }
        "rmconsumers" => {
            let stream = js.get_stream(stream::DEFAULT_NAME).await?;
            let names: Vec<String> = stream
                .consumer_names()
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<std::result::Result<_, _>>()?;
            for name in names {
                stream.delete_consumer(&name).await?;
            }
            Ok(())
        }
        _ => Err("usage: fleet_bench consume|drained|stream|count|rmconsumers URL …".into()),
    }
}

/// Pulls and acknowledges `count` frames as a worker does, with no decoding and no store.
async fn consume(js: &jetstream::Context, count: u64, batch: usize, partitions: u32) -> Result<()> {
    let stream = js.get_stream(stream::DEFAULT_NAME).await?;
    // One consumer per partition, as the workers have, all consumed at once.
    let filters: Vec<String> = if partitions <= 1 {
        vec![String::new()]
    } else {
        (0..partitions)
            .map(smarty_fleet::subject::partition_filter)
            .collect()
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for filter in filters {
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: i64::try_from(batch * 4)?,
                inactive_threshold: Duration::from_secs(60),
                filter_subject: filter,
                ..Default::default()
            })
            .await?;
        tasks.spawn(async move {
            let mut taken = 0u64;
            let mut bytes = 0u64;
            loop {
                let mut messages = consumer
                    .fetch()
                    .max_messages(batch)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await?;
                let mut held = Vec::with_capacity(batch);
                while let Some(message) = messages.next().await {
                    let message = message?;
                    bytes += message.payload.len() as u64;
                    held.push(message);
                }
                if held.is_empty() {
                    // This partition is drained (the stream was filled before).
                    let info = consumer.clone().info().await?.clone();
                    if info.num_pending == 0 && info.num_ack_pending == 0 {
                        return Ok::<_, async_nats::Error>((taken, bytes));
                    }
                }
                for message in &held {
                    message.ack().await?;
                }
                taken += held.len() as u64;
            }
        });
    }
    let (mut taken, mut bytes) = (0u64, 0u64);
    while let Some(done) = tasks.join_next().await {
        let (t, b) = done?.map_err(|e| e.to_string())?;
        taken += t;
        bytes += b;
    }
    let seconds = started.elapsed().as_secs_f64();
    if taken < count {
        return Err(format!("consumed {taken} frames, not {count}").into());
    }
    println!(
        "consume: {taken} frames ({:.0} MB) in {seconds:.2} s = {:.0} frames/s",
        bytes as f64 / 1e6,
        taken as f64 / seconds
    );
    Ok(())
}

/// Waits until the stream's consumers acknowledged `count` frames in all and hold none
/// pending; prints the seconds waited.
async fn drained(js: &jetstream::Context, count: u64, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let stream = js.get_stream(stream::DEFAULT_NAME).await?;
    loop {
        let mut acked = 0u64;
        let mut pending = 0u64;
        let mut consumers = stream.consumers();
        let mut any = false;
        while let Some(info) = consumers.next().await {
            let info = info?;
            any = true;
            acked += info.ack_floor.consumer_sequence;
            pending += info.num_pending + info.num_ack_pending as u64;
        }
        if any && acked >= count && pending == 0 {
            println!("{:.3}", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "not drained within {timeout:?}: {acked} acknowledged, {pending} pending"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
