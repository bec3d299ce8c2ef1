//! Zero-touch provisioning: derives the device key from an enrollment group key, registers the
//! device, connects with the returned endpoint and publishes one point.
//!
//! ```sh
//! cargo run --example provision -- http://127.0.0.1:8086 ENROLLMENT DEVICE_ID GROUP_KEY
//! ```

use std::time::Duration;

use strata_client::device::{Device, DeviceConfig, Point, provision};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [http, enrollment, id, group_key] = args.as_slice() else {
        anyhow::bail!("usage: provision HTTP_BASE ENROLLMENT DEVICE_ID GROUP_KEY");
    };
    let p = provision(http, enrollment, id, group_key, None)?;
    println!(
        "provisioned {} (created: {}), MQTT at {}",
        p.device_id, p.created, p.mqtt
    );
    let dir = std::env::temp_dir().join(format!("strata-sdk-{id}"));
    let device = Device::connect(DeviceConfig::from_provisioned(&p, dir)?)?;
    device.publish(&[Point::new("env").field("hello", 1.0)])?;
    device.flush(Duration::from_secs(30))?;
    println!("published and acknowledged");
    Ok(())
}
