//! ns per `Engine::observe` with 0, 10, 100 and 1000 rules, over 1,000
//! devices × 5 metrics in random order. Rules are scoped by metric and a
//! device glob covering 10 devices; the first 500 cover each series once,
//! the rest name metrics these devices do not send. So readings matching a
//! rule: 0 %, 2 %, 20 %, 100 % (one rule each). `cargo bench -p telltale-rules`.

use std::hint::black_box;
use std::time::Instant;
use telltale_rules::{Engine, Labels, Reading, Rule, RuleSet, ValueRef};

const DEVICES: usize = 1_000;
const METRICS: [&str; 5] = ["temperature", "humidity", "pressure", "battery", "rssi"];
const READINGS: usize = 1 << 20;
const ROUNDS: usize = 5;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rules(n: usize) -> RuleSet {
    let rules = (0..n).map(|i| {
        let (metric, device) = if i < 500 {
            (METRICS[i % 5].to_string(), format!("dev-{:03}?", i / 5))
        } else {
            (format!("other-{i}"), "*".to_string())
        };
        let filter = (i % 7 == 3).then(|| "labels.site == \"north\" or labels.site == \"south\"".to_string());
        let condition = match i % 10 {
            0..=5 => format!("{{ above = {}.0, clear_below = 90.0 }}", 95 + i % 5),
            6 => "{ below = -100.0 }".into(),
            7 => "{ outside = [-50.0, 150.0] }".into(),
            8 => "{ rate_above = 50.0, per = \"second\", window = \"30s\" }".into(),
            _ => "{ no_data = \"10m\" }".into(),
        };
        let mut text = format!("name = \"r{i}\"\nseverity = \"minor\"\nmetric = \"{metric}\"\ndevice = \"{device}\"\ncondition = {condition}\nfor = \"30s\"\n");
        if let Some(f) = filter {
            text.push_str(&format!("filter = '{f}'\n"));
        }
        toml::from_str::<Rule>(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    });
    RuleSet::compile(rules.collect()).unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    let devices: Vec<String> = (0..DEVICES).map(|d| format!("dev-{d:04}")).collect();
    let north = [("site", "north")];
    let south = [("site", "south")];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut level = vec![50.0f64; DEVICES * METRICS.len()];
    // (series, value): a random walk per series, visited in random order.
    let readings: Vec<(usize, f64)> = (0..READINGS)
        .map(|_| {
            let s = (rng.next() % level.len() as u64) as usize;
            level[s] += (rng.next() % 2001) as f64 / 1000.0 - 1.0;
            (s, level[s])
        })
        .collect();

    println!(
        "{:>6} {:>12} {:>12} {:>10} {:>12}",
        "rules", "ns/observe", "M obs/s", "matched", "transitions"
    );
    for n in [0, 10, 100, 1000] {
        let mut engine = Engine::new(rules(n));
        let mut out = Vec::new();
        let mut transitions = 0;
        let mut now = 1_700_000_000_000i64;
        let mut best = f64::MAX;
        for round in 0..=ROUNDS {
            let start = Instant::now();
            for (i, &(s, v)) in readings.iter().enumerate() {
                let device = &devices[s / METRICS.len()];
                let labels: &dyn Labels = if s % 2 == 0 { &north } else { &south };
                let r = Reading {
                    device,
                    metric: METRICS[s % METRICS.len()],
                    value: ValueRef::Number(v),
                    unit: Some("x"),
                    labels,
                    time: now,
                };
                engine.observe(black_box(&r), now, &mut out);
                if i % 1024 == 0 {
                    now += 1;
                    if engine.next_deadline().is_some_and(|d| d <= now) {
                        engine.tick(now, &mut out);
                    }
                    transitions += out.len();
                    out.clear();
                }
            }
            let ns = start.elapsed().as_nanos() as f64 / READINGS as f64;
            // Round 0 creates the series and scopes them: a warm-up.
            if round > 0 {
                best = best.min(ns);
            }
        }
        let matched = 100 * n.min(500) * 10 / (DEVICES * METRICS.len());
        println!(
            "{n:>6} {best:>12.1} {:>12.1} {:>9}% {transitions:>12}",
            1e3 / best,
            matched
        );
    }
}
