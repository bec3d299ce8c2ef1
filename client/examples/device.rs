//! A device built on the SDK: publishes a temperature every second through the store-and-forward
//! buffer, acknowledges commands (`reboot` completes, anything else is rejected), follows its twin
//! (applies the desired `interval_s`, reports it back) and serves the `ping` direct method.
//!
//! ```sh
//! cargo run --example device -- DEVICE_ID KEY [HOST] [PORT] [BUFFER_DIR]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use strata_client::device::{CommandOutcome, DeviceBuilder, DeviceConfig, MethodResponse, Point};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [id, key, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: device DEVICE_ID KEY [HOST] [PORT] [BUFFER_DIR]");
    };
    let host = rest.first().map_or("127.0.0.1", String::as_str);
    let port: u16 = rest.get(1).map_or(Ok(1883), |p| p.parse())?;
    let dir = rest.get(2).map_or_else(
        || std::env::temp_dir().join(format!("strata-sdk-{id}")),
        Into::into,
    );
    let interval = Arc::new(AtomicU64::new(1));
    let config = DeviceConfig::new(id, host, port, key, dir);
    let device = DeviceBuilder::new(config)
        .on_command(|c| {
            println!("command {} {} {}", c.id, c.name, c.payload);
            match c.name.as_str() {
                "reboot" => CommandOutcome::Completed(json!({"rebooting": true})),
                other => CommandOutcome::Rejected(json!(format!("unknown command {other}"))),
            }
        })
        .on_desired({
            let interval = interval.clone();
            move |u| {
                println!("desired v{} (full: {}): {}", u.version, u.full, u.desired);
                if let Some(s) = u.desired["interval_s"].as_u64() {
                    interval.store(s.max(1), Ordering::Relaxed);
                }
            }
        })
        .on_method(|name, body| match name {
            "ping" => MethodResponse {
                status: 200,
                payload: json!({"pong": body}),
            },
            _ => MethodResponse {
                status: 404,
                payload: json!({"error": "no such method"}),
            },
        })
        .connect()?;
    let mut reported = 0;
    for i in 0u64.. {
        let temp = 20.0 + (i % 10) as f64 / 10.0;
        device.publish(&[Point::new("env").field("temperature", temp)])?;
        let every = interval.load(Ordering::Relaxed);
        if every != reported {
            device.report(&json!({"interval_s": every}))?;
            reported = every;
        }
        if i % 10 == 0 {
            println!("{:?}", device.stats());
        }
        std::thread::sleep(Duration::from_secs(every));
    }
    Ok(())
}
