//! Probes: the coordinator fetches from a node like a viewer would and checks the content hash,
//! time to first byte and throughput. Availability is the share of probes passed; a heartbeat
//! alone proves nothing.

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::rewards::PPM;

/// One probe's measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The node probed.
    pub node_id: NodeId,
    /// The fetched segment's hash matched the origin's.
    pub hash_ok: bool,
    /// No response within the probe deadline.
    pub timed_out: bool,
    /// Time to first byte, ms.
    pub ttfb_ms: u64,
    /// Measured throughput, bytes per second.
    pub throughput_bytes_per_s: u64,
}

/// What a probe must reach to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePolicy {
    /// Highest acceptable time to first byte, ms.
    pub max_ttfb_ms: u64,
    /// Lowest acceptable throughput, bytes per second (at least the stream bitrate).
    pub min_throughput_bytes_per_s: u64,
}

impl Default for ProbePolicy {
    fn default() -> Self {
        Self {
            max_ttfb_ms: 2_000,
            min_throughput_bytes_per_s: 500_000,
        }
    }
}

impl ProbePolicy {
    /// Whether one probe passed.
    pub fn passes(&self, probe: &ProbeResult) -> bool {
        probe.hash_ok
            && !probe.timed_out
            && probe.ttfb_ms <= self.max_ttfb_ms
            && probe.throughput_bytes_per_s >= self.min_throughput_bytes_per_s
    }
}

/// One node's probes over an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// Probes run.
    pub total: u64,
    /// Probes passed.
    pub passed: u64,
    /// Probes whose content hash was wrong.
    pub hash_failures: u64,
    /// Probes that timed out.
    pub timeouts: u64,
    /// Median throughput of the passed probes, bytes per second.
    pub capacity_bytes_per_s: u64,
}

impl ProbeSummary {
    /// Summarises one node's probe results.
    pub fn from_results<'a>(
        policy: &ProbePolicy,
        results: impl IntoIterator<Item = &'a ProbeResult>,
    ) -> Self {
        let mut summary = Self::default();
        let mut passed_throughputs = Vec::new();
        for probe in results {
            summary.total += 1;
            summary.hash_failures += u64::from(!probe.hash_ok && !probe.timed_out);
            summary.timeouts += u64::from(probe.timed_out);
            if policy.passes(probe) {
                summary.passed += 1;
                passed_throughputs.push(probe.throughput_bytes_per_s);
            }
        }
        passed_throughputs.sort_unstable();
        summary.capacity_bytes_per_s = passed_throughputs
            .get(passed_throughputs.len() / 2)
            .copied()
            .unwrap_or(0);
        summary
    }

    /// Share of probes passed, ppm; 0 when never probed.
    pub fn availability_ppm(&self) -> u64 {
        (u128::from(self.passed) * u128::from(PPM))
            .checked_div(u128::from(self.total))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
            .min(PPM)
    }

    /// Bytes the node could serve over `duration_ms` at its measured capacity.
    pub fn capacity_bytes(&self, duration_ms: u64) -> u64 {
        let bytes = u128::from(self.capacity_bytes_per_s) * u128::from(duration_ms) / 1_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_counts_only_passing_probes() {
        let node = NodeId::from_bytes([1; 32]);
        let probe = |hash_ok, timed_out, ttfb_ms, throughput_bytes_per_s| ProbeResult {
            node_id: node,
            hash_ok,
            timed_out,
            ttfb_ms,
            throughput_bytes_per_s,
        };
        let results = [
            probe(true, false, 100, 1_000_000),
            probe(true, false, 200, 3_000_000),
            probe(false, false, 100, 1_000_000),
            probe(true, true, 0, 0),
            probe(true, false, 5_000, 1_000_000),
            probe(true, false, 100, 2_000_000),
        ];
        let summary = ProbeSummary::from_results(&ProbePolicy::default(), &results);
        assert_eq!(
            (
                summary.total,
                summary.passed,
                summary.hash_failures,
                summary.timeouts
            ),
            (6, 3, 1, 1)
        );
        assert_eq!(summary.availability_ppm(), 500_000);
        assert_eq!(summary.capacity_bytes_per_s, 2_000_000);
        assert_eq!(summary.capacity_bytes(1_500), 3_000_000);
        assert_eq!(ProbeSummary::default().availability_ppm(), 0);
    }
}
