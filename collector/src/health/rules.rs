//! Health rules: the `[health]` section of `collector.toml`.
//!
//! Every rule maps one measured value to a [`Level`]: at or above its
//! `degraded` threshold the subject is degraded, at or above `down` it is down.
//! A threshold left out of a table is off. Hysteresis keeps one bad reading
//! from opening a ticket; flap detection keeps a bouncing link to one ticket.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How bad one reading is. Ordered: `Up < Degraded < Down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Within every threshold.
    Up,
    /// Past a `degraded` threshold.
    Degraded,
    /// Past a `down` threshold.
    Down,
}

impl Level {
    /// Lower-case name, as shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Up => "up",
            Level::Degraded => "degraded",
            Level::Down => "down",
        }
    }
}

/// A pair of thresholds for one measured value (higher is worse).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// At or above this value the subject is degraded. Left out: never degraded by this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<f64>,
    /// At or above this value the subject is down. Left out: never down by this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<f64>,
}

impl Threshold {
    /// Both thresholds.
    pub const fn new(degraded: Option<f64>, down: Option<f64>) -> Self {
        Self { degraded, down }
    }

    /// The level of `value`, with the threshold that was crossed.
    pub fn classify(&self, value: f64) -> (Level, Option<f64>) {
        if !value.is_finite() {
            return (Level::Up, None);
        }
        if let Some(down) = self.down
            && value >= down
        {
            return (Level::Down, Some(down));
        }
        if let Some(degraded) = self.degraded
            && value >= degraded
        {
            return (Level::Degraded, Some(degraded));
        }
        (Level::Up, None)
    }

    fn validate(&self, key: &str) -> Result<(), RulesError> {
        for (name, v) in [("degraded", self.degraded), ("down", self.down)] {
            if let Some(v) = v
                && (!v.is_finite() || v < 0.0)
            {
                return Err(RulesError(format!(
                    "health.{key}.{name}: must be a number >= 0, got {v}"
                )));
            }
        }
        if let (Some(a), Some(b)) = (self.degraded, self.down)
            && a > b
        {
            return Err(RulesError(format!(
                "health.{key}: degraded ({a}) must not be above down ({b})"
            )));
        }
        Ok(())
    }
}

/// Hysteresis: how many readings in a row it takes to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hysteresis {
    /// Bad cycles in a row before a subject becomes degraded or down.
    pub enter_cycles: u32,
    /// Good cycles in a row before a subject counts as recovered.
    pub leave_cycles: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        // Two bad cycles keep a single lost burst quiet while a real fault is
        // still reported within three probe intervals.
        Self {
            enter_cycles: 2,
            leave_cycles: 3,
        }
    }
}

/// Flap detection in the manner of Icinga 2: the weighted share of changes
/// between consecutive raw results (every poll and every linkDown/linkUp
/// trap, not only confirmed state changes) over the last `window` of them,
/// newer changes weighing more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlapRules {
    /// Raw results remembered per subject (Nagios uses 21).
    pub window: u32,
    /// At or above this percent of state change the subject starts flapping.
    pub high_pct: f64,
    /// Below this percent a flapping subject has settled.
    pub low_pct: f64,
    /// A ticket of a subject that flapped is closed by the collector once
    /// the subject has settled, is up and its raw results have not changed
    /// for this long, as long as nobody has taken the ticket's first SOP
    /// step yet. `0s`: never closed by the collector.
    #[serde(with = "humantime_serde")]
    pub close_after: Duration,
}

impl Default for FlapRules {
    fn default() -> Self {
        // Icinga 2's thresholds.
        Self {
            window: 21,
            high_pct: 30.0,
            low_pct: 25.0,
            close_after: Duration::from_secs(30 * 60),
        }
    }
}

/// A device's own CPU or memory: over `above` percent for `for` is a problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceRule {
    /// Above this percent the device's resource is degraded. Left out: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Every reading must be above for this long (and for
    /// `hysteresis.enter_cycles` readings) before a ticket opens.
    #[serde(rename = "for", with = "humantime_serde")]
    pub hold: Duration,
}

impl Default for ResourceRule {
    fn default() -> Self {
        Self {
            above: Some(90.0),
            hold: Duration::from_secs(5 * 60),
        }
    }
}

/// A device's temperature: above its own threshold (when it tells one) or
/// above `above` °C for `for` is a problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemperatureRule {
    /// Above this temperature, °C, the device is degraded, unless it tells
    /// a threshold of its own. Left out: only the device's own threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Use the device's own threshold (HUAWEI-ENTITY-EXTENT-MIB
    /// hwEntityTemperatureThreshold) when it tells one.
    pub device_threshold: bool,
    /// Every reading must be above for this long before a ticket opens.
    #[serde(rename = "for", with = "humantime_serde")]
    pub hold: Duration,
}

impl Default for TemperatureRule {
    fn default() -> Self {
        Self {
            above: Some(70.0),
            device_threshold: true,
            hold: Duration::from_secs(60),
        }
    }
}

/// Checks one `above` and `for` of a resource rule.
fn validate_resource(
    key: &str,
    above: Option<f64>,
    hold: Duration,
    max: f64,
) -> Result<(), RulesError> {
    if let Some(a) = above
        && (!a.is_finite() || a < 0.0 || a > max)
    {
        return Err(RulesError(format!(
            "health.{key}.above: must be a number from 0 to {max}, got {a}"
        )));
    }
    if hold > Duration::from_secs(86_400) {
        return Err(RulesError(format!("health.{key}.for: at most a day")));
    }
    Ok(())
}

/// The `[health]` section of `collector.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthRules {
    /// ICMP packet loss in percent of one burst.
    pub loss_pct: Threshold,
    /// Average ICMP round-trip time in milliseconds.
    pub rtt_ms: Threshold,
    /// ICMP jitter in milliseconds.
    pub jitter_ms: Threshold,
    /// Link utilisation in percent of its speed, the busier direction.
    pub utilisation_pct: Threshold,
    /// Interface errors per second, in and out together.
    pub errors_per_s: Threshold,
    /// Level of a link whose oper status is not up while its admin status is up.
    pub oper_down: Level,
    /// Level of a device that does not answer SNMP (timeout, auth failure).
    pub snmp_unreachable: Level,
    /// Cycles needed to change state.
    pub hysteresis: Hysteresis,
    /// Flap detection.
    pub flap: FlapRules,
    /// Probe intervals without a heartbeat before an agent counts as silent.
    pub agent_silence_intervals: u32,
    /// A device's own CPU busy, percent (from its SNMP health MIBs).
    pub cpu: ResourceRule,
    /// A device's own memory used, percent.
    pub memory: ResourceRule,
    /// A device's own temperature, °C.
    pub temperature: TemperatureRule,
}

impl Default for HealthRules {
    fn default() -> Self {
        Self {
            loss_pct: Threshold::new(Some(20.0), Some(100.0)),
            rtt_ms: Threshold::new(Some(150.0), None),
            jitter_ms: Threshold::new(Some(30.0), None),
            utilisation_pct: Threshold::new(Some(90.0), None),
            errors_per_s: Threshold::new(Some(10.0), None),
            oper_down: Level::Down,
            snmp_unreachable: Level::Degraded,
            hysteresis: Hysteresis::default(),
            flap: FlapRules::default(),
            agent_silence_intervals: 3,
            cpu: ResourceRule::default(),
            memory: ResourceRule::default(),
            temperature: TemperatureRule::default(),
        }
    }
}

/// A rule that cannot work; the message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl HealthRules {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), RulesError> {
        self.loss_pct.validate("loss_pct")?;
        self.rtt_ms.validate("rtt_ms")?;
        self.jitter_ms.validate("jitter_ms")?;
        self.utilisation_pct.validate("utilisation_pct")?;
        self.errors_per_s.validate("errors_per_s")?;
        if self.hysteresis.enter_cycles == 0 {
            return Err(RulesError(
                "health.hysteresis.enter_cycles: must be at least 1".into(),
            ));
        }
        if self.hysteresis.leave_cycles == 0 {
            return Err(RulesError(
                "health.hysteresis.leave_cycles: must be at least 1".into(),
            ));
        }
        if self.flap.window < 3 {
            return Err(RulesError("health.flap.window: must be at least 3".into()));
        }
        let (lo, hi) = (self.flap.low_pct, self.flap.high_pct);
        if !(0.0..=100.0).contains(&lo) || !(0.0..=100.0).contains(&hi) || lo > hi {
            return Err(RulesError(format!(
                "health.flap: need 0 <= low_pct ({lo}) <= high_pct ({hi}) <= 100"
            )));
        }
        if self.flap.close_after > Duration::from_secs(366 * 86_400) {
            return Err(RulesError(
                "health.flap.close_after: at most a year (0s: never)".into(),
            ));
        }
        if self.agent_silence_intervals == 0 {
            return Err(RulesError(
                "health.agent_silence_intervals: must be at least 1".into(),
            ));
        }
        validate_resource("cpu", self.cpu.above, self.cpu.hold, 100.0)?;
        validate_resource("memory", self.memory.above, self.memory.hold, 100.0)?;
        validate_resource(
            "temperature",
            self.temperature.above,
            self.temperature.hold,
            200.0,
        )?;
        Ok(())
    }

    /// How long the bad readings of a device's resource must last before
    /// they count, microseconds.
    pub fn resource_hold_us(&self, r: super::state::Resource) -> i64 {
        let hold = match r {
            super::state::Resource::Cpu => self.cpu.hold,
            super::state::Resource::Memory => self.memory.hold,
            super::state::Resource::Temperature => self.temperature.hold,
        };
        i64::try_from(hold.as_micros()).unwrap_or(i64::MAX)
    }

    /// A commented `[health]` section with the defaults, for `collector.toml`.
    pub fn example_toml() -> &'static str {
        r#"# Health rules. A value at or above `degraded` makes the device or link
# degraded, at or above `down` makes it down; leave a key out to turn it off.
[health]
oper_down = "down"              # link oper status down while admin up
snmp_unreachable = "degraded"   # device answers ping but not SNMP
agent_silence_intervals = 3     # probe intervals without heartbeat: agent silent
[health.loss_pct]               # ICMP loss in percent
degraded = 20.0
down = 100.0
[health.rtt_ms]                 # average round trip
degraded = 150.0
[health.jitter_ms]
degraded = 30.0
[health.utilisation_pct]        # busier direction of a link
degraded = 90.0
[health.errors_per_s]           # interface errors, in + out
degraded = 10.0
[health.hysteresis]
enter_cycles = 2                # bad cycles in a row to become degraded/down
leave_cycles = 3                # good cycles in a row to recover
[health.flap]                   # Icinga-style, over every poll and trap
window = 21
high_pct = 30.0
low_pct = 25.0
close_after = "30m"             # stable this long after flapping: ticket closed
[health.cpu]                    # the device's own CPU (SNMP health MIBs)
above = 90.0                    # percent; leave out to turn off
for = "5m"                      # above for this long: ticket
[health.memory]                 # the device's own memory used
above = 90.0
for = "5m"
[health.temperature]            # the hottest sensor the device tells
above = 70.0                    # °C, unless the device tells its own threshold
device_threshold = true         # use the device's own threshold when it has one
for = "1m"
"#
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        health: HealthRules,
    }

    fn parse(s: &str) -> Result<HealthRules, String> {
        toml::from_str::<File>(s)
            .map(|f| f.health)
            .map_err(|e| e.to_string())
    }

    #[test_case(Threshold::new(Some(20.0), Some(100.0)), 0.0 => (Level::Up, None); "zero loss")]
    #[test_case(Threshold::new(Some(20.0), Some(100.0)), 19.9 => (Level::Up, None); "just below")]
    #[test_case(Threshold::new(Some(20.0), Some(100.0)), 20.0 => (Level::Degraded, Some(20.0)); "at degraded")]
    #[test_case(Threshold::new(Some(20.0), Some(100.0)), 40.0 => (Level::Degraded, Some(20.0)); "forty percent")]
    #[test_case(Threshold::new(Some(20.0), Some(100.0)), 100.0 => (Level::Down, Some(100.0)); "all lost")]
    #[test_case(Threshold::new(None, Some(50.0)), 30.0 => (Level::Up, None); "no degraded threshold")]
    #[test_case(Threshold::new(Some(1.0), None), 1e9 => (Level::Degraded, Some(1.0)); "no down threshold")]
    #[test_case(Threshold::new(Some(1.0), Some(2.0)), f64::NAN => (Level::Up, None); "nan is no reading")]
    fn classify(t: Threshold, v: f64) -> (Level, Option<f64>) {
        t.classify(v)
    }

    #[test]
    fn defaults_are_valid_and_match_the_example() {
        let d = HealthRules::default();
        d.validate().unwrap();
        let parsed = parse(HealthRules::example_toml()).unwrap();
        assert_eq!(parsed, d);
        assert_eq!(parse("").unwrap(), d);
    }

    #[test]
    fn a_table_given_replaces_the_default_and_missing_keys_are_off() {
        let r = parse("[health.rtt_ms]\ndown = 500.0\n").unwrap();
        assert_eq!(r.rtt_ms, Threshold::new(None, Some(500.0)));
        assert_eq!(r.loss_pct, HealthRules::default().loss_pct);
    }

    #[test_case("[health]\nlos_pct = 1" => matches Err(e) if e.contains("los_pct"); "unknown key named")]
    #[test_case("[health.loss_pct]\ndegraded = 1.0\nwarn = 2.0" => matches Err(e) if e.contains("warn"); "unknown nested key")]
    #[test_case("[health]\noper_down = \"broken\"" => matches Err(e) if e.contains("oper_down"); "bad level")]
    #[test_case("[health.hysteresis]\nenter_cycles = 5" => matches Ok(_); "partial hysteresis")]
    #[test_case("[health.cpu]\nabove = 80.0\nwindow = \"5m\"" => matches Err(e) if e.contains("window"); "unknown resource key")]
    #[test_case("[health.cpu]\nfor = \"10m\"" => matches Ok(r) if r.cpu.above == Some(90.0) && r.cpu.hold == Duration::from_secs(600); "partial resource rule")]
    fn parse_errors(s: &str) -> Result<HealthRules, String> {
        parse(s)
    }

    #[test_case("[health.loss_pct]\ndegraded = 50.0\ndown = 10.0" => Some("health.loss_pct".to_string()); "inverted thresholds")]
    #[test_case("[health.rtt_ms]\ndegraded = -1.0" => Some("health.rtt_ms.degraded".to_string()); "negative")]
    #[test_case("[health.hysteresis]\nenter_cycles = 0" => Some("health.hysteresis.enter_cycles".to_string()); "zero enter")]
    #[test_case("[health.hysteresis]\nleave_cycles = 0" => Some("health.hysteresis.leave_cycles".to_string()); "zero leave")]
    #[test_case("[health.flap]\nlow_pct = 40.0\nhigh_pct = 30.0" => Some("health.flap".to_string()); "inverted flap")]
    #[test_case("[health.flap]\nwindow = 2" => Some("health.flap.window".to_string()); "tiny window")]
    #[test_case("[health.flap]\nclose_after = \"400days\"" => Some("health.flap.close_after".to_string()); "close after too long")]
    #[test_case("[health]\nagent_silence_intervals = 0" => Some("health.agent_silence_intervals".to_string()); "zero silence")]
    #[test_case("[health.cpu]\nabove = 120.0" => Some("health.cpu.above".to_string()); "cpu over 100")]
    #[test_case("[health.memory]\nabove = -5.0" => Some("health.memory.above".to_string()); "negative memory")]
    #[test_case("[health.temperature]\nfor = \"3days\"" => Some("health.temperature.for".to_string()); "temperature hold too long")]
    #[test_case("" => None; "defaults")]
    fn validation_names_the_key(s: &str) -> Option<String> {
        let r = parse(s).unwrap();
        r.validate()
            .err()
            .map(|e| e.0.split(':').next().unwrap_or_default().to_string())
    }
}
