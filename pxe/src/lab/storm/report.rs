//! The storm's report: per-stage latency percentiles, retries, failures,
//! the server's CPU and memory, bytes per protocol, and the number of
//! nodes in each stage over time (what the plot draws).

use serde::Serialize;

use super::node::{Firmware, NodeOutcome, Stage};

/// Latency of one stage over the nodes that finished it, seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageLatency {
    /// The stage.
    pub stage: Stage,
    /// Nodes that went through it.
    pub nodes: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Retries counted in it, all nodes.
    pub retries: u64,
}

/// The server process, measured from /proc.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    /// User + system CPU seconds spent during the storm.
    pub cpu_seconds: f64,
    /// Peak resident memory (VmHWM), bytes, since the server started.
    pub peak_rss_bytes: u64,
}

/// Bytes moved per protocol (load-generator side: DHCP both ways, TFTP
/// and HTTP payload received).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bytes {
    /// DHCP packets, sent and received.
    pub dhcp: u64,
    /// TFTP file data received.
    pub tftp: u64,
    /// HTTP bodies received.
    pub http: u64,
}

/// One failed node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Its MAC.
    pub mac: String,
    /// How it booted.
    pub firmware: Firmware,
    /// The stage it failed in.
    pub stage: Stage,
    /// Why.
    pub reason: String,
}

/// One node's firmware and end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSummary {
    /// Its MAC.
    pub mac: String,
    /// How it booted.
    pub firmware: Firmware,
    /// Reached running.
    pub running: bool,
}

/// The nodes of one firmware.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FirmwareCount {
    /// The firmware.
    pub firmware: Firmware,
    /// Its nodes.
    pub nodes: usize,
    /// Those that reached running.
    pub running: usize,
}

/// Nodes and running nodes per firmware (only firmwares the storm used).
pub fn by_firmware(outcomes: &[NodeOutcome]) -> Vec<FirmwareCount> {
    [Firmware::Bios, Firmware::Uefi]
        .into_iter()
        .map(|firmware| {
            let of: Vec<_> = outcomes.iter().filter(|o| o.firmware == firmware).collect();
            FirmwareCount {
                firmware,
                nodes: of.len(),
                running: of.iter().filter(|o| o.running()).count(),
            }
        })
        .filter(|c| c.nodes > 0)
        .collect()
}

/// Each node's firmware and whether it reached running.
pub fn node_summaries(outcomes: &[NodeOutcome]) -> Vec<NodeSummary> {
    outcomes
        .iter()
        .map(|o| NodeSummary {
            mac: o.mac.clone(),
            firmware: o.firmware,
            running: o.running(),
        })
        .collect()
}

/// Nodes in each stage at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the storm began.
    pub t: f64,
    /// Count per stage, in [`Stage::ALL`] order.
    pub counts: Vec<usize>,
}

/// What a storm measured.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    /// Nodes simulated.
    pub nodes: usize,
    /// What ran: `full`, `tftp (ironrack)`, `tftp (dnsmasq)` or `attest`.
    pub mode: String,
    /// Arrival (`all` or `ramp:SECONDS`).
    pub arrival: String,
    /// Packet loss injected, percent (each direction).
    pub loss_percent: f64,
    /// Delay injected, ms (each direction).
    pub delay_ms: u32,
    /// Rootfs size, bytes.
    pub rootfs_bytes: u64,
    /// Nodes that reached running.
    pub running: usize,
    /// Nodes and running nodes per firmware.
    pub firmware: Vec<FirmwareCount>,
    /// Every node's firmware and end, in node order.
    pub node_firmware: Vec<NodeSummary>,
    /// Seconds until the last node reached running (None if any failed).
    pub time_to_all_running: Option<f64>,
    /// Per-stage latency.
    pub stages: Vec<StageLatency>,
    /// Failed nodes.
    pub failures: Vec<Failure>,
    /// The server's usage.
    pub server: ServerUsage,
    /// Bytes per protocol.
    pub bytes: Bytes,
    /// Nodes per stage over time.
    pub timeline: Vec<Sample>,
}

/// The `q`-quantile (0..=1) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency per stage (those before `Running`) over `outcomes`.
pub fn stage_latencies(outcomes: &[NodeOutcome]) -> Vec<StageLatency> {
    Stage::ALL
        .iter()
        .filter(|s| **s != Stage::Running)
        .map(|&stage| {
            let mut d: Vec<f64> = outcomes.iter().filter_map(|o| o.duration(stage)).collect();
            d.sort_by(f64::total_cmp);
            let retries = outcomes
                .iter()
                .flat_map(|o| o.retries.iter())
                .filter(|(s, _)| *s == stage)
                .map(|(_, n)| u64::from(*n))
                .sum();
            StageLatency {
                stage,
                nodes: d.len(),
                p50: percentile(&d, 0.50),
                p95: percentile(&d, 0.95),
                p99: percentile(&d, 0.99),
                max: d.last().copied().unwrap_or(0.0),
                retries,
            }
        })
        .collect()
}

/// Nodes in each stage every `step` seconds until `end`; a failed node
/// leaves the count when it fails (it is nowhere).
pub fn timeline(outcomes: &[NodeOutcome], step: f64, end: f64) -> Vec<Sample> {
    let steps = (end / step).ceil() as usize;
    (0..=steps)
        .map(|i| {
            let t = i as f64 * step;
            let mut counts = vec![0; Stage::ALL.len()];
            for o in outcomes {
                let Some((stage, _)) = o.entered.iter().rev().find(|(_, at)| *at <= t) else {
                    continue;
                };
                let failed_by_now = o.failure.is_some() && o.finished_at() <= t;
                if !failed_by_now && let Some(k) = Stage::ALL.iter().position(|s| s == stage) {
                    counts[k] += 1;
                }
            }
            Sample { t, counts }
        })
        .collect()
}

impl NodeOutcome {
    /// When the node last changed stage (its failure time, if it failed).
    pub fn finished_at(&self) -> f64 {
        self.failed_at
            .or_else(|| self.entered.last().map(|(_, t)| *t))
            .unwrap_or(0.0)
    }
}

/// Time to all running: the last `Running` entry, if every node got there.
pub fn time_to_all_running(outcomes: &[NodeOutcome]) -> Option<f64> {
    if outcomes.is_empty() || !outcomes.iter().all(NodeOutcome::running) {
        return None;
    }
    outcomes
        .iter()
        .filter_map(|o| o.entered.last().map(|(_, t)| *t))
        .max_by(f64::total_cmp)
}

/// A step for about 200 samples over `end` seconds (at least 0.1 s).
pub fn sample_step(end: f64) -> f64 {
    (end / 200.0).max(0.1)
}

impl StormReport {
    /// The report as text: a summary, a stage table, failures.
    pub fn table(&self) -> String {
        let mut s = format!(
            "storm ({}): {} nodes, arrival {}, loss {}%, delay {} ms, rootfs {} bytes\n",
            self.mode,
            self.nodes,
            self.arrival,
            self.loss_percent,
            self.delay_ms,
            self.rootfs_bytes
        );
        s.push_str(&format!(
            "running {}/{}; time to all running: {}\n",
            self.running,
            self.nodes,
            self.time_to_all_running
                .map_or("- (not all running)".to_owned(), |t| format!("{t:.2} s"))
        ));
        let firmware: Vec<String> = self
            .firmware
            .iter()
            .map(|c| format!("{} {} ({} running)", c.firmware.name(), c.nodes, c.running))
            .collect();
        s.push_str(&format!("firmware: {}\n", firmware.join(", ")));
        s.push_str(&format!(
            "server: {:.2} CPU s, peak RSS {:.1} MiB; bytes: dhcp {}, tftp {}, http {}\n\n",
            self.server.cpu_seconds,
            self.server.peak_rss_bytes as f64 / (1 << 20) as f64,
            self.bytes.dhcp,
            self.bytes.tftp,
            self.bytes.http
        ));
        s.push_str(&format!(
            "{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8}\n",
            "stage", "nodes", "p50 s", "p95 s", "p99 s", "max s", "retries"
        ));
        for l in self.stages.iter().filter(|l| l.nodes > 0) {
            s.push_str(&format!(
                "{:<10} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8}\n",
                l.stage.name(),
                l.nodes,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                l.retries
            ));
        }
        if !self.failures.is_empty() {
            s.push_str(&format!("\n{} failed:\n", self.failures.len()));
            for f in self.failures.iter().take(50) {
                s.push_str(&format!(
                    "  {} in {}: {}\n",
                    f.mac,
                    f.stage.name(),
                    f.reason
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(stages: &[(Stage, f64)], failed: Option<f64>) -> NodeOutcome {
        NodeOutcome {
            mac: "m".into(),
            firmware: Firmware::Bios,
            entered: stages.to_vec(),
            retries: vec![(Stage::Tftp, 2)],
            failure: failed.map(|_| (stages.last().unwrap().0, "x".into())),
            failed_at: failed,
        }
    }

    #[test]
    fn nodes_are_counted_by_firmware() {
        let mut uefi = node(&[(Stage::Dhcp, 0.0), (Stage::Running, 1.0)], None);
        uefi.firmware = Firmware::Uefi;
        let failed = node(&[(Stage::Dhcp, 0.0)], Some(2.0));
        let bios = node(&[(Stage::Dhcp, 0.0), (Stage::Running, 1.0)], None);
        let counts = by_firmware(&[uefi.clone(), failed, bios]);
        assert_eq!(
            counts,
            vec![
                FirmwareCount {
                    firmware: Firmware::Bios,
                    nodes: 2,
                    running: 1
                },
                FirmwareCount {
                    firmware: Firmware::Uefi,
                    nodes: 1,
                    running: 1
                },
            ]
        );
        assert_eq!(by_firmware(&[uefi]).len(), 1);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }

    #[test]
    fn stages_and_timeline_follow_the_nodes() {
        let a = node(
            &[
                (Stage::Dhcp, 0.0),
                (Stage::Tftp, 1.0),
                (Stage::Running, 3.0),
            ],
            None,
        );
        let b = node(&[(Stage::Dhcp, 0.0), (Stage::Tftp, 2.0)], Some(2.5));
        let outcomes = [a, b];
        let l = stage_latencies(&outcomes);
        let dhcp = l.iter().find(|l| l.stage == Stage::Dhcp).unwrap();
        assert_eq!((dhcp.nodes, dhcp.p50, dhcp.max), (2, 1.0, 2.0));
        let tftp = l.iter().find(|l| l.stage == Stage::Tftp).unwrap();
        assert_eq!((tftp.nodes, tftp.max, tftp.retries), (1, 2.0, 4));
        assert_eq!(time_to_all_running(&outcomes), None);
        assert_eq!(time_to_all_running(&outcomes[..1]), Some(3.0));

        let t = timeline(&outcomes, 1.0, 3.0);
        assert_eq!(t.len(), 4);
        let at = |i: usize, s: Stage| t[i].counts[Stage::ALL.iter().position(|x| *x == s).unwrap()];
        assert_eq!(at(0, Stage::Dhcp), 2);
        assert_eq!((at(1, Stage::Tftp), at(1, Stage::Dhcp)), (1, 1));
        assert_eq!(at(2, Stage::Tftp), 2);
        // b failed at 2.5: gone at 3; a is running.
        assert_eq!((at(3, Stage::Tftp), at(3, Stage::Running)), (0, 1));
    }
}
