//! Probe scenarios: the prober's judge rule (`streamr_core::probe_judge`, the code the
//! coordinator's prober runs) against honest relays through what can go wrong around them and
//! against relays that lie to it (`streamr-sim --probe-scenarios`).
//!
//! Each scenario runs one hour of one relay of a stream cut into 4 s segments. The origin's
//! reports reach the coordinator in order, late during a coordinator outage (queued, then
//! delivered as a backlog); the coordinator, when up, runs a probe round every few seconds:
//! it settles the relay's held probe (fetching the playlist again while the newest probed
//! segment is its open end), or, when the relay is due, fetches its playlist, picks two or three
//! of the newest probe candidates and judges them. Held probes are kept across a coordinator
//! outage, as the coordinator keeps them in storage. The relay's playlist is real HLS text and
//! each behaviour decides what it lists and serves.
//!
//! Availability is the share of judged probes passed (a node never judged has 0), and the
//! reward effect is the node's reward weight ([`node_weight`]) against the honest baseline's,
//! everything else equal. The bound every attack is held to: no more availability than the
//! honest relay; a relay serving a segment the origin never reported fails or is never judged,
//! except the newest segment of a probe followed by a claimed discontinuity, which is spared
//! only in a probe that verified another segment of the origin's, and (when the origin names
//! its run in each report, as by default here) only where the origin's stream broke off.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use streamr_core::probe_judge::{
    place_in, probe_candidates, DropReason, HeldProbe, OriginReports, Place, ReportedSegment,
    Settle,
};
use streamr_core::{
    node_weight, segment_hash, ContentDigest, NodeEpochInput, NodeId, OperatorId, ProbePolicy,
    ProbeResult, ProbeSummary, RewardConfig, Subnet24, PPM,
};

const SEGMENT_MS: u64 = 4_000;
const HOUR_MS: u64 = 3_600_000;
/// When the origin's first segment is cut (ms from the simulation's start).
const START_MS: u64 = 4_000;
/// How long after the origin cuts a segment the relay lists it.
const RELAY_LAG_MS: u64 = 300;
/// How far ahead the origin's clock runs (within the judge's slack).
const ORIGIN_SKEW_MS: u64 = 1_500;
/// Reports the coordinator reads for a fresh probe and for a held one (as the prober does).
const FRESH_REPORTS: usize = 60;
const HELD_REPORTS: usize = 600;
/// A stream is probed only while the origin's newest report is at most this old.
const REPORTS_CURRENT_MS: u64 = 20_000;
/// How long a restarted origin takes to cut its new run's first segment.
const RESTART_MS: u64 = 3_000;

/// What the relay lists and serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// The origin's segments, as the origin cut them (a segment cut short where the origin
    /// stopped, then `EXT-X-DISCONTINUITY`).
    Honest,
    /// Forged bytes for whatever segment is its newest when asked.
    ForgedNewest,
    /// Its playlist stops going on at this time, its newest segment then forged.
    Stuck(u64),
    /// Forged bytes for its newest segment, and every segment renamed on every playlist fetch.
    RenamedAway,
    /// Forged bytes for one segment in this many, each followed by a claimed
    /// `EXT-X-DISCONTINUITY` once the next segment is listed.
    DiscontinuityLiar(u64),
    /// Forged bytes for one segment in this many, the segment before each listed with
    /// `EXT-X-GAP` to shield it from probes (and served to nobody).
    GapShield(u64),
}

/// One scenario.
#[derive(Clone, Debug)]
struct Scenario {
    name: &'static str,
    behaviour: Behaviour,
    /// Coordinator outages, `[from, to)`: no probe rounds, reports queued.
    outages: Vec<(u64, u64)>,
    /// Spacing of the backlog's reports after an outage.
    backlog_ms: u64,
    /// Times the origin is killed (its open segment never reported) and restarted.
    restarts: Vec<u64>,
    /// Probe round spacing (a round probes every node; slow with many nodes).
    round_ms: u64,
    /// Segments the relay's playlist lists.
    window: usize,
    /// How long the origin's reports take to reach the coordinator.
    report_delay_ms: u64,
    /// Whether the origin names its run in each report (an origin predating runs does not).
    runs_reported: bool,
    /// Whether this is an attack (held to the bound) or an honest relay (never failed).
    attack: bool,
}

impl Scenario {
    fn honest(name: &'static str) -> Self {
        Self {
            name,
            behaviour: Behaviour::Honest,
            outages: Vec::new(),
            backlog_ms: 100,
            restarts: Vec::new(),
            round_ms: 5_000,
            window: 5,
            report_delay_ms: 1_500,
            runs_reported: true,
            attack: false,
        }
    }

    fn attack(name: &'static str, behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            attack: true,
            ..Self::honest(name)
        }
    }

    /// The same against an origin that names no run in its reports.
    fn without_runs(self, name: &'static str) -> Self {
        Self {
            name,
            runs_reported: false,
            ..self
        }
    }
}

/// One segment the origin cut (or began: cut short where it was killed).
#[derive(Clone, Debug)]
struct OriginSegment {
    /// Name in the relay's playlist.
    name: String,
    /// When it was cut (true time).
    cut_ms: u64,
    hash: ContentDigest,
    /// Cut short where the origin was killed: never reported.
    cut_short: bool,
    /// The first of a new run: the relay lists `EXT-X-DISCONTINUITY` before it.
    new_run: bool,
}

/// The origin's hour: its segments and, in delivery order, its reports (on its clock, with its
/// place on the chain and its run when the origin names it) and when each was delivered.
fn origin(scenario: &Scenario) -> (Vec<OriginSegment>, Vec<(ReportedSegment, u64)>) {
    let mut segments = Vec::new();
    let mut runs = Vec::new();
    let mut run = 0u64;
    let mut k = 0u64;
    let mut cut = START_MS;
    let mut restarts = scenario.restarts.iter().copied().peekable();
    let mut new_run = false;
    while cut <= HOUR_MS + 120_000 {
        if let Some(kill) = restarts.next_if(|kill| *kill < cut) {
            // The open segment is cut short at the kill; the new run cuts after the restart.
            segments.push(OriginSegment {
                name: format!("{run}-{k}.ts"),
                cut_ms: kill,
                hash: segment_hash(format!("partial {run} {k}").as_bytes()),
                cut_short: true,
                new_run,
            });
            runs.push(run);
            run += 1;
            k = 0;
            cut = kill + RESTART_MS + SEGMENT_MS;
            new_run = true;
            continue;
        }
        segments.push(OriginSegment {
            name: format!("{run}-{k}.ts"),
            cut_ms: cut,
            hash: segment_hash(format!("origin {run} {k}").as_bytes()),
            cut_short: false,
            new_run,
        });
        runs.push(run);
        new_run = false;
        k += 1;
        cut += SEGMENT_MS;
    }
    let mut reports: Vec<(ReportedSegment, u64)> = Vec::new();
    let mut last_delivered = 0u64;
    let reported = segments.iter().zip(&runs).filter(|(s, _)| !s.cut_short);
    for (sequence, (segment, run)) in reported.enumerate() {
        let mut at = segment.cut_ms + scenario.report_delay_ms;
        if let Some((_, to)) = scenario
            .outages
            .iter()
            .find(|(from, to)| at >= *from && at < *to)
        {
            at = *to;
        }
        // In order, one report per `backlog_ms` at most: a backlog drains at that rate.
        if last_delivered > 0 {
            at = at.max(last_delivered + scenario.backlog_ms);
        }
        last_delivered = at;
        let report = ReportedSegment {
            hash: segment.hash,
            sequence: sequence as u64,
            published_ms: segment.cut_ms + ORIGIN_SKEW_MS,
            run: scenario.runs_reported.then_some(*run),
        };
        reports.push((report, at));
    }
    (segments, reports)
}

/// The relay of one scenario.
struct Relay<'a> {
    behaviour: Behaviour,
    window: usize,
    origin: &'a [OriginSegment],
    fetches: u64,
}

impl Relay<'_> {
    /// The segments it lists at `at`: (index into the origin's segments, discontinuity before).
    fn listed(&self, at: u64) -> Vec<(usize, bool)> {
        let at = match self.behaviour {
            Behaviour::Stuck(from) => at.min(from),
            _ => at,
        };
        let have: Vec<usize> = self
            .origin
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cut_ms + RELAY_LAG_MS <= at)
            .map(|(i, _)| i)
            .collect();
        let from = have.len().saturating_sub(self.window);
        let mut listed = Vec::new();
        for (n, &i) in have.iter().enumerate().skip(from) {
            let new_run = self.origin.get(i).is_some_and(|s| s.new_run);
            let after_claimed = match self.behaviour {
                Behaviour::DiscontinuityLiar(every) => n
                    .checked_sub(1)
                    .and_then(|before| have.get(before))
                    .is_some_and(|before| self.forged(*before, every)),
                _ => false,
            };
            listed.push((i, n > from && (new_run || after_claimed)));
        }
        listed
    }

    fn forged(&self, index: usize, every: u64) -> bool {
        index as u64 % every == every - 1
    }

    /// Its playlist at `at`, and the URI each listed segment goes by in it.
    fn playlist(&mut self, at: u64) -> (String, Vec<(String, usize)>) {
        self.fetches += 1;
        let mut text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:{at}\n");
        let mut uris = Vec::new();
        for (i, discontinuity) in self.listed(at) {
            let Some(segment) = self.origin.get(i) else {
                continue;
            };
            if discontinuity {
                text.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Behaviour::GapShield(every) = self.behaviour {
                if self.forged(i + 1, every) {
                    text.push_str("#EXT-X-GAP\n");
                }
            }
            let uri = match self.behaviour {
                Behaviour::RenamedAway => format!("{}-{}.ts", segment.name, self.fetches),
                _ => segment.name.clone(),
            };
            text.push_str(&format!("#EXTINF:4.000,\n{uri}\n"));
            uris.push((uri, i));
        }
        (text, uris)
    }

    /// The hash of what it serves for the segment `index` when its playlist's newest is
    /// `newest`.
    fn serve(&self, index: usize, newest: usize) -> ContentDigest {
        let real = self
            .origin
            .get(index)
            .map_or_else(ContentDigest::default, |s| s.hash);
        let forged = segment_hash(format!("forged {index}").as_bytes());
        match self.behaviour {
            Behaviour::Honest => real,
            Behaviour::ForgedNewest | Behaviour::Stuck(_) | Behaviour::RenamedAway => {
                if index == newest {
                    forged
                } else {
                    real
                }
            }
            Behaviour::DiscontinuityLiar(every) | Behaviour::GapShield(every) => {
                if self.forged(index, every) {
                    forged
                } else {
                    real
                }
            }
        }
    }

    fn is_real(&self, index: usize, hash: &ContentDigest) -> bool {
        self.origin
            .get(index)
            .is_some_and(|s| s.hash == *hash && !s.cut_short)
    }
}

/// The origin's newest `limit` reports delivered by `at`.
fn reports_at(reports: &[(ReportedSegment, u64)], at: u64, limit: usize) -> OriginReports {
    let delivered = reports.partition_point(|(_, by)| *by <= at);
    let from = delivered.saturating_sub(limit);
    reports
        .get(from..delivered)
        .unwrap_or_default()
        .iter()
        .map(|(report, _)| *report)
        .collect()
}

/// One scenario's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeOutcome {
    /// The scenario.
    pub name: &'static str,
    /// Whether it is an attack.
    pub attack: bool,
    /// Probes downloaded.
    pub probes: u64,
    /// Probes judged passed.
    pub passed: u64,
    /// Probes judged failed.
    pub failed: u64,
    /// Probes dropped without a verdict (newest segment gone, or the origin silent).
    pub dropped: u64,
    /// Probes still held at the end.
    pub held_at_end: u64,
    /// Availability, ppm.
    pub availability_ppm: u64,
    /// The relay's reward weight against the honest baseline's, ppm.
    pub reward_vs_honest_ppm: u64,
    /// Probed segments the origin never reported (forged, or an honest relay's cut short).
    pub unreported_probed: u64,
    /// Of those, in probes that passed.
    pub unreported_in_passed: u64,
    /// Passed probes that verified no segment of the origin's (the bound says 0).
    pub passed_without_a_verified_segment: u64,
    /// Probes dropped because every segment was spared as cut short (nothing verified).
    pub nothing_verified: u64,
    /// Longest a probe was held, ms.
    pub longest_hold_ms: u64,
}

/// A probe in flight: the judge's state and what the prober keeps beside it.
struct Held {
    probe: HeldProbe,
    newest_uri: String,
    unreported: u64,
    verified: u64,
}

fn run(scenario: &Scenario, seed: u64) -> ProbeOutcome {
    let (segments, reports) = origin(scenario);
    let mut relay = Relay {
        behaviour: scenario.behaviour,
        window: scenario.window,
        origin: &segments,
        fetches: 0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = ProbeOutcome {
        name: scenario.name,
        attack: scenario.attack,
        ..ProbeOutcome::default()
    };
    let mut held: Option<Held> = None;
    let mut due = 30_000u64;
    let mut results = Vec::new();
    let mut finish = |held: &Held, settled: Settle, out: &mut ProbeOutcome, now: u64| {
        out.longest_hold_ms = out
            .longest_hold_ms
            .max(now.saturating_sub(held.probe.held_ms));
        match settled {
            Settle::Pass => {
                out.passed += 1;
                out.unreported_in_passed += held.unreported;
                out.passed_without_a_verified_segment += u64::from(held.verified == 0);
                results.push(true);
            }
            Settle::Fail => {
                out.failed += 1;
                results.push(false);
            }
            Settle::Dropped(reason) => {
                out.dropped += 1;
                out.nothing_verified += u64::from(reason == DropReason::NothingVerified);
            }
            _ => {}
        }
    };
    let mut now = 0;
    while now < HOUR_MS {
        now += scenario.round_ms;
        if scenario
            .outages
            .iter()
            .any(|(from, to)| now >= *from && now < *to)
        {
            continue;
        }
        if let Some(mut probe) = held.take() {
            if probe.probe.wants_playlist() {
                let (text, _) = relay.playlist(now);
                probe.probe.relisted(place_in(&text, &probe.newest_uri));
            }
            let settled = probe
                .probe
                .settle(&reports_at(&reports, now, HELD_REPORTS), now);
            if settled == Settle::Hold {
                held = Some(probe);
            } else {
                finish(&probe, settled, &mut out, now);
            }
            continue;
        }
        if now < due {
            continue;
        }
        // A stream whose origin reported nothing for 20 s is not probed (as the prober does).
        let current = reports_at(&reports, now, 1)
            .newest_published_ms()
            .is_some_and(|newest| newest + REPORTS_CURRENT_MS >= now);
        if !current {
            continue;
        }
        due = now + rng.gen_range(15_000..45_000);
        let (text, uris) = relay.playlist(now);
        let candidates = probe_candidates(&text);
        if candidates.len() <= 1 {
            continue;
        }
        let picks = candidates.get(1..).unwrap_or_default();
        let wanted = rng.gen_range(2..=3usize);
        let picked = picks
            .get(picks.len().saturating_sub(wanted)..)
            .unwrap_or_default();
        let newest_listed = uris.last().map_or(0, |(_, i)| *i);
        let mut probed = Vec::new();
        let mut unreported = 0;
        let mut verified = 0;
        for (n, uri) in picked.iter().enumerate() {
            let Some((_, index)) = uris.iter().find(|(u, _)| u.as_str() == *uri) else {
                continue;
            };
            let hash = relay.serve(*index, newest_listed);
            if relay.is_real(*index, &hash) {
                verified += 1;
            } else {
                unreported += 1;
            }
            let place = if n + 1 == picked.len() {
                place_in(&text, uri).unwrap_or(Place::Closed)
            } else {
                Place::Closed
            };
            probed.push((hash, place));
        }
        out.probes += 1;
        out.unreported_probed += unreported;
        let mut probe = Held {
            probe: HeldProbe::new(now, now, probed),
            newest_uri: picked.last().map_or_else(String::new, |u| (*u).to_owned()),
            unreported,
            verified,
        };
        let settled = probe
            .probe
            .settle(&reports_at(&reports, now, FRESH_REPORTS), now);
        if settled == Settle::Hold {
            held = Some(probe);
        } else {
            finish(&probe, settled, &mut out, now);
        }
    }
    out.held_at_end = u64::from(held.is_some());
    let node_id = NodeId::from_bytes([7; 32]);
    let probe_results: Vec<ProbeResult> = results
        .iter()
        .map(|passed| ProbeResult {
            node_id,
            hash_ok: *passed,
            timed_out: false,
            ttfb_ms: 50,
            throughput_bytes_per_s: 4_000_000,
        })
        .collect();
    out.availability_ppm =
        ProbeSummary::from_results(&ProbePolicy::default(), &probe_results).availability_ppm();
    out
}

/// The reward weight of a relay of `availability_ppm`, everything else fixed.
fn weight(availability_ppm: u64) -> u128 {
    let input = NodeEpochInput {
        node_id: NodeId::from_bytes([7; 32]),
        operator: OperatorId::new("relay").unwrap_or_else(|_| unreachable!("a valid name")),
        subnet: Subnet24([10, 0, 7]).into(),
        verified_bytes: 1_000_000_000,
        on_time_bytes: 1_000_000_000,
        flagged_bytes: 0,
        availability_ppm,
        unattested_bytes: 0,
        probe_capacity_bytes: 0,
        probation_ppm: PPM,
    };
    node_weight(&input, &RewardConfig::default())
}

fn scenarios() -> Vec<Scenario> {
    let outage = vec![(20 * 60_000, 22 * 60_000)];
    // Every 150 s from minute 5, at varying points of a segment.
    let restarts: Vec<u64> = (0..22)
        .map(|i| 300_000 + i * 150_000 + (i * 700) % 4_000)
        .collect();
    vec![
        Scenario::honest("honest relay (baseline)"),
        Scenario {
            outages: outage.clone(),
            backlog_ms: 2_000,
            ..Scenario::honest("honest relay through a 2 min coordinator outage and its backlog")
        },
        Scenario {
            restarts: restarts.clone(),
            round_ms: 1_000,
            ..Scenario::honest("honest relay cut short by 22 origin restarts")
        },
        Scenario {
            restarts: restarts.clone(),
            round_ms: 1_000,
            ..Scenario::honest("")
        }
        .without_runs("honest relay cut short by 22 origin restarts, origin naming no run"),
        Scenario {
            restarts: restarts.clone(),
            round_ms: 40_000,
            window: 3,
            ..Scenario::honest(
                "honest relay, origin restarts, slow probe round (40 s, 3-segment window)",
            )
        },
        Scenario {
            outages: outage,
            backlog_ms: 2_000,
            round_ms: 40_000,
            window: 3,
            ..Scenario::honest("honest relay, outage and backlog, slow probe round")
        },
        Scenario::attack("forged newest segment", Behaviour::ForgedNewest),
        Scenario::attack(
            "stuck playlist, forged newest segment",
            Behaviour::Stuck(5 * 60_000),
        ),
        Scenario::attack(
            "forged newest segment renamed away before judged",
            Behaviour::RenamedAway,
        ),
        Scenario::attack(
            "liar claiming a discontinuity after each forged segment (1 in 3)",
            Behaviour::DiscontinuityLiar(3),
        ),
        Scenario::attack("", Behaviour::DiscontinuityLiar(3)).without_runs(
            "liar claiming a discontinuity after each forged segment (1 in 3), origin naming no run",
        ),
        Scenario {
            restarts,
            ..Scenario::attack(
                "liar claiming a discontinuity after each forged segment (1 in 3), 22 origin restarts",
                Behaviour::DiscontinuityLiar(3),
            )
        },
        Scenario::attack(
            "liar claiming a discontinuity after each forged segment (1 in 2)",
            Behaviour::DiscontinuityLiar(2),
        ),
        Scenario::attack(
            "liar listing a gap before each forged segment (1 in 3)",
            Behaviour::GapShield(3),
        ),
        Scenario::attack(
            "liar listing a gap before each forged segment (1 in 2)",
            Behaviour::GapShield(2),
        ),
    ]
}

/// Runs every probe scenario.
pub fn run_all() -> Vec<ProbeOutcome> {
    let mut outcomes: Vec<ProbeOutcome> = scenarios()
        .iter()
        .map(|scenario| run(scenario, 0x5eed))
        .collect();
    let honest = weight(outcomes.first().map_or(0, |o| o.availability_ppm));
    for o in &mut outcomes {
        o.reward_vs_honest_ppm = (weight(o.availability_ppm) * u128::from(PPM))
            .checked_div(honest)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
    }
    outcomes
}

/// The scenarios as a table.
pub fn table(outcomes: &[ProbeOutcome]) -> String {
    let mut out = String::from(
        "| scenario | probes | passed | failed | dropped | availability | reward vs honest | unreported probed (in passes) | longest hold (s) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} % | {:.1} % | {} ({}) | {} |\n",
            o.name,
            o.probes,
            o.passed,
            o.failed,
            o.dropped,
            o.availability_ppm as f64 / 10_000.0,
            o.reward_vs_honest_ppm as f64 / 10_000.0,
            o.unreported_probed,
            o.unreported_in_passed,
            o.longest_hold_ms / 1_000,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_attacks_gain_nothing_beyond_the_bound_and_honest_relays_are_never_failed() {
        let outcomes = run_all();
        print!("{}", table(&outcomes));
        let honest = &outcomes[0];
        assert_eq!(honest.availability_ppm, PPM);
        assert!(honest.probes >= 60, "{honest:?}");
        for o in &outcomes {
            assert!(
                o.availability_ppm <= honest.availability_ppm,
                "{}: more availability than the honest relay",
                o.name
            );
            assert_eq!(
                o.passed_without_a_verified_segment, 0,
                "{}: passed on no verified segment",
                o.name
            );
            assert!(
                o.longest_hold_ms <= 120_000 + 40_000,
                "{}: held past the limit",
                o.name
            );
            if o.attack {
                continue;
            }
            assert_eq!(o.failed, 0, "{}: an honest relay failed", o.name);
            assert!(o.passed > 0, "{}", o.name);
            assert_eq!(o.availability_ppm, PPM, "{}", o.name);
        }
        let by_name = |name: &str| {
            outcomes
                .iter()
                .find(|o| o.name.starts_with(name))
                .unwrap_or_else(|| panic!("scenario {name}"))
        };
        // Every probe of a relay forging its newest segment fails; a stuck playlist too; one
        // renaming its segments away is never judged (availability 0: never passed).
        for name in [
            "forged newest",
            "stuck playlist",
            "forged newest segment renamed",
        ] {
            let o = by_name(name);
            assert_eq!(o.passed, 0, "{name}: {o:?}");
            assert_eq!(o.availability_ppm, 0, "{name}");
            assert!(o.unreported_probed > 0, "{name}");
        }
        assert!(by_name("forged newest segment renamed").dropped > 0);
        // Restarts: the honest relay's cut-short segments were probed and spared.
        assert!(by_name("honest relay cut short").unreported_probed > 0);
        // The outage held probes through the backlog and judged them.
        assert!(by_name("honest relay through").longest_hold_ms > 0);
        // The discontinuity liar: spared only its newest segment, each in a probe that verified
        // at least one of the origin's.
        let liars = outcomes
            .iter()
            .filter(|o| o.name.starts_with("liar claiming a discontinuity"));
        for o in liars {
            assert!(o.unreported_in_passed <= o.passed, "{o:?}");
        }
        // An origin that names its runs says where its stream broke off: a forged segment claimed
        // cut short anywhere else fails, so the liar scores its true availability (the share of
        // probes that carried no forged segment), with or without real restarts.
        for name in [
            "liar claiming a discontinuity after each forged segment (1 in 3)",
            "liar claiming a discontinuity after each forged segment (1 in 2)",
            "liar claiming a discontinuity after each forged segment (1 in 3), 22",
        ] {
            let o = by_name(name);
            assert!(o.failed > 0, "{o:?}");
            assert!(o.availability_ppm < honest.availability_ppm, "{o:?}");
        }
        let o = by_name("liar claiming a discontinuity after each forged segment (1 in 3)");
        assert_eq!(o.unreported_in_passed, 0, "{o:?}");
        // Against an origin naming no run it is spared as before (the bound above).
        let legacy = by_name(
            "liar claiming a discontinuity after each forged segment (1 in 3), origin naming",
        );
        assert!(legacy.unreported_in_passed > 0, "{legacy:?}");
        // The gap liar: only the first gap in a window shields the segment after it, so the
        // other forged segments are probed and fail; its gaps serve nobody.
        let gap_liars = outcomes
            .iter()
            .filter(|o| o.name.starts_with("liar listing a gap"));
        for o in gap_liars {
            assert!(o.failed > 0, "{o:?}");
            assert!(o.availability_ppm < honest.availability_ppm, "{o:?}");
        }
    }
}
