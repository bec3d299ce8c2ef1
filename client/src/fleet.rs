//! A deterministic truck-fleet telemetry generator (in the spirit of the TSBS IoT use case).
//!
//! Every truck reports every `interval` two points: `readings` (latitude, longitude, elevation,
//! velocity, heading, grade, fuel_consumption — floats with 1 to 5 decimals, moving as slow random
//! walks) and `diagnostics` (fuel_state, current_load, integer status), tagged with name, fleet,
//! driver, model and device_version. About `missing_rate` of the points are never sent, and now and
//! then a truck goes offline, buffers its points and delivers them late — after its live points, so
//! out of order — when it reconnects. Each truck has its own RNG seeded from `(seed, truck id)`, so its data does not
//! depend on how trucks are split between generators.

use std::io::Write as _;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::lineproto::Counts;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Number of trucks.
    pub trucks: usize,
    /// Timestamp (ns) of the first tick.
    pub start_ns: i64,
    /// Simulated time span.
    pub duration: Duration,
    /// Time between two reports of a truck.
    pub interval: Duration,
    /// RNG seed.
    pub seed: u64,
    /// Probability that a point is never sent.
    pub missing_rate: f64,
    /// Per-tick probability that an online truck goes offline (and later delivers late points).
    pub offline_rate: f64,
    /// Longest offline spell, in ticks.
    pub max_offline_ticks: u32,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            trucks: 100,
            start_ns: 1_704_067_200_000_000_000, // 2024-01-01T00:00:00Z
            duration: Duration::from_secs(3600),
            interval: Duration::from_secs(10),
            seed: 1,
            missing_rate: 0.01,
            offline_rate: 0.002,
            max_offline_ticks: 60,
        }
    }
}

impl FleetConfig {
    /// Number of ticks in the simulated span.
    pub fn ticks(&self) -> u64 {
        let interval = self.interval.as_nanos().max(1);
        u64::try_from(self.duration.as_nanos() / interval).unwrap_or(u64::MAX)
    }

    /// Timestamp of tick `t`, saturating at the end of the i64 range.
    fn time_of(&self, t: u64) -> i64 {
        let offset = i128::from(t) * self.interval.as_nanos() as i128;
        i64::try_from(i128::from(self.start_ns) + offset).unwrap_or(i64::MAX)
    }
}

const FLEETS: [&str; 5] = ["East", "West", "North", "South", "Central"];
const DRIVERS: [&str; 8] = [
    "Albert", "Derek", "Trish", "Rodney", "Seth", "Andy", "Maria", "Yusuf",
];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];
const VERSIONS: [&str; 3] = ["v1.0", "v1.5", "v2.3"];

/// One simulated truck: its tags, its state (integers in units of the last printed decimal) and
/// its offline backlog.
#[derive(Debug)]
pub struct Truck {
    tags: String,
    rng: StdRng,
    lat: i64,       // 1e-5 degrees
    lon: i64,       // 1e-5 degrees
    elevation: i64, // 0.1 m
    velocity: i64,  // 0.1 km/h
    heading: i64,   // 0.01 degrees
    grade: i64,     // 0.01 %
    fuel_use: i64,  // 0.01 l/100 km
    fuel: i64,      // 0.001 of the tank
    load: i64,      // 0.1 kg
    capacity: i64,  // 0.1 kg
    status: i64,
    offline_left: u32,
    backlog: Vec<u8>,
    backlog_counts: Counts,
}

impl Truck {
    /// Truck number `id` with its RNG derived from `seed`.
    pub fn new(id: usize, seed: u64) -> Truck {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let pick = |rng: &mut StdRng, list: &[&str]| list[rng.gen_range(0..list.len())].to_owned();
        let tags = format!(
            "name=truck_{id},fleet={},driver={},model={},device_version={}",
            pick(&mut rng, &FLEETS),
            pick(&mut rng, &DRIVERS),
            pick(&mut rng, &MODELS),
            pick(&mut rng, &VERSIONS)
        );
        let capacity = [15_000, 20_000, 50_000][rng.gen_range(0..3)] * 10;
        Truck {
            tags,
            lat: rng.gen_range(3_000_000..6_000_000),
            lon: rng.gen_range(-10_000_000..10_000_000),
            elevation: rng.gen_range(0..5_000),
            velocity: rng.gen_range(0..900),
            heading: rng.gen_range(0..36_000),
            grade: rng.gen_range(-300..300),
            fuel_use: rng.gen_range(1_500..4_000),
            fuel: rng.gen_range(300..=1_000),
            load: rng.gen_range(0..capacity),
            capacity,
            status: 0,
            offline_left: 0,
            backlog: Vec::new(),
            backlog_counts: Counts::default(),
            rng,
        }
    }

    /// Advances one tick at `time_ns` and appends what the truck delivers now: the live points, then
    /// (after an offline spell) the buffered older ones, so each series sees out-of-order timestamps.
    pub fn step(&mut self, time_ns: i64, cfg: &FleetConfig, out: &mut Vec<u8>) -> Counts {
        self.walk();
        let mut lines = Vec::with_capacity(512);
        let mut counts = Counts::default();
        if !self.rng.gen_bool(cfg.missing_rate) {
            counts = add(counts, self.readings(time_ns, &mut lines));
        }
        if !self.rng.gen_bool(cfg.missing_rate) {
            counts = add(counts, self.diagnostics(time_ns, &mut lines));
        }
        if self.offline_left == 0 && self.rng.gen_bool(cfg.offline_rate) {
            self.offline_left = self.rng.gen_range(1..=cfg.max_offline_ticks.max(1));
        }
        if self.offline_left > 0 {
            self.offline_left -= 1;
            self.backlog.extend_from_slice(&lines);
            self.backlog_counts = add(self.backlog_counts, counts);
            return Counts::default();
        }
        out.extend_from_slice(&lines);
        add(counts, self.drain_backlog(out))
    }

    /// Appends (and forgets) everything buffered while offline.
    pub fn drain_backlog(&mut self, out: &mut Vec<u8>) -> Counts {
        out.append(&mut self.backlog);
        std::mem::take(&mut self.backlog_counts)
    }

    fn walk(&mut self) {
        let r = &mut self.rng;
        self.lat = (self.lat + r.gen_range(-40..=40)).clamp(-8_900_000, 8_900_000);
        self.lon = (self.lon + r.gen_range(-40..=40)).clamp(-17_900_000, 17_900_000);
        self.elevation = (self.elevation + r.gen_range(-5..=5)).clamp(0, 40_000);
        self.velocity = (self.velocity + r.gen_range(-25..=25)).clamp(0, 1_200);
        self.heading = (self.heading + r.gen_range(-500..=500)).rem_euclid(36_000);
        self.grade = (self.grade + r.gen_range(-20..=20)).clamp(-1_500, 1_500);
        self.fuel_use = (self.fuel_use + r.gen_range(-30..=30)).clamp(500, 6_000);
        self.fuel -= r.gen_range(0..=2);
        if self.fuel < 50 {
            self.fuel = 1_000;
        }
        self.load = (self.load + r.gen_range(-500..=500)).clamp(0, self.capacity);
        self.status = if r.gen_bool(0.03) {
            r.gen_range(1..=5)
        } else {
            0
        };
    }

    fn readings(&self, t: i64, out: &mut Vec<u8>) -> Counts {
        out.extend_from_slice(b"readings,");
        out.extend_from_slice(self.tags.as_bytes());
        field(out, b" latitude=", self.lat, 5);
        field(out, b",longitude=", self.lon, 5);
        field(out, b",elevation=", self.elevation, 1);
        field(out, b",velocity=", self.velocity, 1);
        field(out, b",heading=", self.heading, 2);
        field(out, b",grade=", self.grade, 2);
        field(out, b",fuel_consumption=", self.fuel_use, 2);
        let _ = writeln!(out, " {t}");
        Counts { rows: 1, values: 7 }
    }

    fn diagnostics(&self, t: i64, out: &mut Vec<u8>) -> Counts {
        out.extend_from_slice(b"diagnostics,");
        out.extend_from_slice(self.tags.as_bytes());
        field(out, b" fuel_state=", self.fuel, 3);
        field(out, b",current_load=", self.load, 1);
        let _ = writeln!(out, ",status={}i {t}", self.status);
        Counts { rows: 1, values: 3 }
    }
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        rows: a.rows + b.rows,
        values: a.values + b.values,
    }
}

/// Appends `prefix` and `scaled / 10^decimals` printed with exactly `decimals` decimals.
fn field(out: &mut Vec<u8>, prefix: &[u8], scaled: i64, decimals: u32) {
    out.extend_from_slice(prefix);
    let unit = 10i64.pow(decimals);
    let sign = if scaled < 0 { "-" } else { "" };
    let abs = scaled.unsigned_abs();
    let unit = unit.unsigned_abs();
    let _ = write!(
        out,
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = decimals as usize
    );
}

/// Generates a fleet's line protocol in batches, tick by tick (within a tick, truck by truck).
#[derive(Debug)]
pub struct FleetGenerator {
    cfg: FleetConfig,
    trucks: Vec<Truck>,
    tick: u64,
    next_truck: usize,
    drained: bool,
}

impl FleetGenerator {
    /// A generator for every truck of the fleet.
    pub fn new(cfg: &FleetConfig) -> Self {
        Self::partition(cfg, 0, 1)
    }

    /// A generator for the trucks whose id is `part` modulo `parts` (for parallel loaders).
    pub fn partition(cfg: &FleetConfig, part: usize, parts: usize) -> Self {
        let parts = parts.max(1);
        let trucks = (0..cfg.trucks)
            .filter(|id| id % parts == part)
            .map(|id| Truck::new(id, cfg.seed))
            .collect();
        FleetGenerator {
            cfg: cfg.clone(),
            trucks,
            tick: 0,
            next_truck: 0,
            drained: false,
        }
    }

    /// Appends about `max_lines` lines (whole truck reports, so possibly a few more) to `out`.
    /// Returns zero rows once the simulated span is over and every backlog has been delivered.
    pub fn next_batch(&mut self, max_lines: usize, out: &mut Vec<u8>) -> Counts {
        let mut total = Counts::default();
        let ticks = self.cfg.ticks();
        while total.rows < max_lines as u64 && self.tick < ticks && !self.trucks.is_empty() {
            let t = self.cfg.time_of(self.tick);
            total = add(total, self.trucks[self.next_truck].step(t, &self.cfg, out));
            self.next_truck += 1;
            if self.next_truck == self.trucks.len() {
                self.next_truck = 0;
                self.tick += 1;
            }
        }
        if total.rows == 0 && !self.drained {
            self.drained = true;
            for truck in &mut self.trucks {
                total = add(total, truck.drain_backlog(out));
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::count;

    fn small() -> FleetConfig {
        FleetConfig {
            trucks: 7,
            duration: Duration::from_secs(600),
            offline_rate: 0.05,
            ..Default::default()
        }
    }

    fn generate(generator: &mut FleetGenerator, batch: usize) -> (Vec<u8>, Counts) {
        let (mut out, mut total) = (Vec::new(), Counts::default());
        loop {
            let c = generator.next_batch(batch, &mut out);
            if c.rows == 0 {
                return (out, total);
            }
            total = add(total, c);
        }
    }

    #[test]
    fn deterministic_and_counted() {
        let (a, ca) = generate(&mut FleetGenerator::new(&small()), 10);
        let (b, _) = generate(&mut FleetGenerator::new(&small()), 3);
        assert_eq!(a, b);
        assert_eq!(count(&a), ca);
        let expected_rows = 7 * 60 * 2;
        assert!(
            ca.rows <= expected_rows && ca.rows > expected_rows * 9 / 10,
            "{ca:?}"
        );
    }

    #[test]
    fn partitions_cover_the_fleet() {
        let (all, c_all) = generate(&mut FleetGenerator::new(&small()), 50);
        let mut parts = 0;
        for p in 0..3 {
            parts += generate(&mut FleetGenerator::partition(&small(), p, 3), 50)
                .1
                .rows;
        }
        assert_eq!(parts, c_all.rows);
        assert!(
            String::from_utf8(all)
                .unwrap()
                .lines()
                .all(|l| l.starts_with("readings,") || l.starts_with("diagnostics,"))
        );
    }

    #[test]
    fn some_points_arrive_late() {
        let (out, _) = generate(&mut FleetGenerator::new(&small()), 100);
        let text = String::from_utf8(out).unwrap();
        let mut last = std::collections::HashMap::new();
        let mut late = 0;
        for line in text.lines() {
            let (key, ts) = line.rsplit_once(' ').unwrap();
            let series = key.split(' ').next().unwrap().to_owned();
            let ts: i64 = ts.parse().unwrap();
            if let Some(prev) = last.insert(series, ts) {
                late += usize::from(ts < prev);
            }
        }
        assert!(late > 0);
    }

    #[test]
    fn fixed_point_formatting() {
        let mut v = Vec::new();
        field(&mut v, b"x=", -1_234_567, 5);
        field(&mut v, b",y=", 5, 2);
        field(&mut v, b",z=", -7, 1);
        assert_eq!(String::from_utf8(v).unwrap(), "x=-12.34567,y=0.05,z=-0.7");
    }
}
