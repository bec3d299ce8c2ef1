//! Registry benches: warm device authentication (µs per check), bulk registration of 100,000
//! devices in one call (s), and "all devices under building X" with 100,000 devices spread
//! over 1,000 buildings (ms). Criterion measures the two fast paths; the bulk registration is
//! timed once (it is the setup of the topology bench) and printed.
//!
//! Run with `cargo bench -p strata-benches --bench registry`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use strata_registry::{
    BulkItemResult, DeviceRegistration, EntitySpec, NodeRef, Registry, RelationKind, Relationship,
};

const DEVICES: usize = 100_000;
const BUILDINGS: usize = 1_000;

fn device_id(i: usize) -> String {
    format!("dev-{i:06}")
}

fn building_id(b: usize) -> String {
    format!("building-{b:04}")
}

/// Registers `DEVICES` devices in one bulk call; returns the wall time and one (id, key).
fn bulk_register(reg: &Registry) -> (Duration, String, String) {
    let reqs: Vec<DeviceRegistration> = (0..DEVICES)
        .map(|i| {
            let mut r = DeviceRegistration::new(device_id(i));
            r.model = Some("thermo-v1".into());
            r.attributes
                .insert("building".into(), building_id(i % BUILDINGS).into());
            r
        })
        .collect();
    let start = Instant::now();
    let results = reg.bulk_register("bench", reqs).expect("bulk register");
    let elapsed = start.elapsed();
    let created = results
        .iter()
        .filter(|r| matches!(r, BulkItemResult::Created(_)))
        .count();
    assert_eq!(created, DEVICES, "every device created");
    let (id, key) = match &results[DEVICES / 2] {
        BulkItemResult::Created(d) => (d.device.id.clone(), d.primary_key.clone()),
        other => panic!("unexpected {other:?}"),
    };
    (elapsed, id, key)
}

/// One site containing `BUILDINGS` buildings, each containing `DEVICES / BUILDINGS` devices.
fn build_topology(reg: &Registry) -> Duration {
    let start = Instant::now();
    let spec = |id: String, kind: &str| EntitySpec {
        id,
        kind: kind.into(),
        ..Default::default()
    };
    reg.create_entity("bench", spec("site".into(), "site"))
        .expect("site");
    let mut rels = Vec::with_capacity(DEVICES + BUILDINGS);
    for b in 0..BUILDINGS {
        reg.create_entity("bench", spec(building_id(b), "building"))
            .expect("building");
        rels.push(Relationship {
            source: NodeRef::Entity("site".into()),
            kind: RelationKind::Contains,
            target: NodeRef::Entity(building_id(b)),
        });
    }
    for i in 0..DEVICES {
        rels.push(Relationship {
            source: NodeRef::Entity(building_id(i % BUILDINGS)),
            kind: RelationKind::Contains,
            target: NodeRef::Device(device_id(i)),
        });
    }
    for chunk in rels.chunks(strata_registry::MAX_BULK_ITEMS) {
        reg.add_relationships("bench", chunk.to_vec())
            .expect("relationships");
    }
    start.elapsed()
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::open_in_dir(dir.path()).expect("open registry");

    let (bulk, id, key) = bulk_register(&reg);
    let topo = build_topology(&reg);
    let reopen_start = Instant::now();
    drop(reg);
    let reg = Registry::open_in_dir(dir.path()).expect("reopen registry");
    let reopen = reopen_start.elapsed();

    reg.authenticate_device(&id, &key).expect("auth");
    c.bench_function("registry/authenticate_device_warm", |b| {
        b.iter(|| reg.authenticate_device(black_box(&id), black_box(&key)))
    });
    let target = building_id(BUILDINGS / 2);
    assert_eq!(
        reg.devices_under(&target).expect("under").len(),
        DEVICES / BUILDINGS
    );
    c.bench_function("registry/devices_under_building_100k_in_1k", |b| {
        b.iter(|| reg.devices_under(black_box(&target)))
    });
    c.bench_function("registry/devices_under_site_all_100k", |b| {
        b.iter(|| reg.devices_under(black_box("site")))
    });
    c.final_summary();

    let snap_start = Instant::now();
    let rows = reg.devices_snapshot().expect("snapshot").len();
    let snap = snap_start.elapsed();
    println!("\nregistry one-shot timings ({DEVICES} devices, {BUILDINGS} buildings)");
    println!(
        "bulk_register {DEVICES} devices, one call: {:.2} s",
        bulk.as_secs_f64()
    );
    println!(
        "topology import (1,001 entities + {} relationships): {:.2} s",
        DEVICES + BUILDINGS,
        topo.as_secs_f64()
    );
    println!(
        "reopen (index rebuild): {:.0} ms",
        reopen.as_secs_f64() * 1e3
    );
    println!(
        "devices_snapshot ({rows} rows): {:.0} ms",
        snap.as_secs_f64() * 1e3
    );
}
