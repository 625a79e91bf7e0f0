//! The multivariant playlist (RFC 8216bis section 4.4.6): one `EXT-X-STREAM-INF` per rendition
//! of a stream, with its measured bandwidth, RFC 6381 codecs, resolution and frame rate, and a
//! checker that parses one back.

use std::fmt::Write as _;

/// File name of a stream's multivariant playlist under `/{app}/{stream}/`.
pub const MULTIVARIANT_NAME: &str = "master.m3u8";

/// One variant stream: a media playlist and what a player needs to pick it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The media playlist's URI, relative to the multivariant playlist.
    pub uri: String,
    /// Peak segment bit rate, bits per second.
    pub bandwidth: u64,
    /// Average segment bit rate, bits per second.
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings of every track the variant carries.
    pub codecs: Vec<String>,
    /// Picture width and height in pixels.
    pub resolution: Option<(u16, u16)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

/// Renders a multivariant playlist listing `variants`, in order. Every variant's segments start
/// with a keyframe, so the playlist carries `EXT-X-INDEPENDENT-SEGMENTS`.
pub fn render_multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for variant in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={}",
            variant.bandwidth.max(1)
        );
        if let Some(average) = variant.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={}", average.max(1));
        }
        if !variant.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", variant.codecs.join(","));
        }
        if let Some((width, height)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some(rate) = variant.frame_rate.filter(|r| r.is_finite() && *r > 0.0) {
            let _ = write!(out, ",FRAME-RATE={rate:.3}");
        }
        out.push('\n');
        out.push_str(&variant.uri);
        out.push('\n');
    }
    out
}

/// A rule of RFC 8216bis a multivariant playlist breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultivariantViolation {
    /// The first line is not `#EXTM3U`.
    MissingHeader,
    /// A media playlist tag (`EXTINF`, `EXT-X-TARGETDURATION`, ...) in a multivariant playlist.
    MediaTag(String),
    /// An `EXT-X-STREAM-INF` without the required `BANDWIDTH`.
    MissingBandwidth(String),
    /// An attribute value of the wrong type (`name`, the tag line).
    BadAttribute(&'static str, String),
    /// `AVERAGE-BANDWIDTH` above `BANDWIDTH`.
    AverageAbovePeak(String),
    /// An `EXT-X-STREAM-INF` not followed by its URI line.
    MissingUri(String),
    /// The playlist lists no variant.
    NoVariant,
}

/// Checks a multivariant playlist and returns its variants in order, or what is wrong.
pub fn check_multivariant(text: &str) -> Result<Vec<Variant>, Vec<MultivariantViolation>> {
    let mut violations = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        violations.push(MultivariantViolation::MissingHeader);
    }
    let mut variants = Vec::new();
    let mut open: Option<(String, Variant)> = None;
    for line in lines {
        if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            if let Some((tag, _)) = open.take() {
                violations.push(MultivariantViolation::MissingUri(tag));
            }
            match parse_stream_inf(line, attributes) {
                Ok(variant) => open = Some((line.to_owned(), variant)),
                Err(violation) => violations.push(violation),
            }
        } else if line.starts_with('#') {
            const MEDIA_TAGS: [&str; 8] = [
                "#EXTINF",
                "#EXT-X-TARGETDURATION",
                "#EXT-X-MEDIA-SEQUENCE",
                "#EXT-X-DISCONTINUITY",
                "#EXT-X-ENDLIST",
                "#EXT-X-PART",
                "#EXT-X-MAP",
                "#EXT-X-PROGRAM-DATE-TIME",
            ];
            if MEDIA_TAGS.iter().any(|tag| line.starts_with(tag)) {
                violations.push(MultivariantViolation::MediaTag(line.to_owned()));
            }
        } else if let Some((_, mut variant)) = open.take() {
            variant.uri = line.to_owned();
            variants.push(variant);
        }
    }
    if let Some((tag, _)) = open {
        violations.push(MultivariantViolation::MissingUri(tag));
    }
    if variants.is_empty() && violations.is_empty() {
        violations.push(MultivariantViolation::NoVariant);
    }
    if violations.is_empty() {
        Ok(variants)
    } else {
        Err(violations)
    }
}

/// The attributes of one `EXT-X-STREAM-INF` (the URI comes from the next line).
fn parse_stream_inf(line: &str, attributes: &str) -> Result<Variant, MultivariantViolation> {
    let bad = |name: &'static str| MultivariantViolation::BadAttribute(name, line.to_owned());
    let mut variant = Variant {
        uri: String::new(),
        bandwidth: 0,
        average_bandwidth: None,
        codecs: Vec::new(),
        resolution: None,
        frame_rate: None,
    };
    let mut bandwidth = None;
    for (name, value) in attribute_pairs(attributes) {
        match name {
            "BANDWIDTH" => bandwidth = Some(value.parse::<u64>().map_err(|_| bad("BANDWIDTH"))?),
            "AVERAGE-BANDWIDTH" => {
                let average = value.parse().map_err(|_| bad("AVERAGE-BANDWIDTH"))?;
                variant.average_bandwidth = Some(average);
            }
            "CODECS" => {
                let quoted = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| bad("CODECS"))?;
                variant.codecs = quoted.split(',').map(str::to_owned).collect();
                if variant.codecs.iter().any(|c| c.is_empty()) {
                    return Err(bad("CODECS"));
                }
            }
            "RESOLUTION" => {
                let (width, height) = value.split_once('x').ok_or_else(|| bad("RESOLUTION"))?;
                let width = width.parse().map_err(|_| bad("RESOLUTION"))?;
                let height = height.parse().map_err(|_| bad("RESOLUTION"))?;
                variant.resolution = Some((width, height));
            }
            "FRAME-RATE" => {
                let rate: f64 = value.parse().map_err(|_| bad("FRAME-RATE"))?;
                if !rate.is_finite() || rate <= 0.0 {
                    return Err(bad("FRAME-RATE"));
                }
                variant.frame_rate = Some(rate);
            }
            _ => {}
        }
    }
    variant.bandwidth =
        bandwidth.ok_or_else(|| MultivariantViolation::MissingBandwidth(line.to_owned()))?;
    if variant
        .average_bandwidth
        .is_some_and(|average| average > variant.bandwidth)
    {
        return Err(MultivariantViolation::AverageAbovePeak(line.to_owned()));
    }
    Ok(variant)
}

/// `NAME=value` pairs of an attribute list; commas inside quoted strings do not split.
fn attribute_pairs(list: &str) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (at, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.extend(list[start..at].split_once('='));
                start = at + 1;
            }
            _ => {}
        }
    }
    pairs.extend(list[start..].split_once('='));
    pairs
}

/// Peak and average segment bit rates (bits per second) of segments given as `(bytes,
/// duration in ms)`, in order. The peak is the largest rate of any run of consecutive segments
/// lasting 0.5 to 1.5 target durations (RFC 8216bis section 4.4.6.2), or of a single segment
/// when none does; the average is all bytes over all the time. `None` without a timed segment.
pub fn segment_bit_rates(
    segments: &[(usize, u64)],
    target_duration_secs: u32,
) -> Option<(u64, u64)> {
    let rate = |bytes: u64, ms: u64| bytes.saturating_mul(8_000) / ms.max(1);
    let timed: Vec<(u64, u64)> = segments
        .iter()
        .filter(|s| s.1 > 0)
        .map(|&(len, ms)| (len as u64, ms))
        .collect();
    let total_ms: u64 = timed.iter().map(|s| s.1).sum();
    if total_ms == 0 {
        return None;
    }
    let total_bytes: u64 = timed.iter().map(|s| s.0).sum();
    let target_ms = u64::from(target_duration_secs.max(1)) * 1_000;
    let (low, high) = (target_ms / 2, target_ms * 3 / 2);
    let mut peak = 0;
    let mut single_peak = 0;
    for (start, &(len, duration)) in timed.iter().enumerate() {
        single_peak = single_peak.max(rate(len, duration));
        let (mut bytes, mut ms) = (0, 0);
        for &(len, duration) in &timed[start..] {
            bytes += len;
            ms += duration;
            if ms > high {
                break;
            }
            if ms >= low {
                peak = peak.max(rate(bytes, ms));
            }
        }
    }
    let average = rate(total_bytes, total_ms);
    let peak = if peak == 0 { single_peak } else { peak };
    Some((peak.max(average), average))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn avc_variant() -> Variant {
        Variant {
            uri: "ll.m3u8".into(),
            bandwidth: 2_500_000,
            average_bandwidth: Some(2_000_000),
            codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
            resolution: Some((1280, 720)),
            frame_rate: Some(29.97),
        }
    }

    #[test]
    fn renders_the_stream_inf_attributes() {
        let text = render_multivariant(&[avc_variant()]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2000000,\
             CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=29.970\nll.m3u8\n"
        );
        assert_eq!(check_multivariant(&text), Ok(vec![avc_variant()]));
    }

    #[test]
    fn the_checker_refuses_what_the_spec_forbids() {
        let cases = [
            ("#EXT-X-STREAM-INF:BANDWIDTH=1\nll.m3u8\n", "header"),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"avc1\"\nll.m3u8\n",
                "bandwidth",
            ),
            ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "uri"),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=2\na\n",
                "average",
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=12\na\n",
                "resolution",
            ),
            (
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=avc1\na\n",
                "unquoted",
            ),
            ("#EXTM3U\n#EXTINF:2.0,\n1.ts\n", "media tag"),
            ("#EXTM3U\n", "empty"),
        ];
        for (text, why) in cases {
            assert!(check_multivariant(text).is_err(), "{why}: {text}");
        }
    }

    #[test]
    fn peak_rate_is_over_runs_near_the_target_duration() {
        // 1 s segments of 100, 300, 100 kB. With a 4 s target, runs last 2 to 6 s: the peak is
        // 400 kB in 2 s; with a 2 s target the 300 kB second alone counts.
        let segments = [(100_000, 1_000), (300_000, 1_000), (100_000, 1_000)];
        let (peak, average) = segment_bit_rates(&segments, 4).unwrap();
        assert_eq!(peak, 1_600_000);
        assert_eq!(
            segment_bit_rates(&segments, 2).map(|r| r.0),
            Some(2_400_000)
        );
        assert_eq!(average, 500_000 * 8 / 3);
        assert_eq!(segment_bit_rates(&[], 2), None);
        // One long segment: its own rate.
        assert_eq!(
            segment_bit_rates(&[(1_000, 8_000)], 2),
            Some((1_000, 1_000))
        );
    }

    fn codec() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<[u8; 3]>()).prop_map(|[p, c, l]| format!("avc1.{p:02x}{c:02x}{l:02x}")),
            (1u8..4, 0u32..0xff, 30u8..186).prop_map(|(p, c, l)| format!("hvc1.{p}.{c:X}.L{l}.B0")),
            (0u8..3, 0u8..24).prop_map(|(p, l)| format!("av01.{p}.{l:02}M.08")),
            Just("mp4a.40.2".to_owned()),
            Just("mp4a.40.34".to_owned()),
            Just("opus".to_owned()),
        ]
    }

    prop_compose! {
        fn variant()(
            uri in "[a-z]{1,8}\\.m3u8",
            average in 1u64..50_000_000,
            extra in 0u64..10_000_000,
            codecs in proptest::collection::vec(codec(), 1..3),
            resolution in proptest::option::of((1u16..8_000, 1u16..8_000)),
            millihertz in proptest::option::of(1u32..240_000),
        ) -> Variant {
            Variant {
                uri,
                bandwidth: average + extra,
                average_bandwidth: Some(average),
                codecs,
                resolution,
                frame_rate: millihertz.map(|m| f64::from(m) / 1_000.0),
            }
        }
    }

    proptest! {
        /// Any rendered multivariant playlist passes the checker and parses back to its
        /// variants: the CODECS list, rates, resolution and frame rate (to 3 decimals).
        #[test]
        fn rendered_playlists_parse_back(
            variants in proptest::collection::vec(variant(), 1..4),
        ) {
            let text = render_multivariant(&variants);
            let parsed = check_multivariant(&text);
            prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
            let parsed = parsed.unwrap_or_default();
            prop_assert_eq!(parsed.len(), variants.len());
            for (back, sent) in parsed.iter().zip(&variants) {
                prop_assert_eq!(&back.uri, &sent.uri);
                prop_assert_eq!(&back.codecs, &sent.codecs);
                prop_assert_eq!(back.bandwidth, sent.bandwidth);
                prop_assert_eq!(back.average_bandwidth, sent.average_bandwidth);
                prop_assert_eq!(back.resolution, sent.resolution);
                let close = match (back.frame_rate, sent.frame_rate) {
                    (Some(a), Some(b)) => (a - b).abs() < 0.001,
                    (a, b) => a == b,
                };
                prop_assert!(close);
            }
        }

        /// The peak rate is never below the average, and both lie within the segments' own
        /// extremes.
        #[test]
        fn peak_is_at_least_the_average(
            segments in proptest::collection::vec((1usize..5_000_000, 1u64..12_000), 1..20),
            target in 1u32..12,
        ) {
            let (peak, average) = segment_bit_rates(&segments, target).unwrap_or((0, 0));
            let rates: Vec<u64> = segments
                .iter()
                .map(|&(len, ms)| len as u64 * 8_000 / ms)
                .collect();
            let highest = rates.iter().copied().max().unwrap_or(0);
            let lowest = rates.iter().copied().min().unwrap_or(0);
            prop_assert!(peak >= average);
            prop_assert!(peak <= highest + 1);
            prop_assert!(average + 1 >= lowest);
        }
    }
}
