//! The simulated source: plausible made-up values (a sine with noise, a
//! bounded random walk, a sawtooth, a door that opens now and then). The
//! waveform is a pure [`Simulator`] driven by time and a caller's rng.

use super::{Output, Schedule};
use crate::config::{Shape, SimulatedSource};
use crate::reading::{now_secs, Reading, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Noise is clamped to this many standard deviations, so values stay in a
/// known range.
pub const NOISE_CLAMP: f64 = 3.0;

/// State of one simulated waveform.
#[derive(Debug, Clone)]
pub struct Simulator {
    /// Which waveform.
    shape: Shape,
    /// Centre value.
    base: f64,
    /// Largest swing from the centre.
    amplitude: f64,
    /// Cycle length in seconds (mean time between toggles for booleans).
    period: f64,
    /// Standard deviation of the noise.
    noise: f64,
    /// Current level of the random walk.
    level: f64,
    /// Current state of the boolean.
    on: bool,
    /// Readings produced so far.
    count: u64,
}

/// A standard normal sample (Box–Muller), clamped to ±[`NOISE_CLAMP`].
pub fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    g.clamp(-NOISE_CLAMP, NOISE_CLAMP)
}

impl Simulator {
    /// A simulator for a config (the random walk starts at `base`, the
    /// boolean starts `false`).
    pub fn new(cfg: &SimulatedSource) -> Self {
        Self {
            shape: cfg.shape,
            base: cfg.base,
            amplitude: cfg.amplitude,
            period: cfg.period_secs,
            noise: cfg.noise,
            level: cfg.base,
            on: false,
            count: 0,
        }
    }

    /// The range every numeric value stays in.
    pub fn range(&self) -> (f64, f64) {
        let spread = match self.shape {
            Shape::RandomWalk => self.amplitude,
            Shape::Counter => f64::MAX / 4.0,
            _ => self.amplitude + NOISE_CLAMP * self.noise,
        };
        (self.base - spread, self.base + spread)
    }

    /// The value at time `t` (seconds), `dt` seconds after the previous one.
    pub fn sample(&mut self, t: f64, dt: f64, rng: &mut impl Rng) -> Value {
        let noise = self.noise * gaussian(rng);
        self.count += 1;
        match self.shape {
            Shape::Counter => Value::Num(self.base + self.count as f64),
            Shape::Sine => {
                let phase = (t / self.period).rem_euclid(1.0);
                let v = self.base + self.amplitude * (std::f64::consts::TAU * phase).sin();
                Value::Num(v + noise)
            }
            Shape::Sawtooth => {
                let phase = (t / self.period).rem_euclid(1.0);
                let v = self.base - self.amplitude + 2.0 * self.amplitude * phase;
                Value::Num(v + noise)
            }
            Shape::RandomWalk => {
                let (lo, hi) = (self.base - self.amplitude, self.base + self.amplitude);
                // Steps of about amplitude/20 (or the noise, if larger), with
                // a slight pull back towards the centre.
                let step = gaussian(rng) * self.noise.max(self.amplitude / 20.0);
                let mut x = self.level + step + (self.base - self.level) * 0.01;
                // Reflect off the bounds, then clamp for safety.
                if x > hi {
                    x = 2.0 * hi - x;
                } else if x < lo {
                    x = 2.0 * lo - x;
                }
                self.level = x.clamp(lo, hi);
                Value::Num(self.level)
            }
            Shape::Boolean => {
                let p = (dt / self.period).clamp(0.0, 1.0);
                if rng.random_bool(p) {
                    self.on = !self.on;
                }
                Value::Bool(self.on)
            }
        }
    }
}

/// Runs a simulated source until cancelled (or its `limit` is reached).
pub async fn run(cfg: SimulatedSource, out: Output, mut schedule: Schedule) {
    let mut sim = Simulator::new(&cfg);
    let mut rng = StdRng::from_os_rng();
    let mut produced = 0u64;
    let mut last: Option<f64> = None;
    while let Some(wake) = out.next(&mut schedule).await {
        if cfg.limit.is_some_and(|l| produced >= l) {
            wake.answer(Err(format!(
                "the source stopped after its limit of {produced} readings"
            )));
            break;
        }
        produced += 1;
        let t = now_secs();
        // The time since the previous sample: the interval may change, and a
        // read-now comes between ticks.
        let dt = last.map_or(schedule.period().as_secs_f64(), |l| (t - l).max(0.0));
        last = Some(t);
        let value = sim.sample(t, dt, &mut rng);
        let reading = Reading {
            name: cfg.metric.clone(),
            unit: cfg.unit.clone(),
            value,
            time: t,
        };
        if !out.send(reading.clone()).await {
            break;
        }
        wake.answer(Ok(vec![reading]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(shape: Shape) -> SimulatedSource {
        SimulatedSource {
            name: None,
            metric: "t".into(),
            unit: None,
            interval_ms: 1000,
            shape,
            base: 20.0,
            amplitude: 5.0,
            period_secs: 300.0,
            noise: 0.1,
            limit: None,
        }
    }

    #[test]
    fn numeric_shapes_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(42);
        for shape in [Shape::Sine, Shape::Sawtooth, Shape::RandomWalk] {
            for (amplitude, noise) in [(5.0, 0.1), (0.0, 0.0), (0.5, 2.0), (100.0, 0.0)] {
                let mut c = cfg(shape);
                c.amplitude = amplitude;
                c.noise = noise;
                let mut sim = Simulator::new(&c);
                let (lo, hi) = sim.range();
                let (mut seen_lo, mut seen_hi) = (f64::MAX, f64::MIN);
                for i in 0..20_000 {
                    let Value::Num(v) = sim.sample(1.7e9 + f64::from(i), 1.0, &mut rng) else {
                        panic!("{shape:?} gave a non-number");
                    };
                    assert!(
                        v.is_finite() && v >= lo && v <= hi,
                        "{shape:?} {v} not in {lo}..{hi}"
                    );
                    seen_lo = seen_lo.min(v);
                    seen_hi = seen_hi.max(v);
                }
                if amplitude >= 5.0 {
                    // It actually moves over most of the range.
                    assert!(
                        seen_hi - seen_lo > amplitude,
                        "{shape:?} {seen_lo}..{seen_hi}"
                    );
                }
            }
        }
    }

    #[test]
    fn counter_counts_from_base() {
        let mut sim = Simulator::new(&SimulatedSource {
            base: 0.0,
            ..cfg(Shape::Counter)
        });
        let mut rng = StdRng::seed_from_u64(1);
        let got: Vec<_> = (0..3)
            .map(|i| sim.sample(f64::from(i), 1.0, &mut rng))
            .collect();
        assert_eq!(got, [Value::Num(1.0), Value::Num(2.0), Value::Num(3.0)]);
    }

    #[test]
    fn sine_follows_its_period() {
        let mut c = cfg(Shape::Sine);
        c.noise = 0.0;
        let mut sim = Simulator::new(&c);
        let mut rng = StdRng::seed_from_u64(1);
        let at = |sim: &mut Simulator, rng: &mut StdRng, t: f64| match sim.sample(t, 1.0, rng) {
            Value::Num(v) => v,
            Value::Bool(_) => f64::NAN,
        };
        assert!((at(&mut sim, &mut rng, 0.0) - 20.0).abs() < 1e-9);
        assert!((at(&mut sim, &mut rng, 75.0) - 25.0).abs() < 1e-9);
        assert!((at(&mut sim, &mut rng, 225.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn boolean_toggles_now_and_then() {
        let mut sim = Simulator::new(&cfg(Shape::Boolean));
        let mut rng = StdRng::seed_from_u64(3);
        let mut toggles = 0;
        let mut last = false;
        // 100 periods of 300 one-second samples: about 100 toggles.
        for i in 0..30_000 {
            let Value::Bool(b) = sim.sample(f64::from(i), 1.0, &mut rng) else {
                panic!("boolean gave a number");
            };
            if b != last {
                toggles += 1;
                last = b;
            }
        }
        assert!((50..200).contains(&toggles), "{toggles} toggles");
    }
}
