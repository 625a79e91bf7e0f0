//! Checks a rendered LL-HLS media playlist against the rules of RFC 8216bis (and Apple's
//! LL-HLS requirements) that a player depends on.

use std::collections::HashMap;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlViolation {
    /// 1-based line number (0 for rules about the whole playlist).
    pub line: usize,
    /// The rule, in a few words.
    pub rule: &'static str,
    /// What was found.
    pub detail: String,
}

fn attributes(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, next)) => (value, next.strip_prefix(',').unwrap_or(next)),
                None => (quoted, ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value, next),
                None => (after, ""),
            }
        };
        out.insert(key.trim().to_string(), value.to_string());
        rest = next;
    }
    out
}

fn seconds(value: Option<&String>) -> Option<f64> {
    value.and_then(|v| v.parse::<f64>().ok())
}

/// Checks `text`, a media playlist whose segments are named `{msn}.m4s` and parts
/// `{msn}.{index}.m4s` (after any prefix). Rules: EXTM3U first; EXT-X-VERSION ≥ 9;
/// EXT-X-TARGETDURATION, EXT-X-PART-INF and EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD=YES,
/// PART-HOLD-BACK ≥ 3 × PART-TARGET and CAN-SKIP-UNTIL ≥ 6 × TARGETDURATION; EXTINF rounded ≤
/// TARGETDURATION; every part ≤ PART-TARGET, named after its segment's MSN and its index, parts
/// of a complete segment adding up to its EXTINF; the first part of each segment INDEPENDENT;
/// EXT-X-MAP before the first segment; EXT-X-SKIP only as the first segment line; the preload
/// hint naming the part after the last one; no preload hint after EXT-X-ENDLIST.
pub fn check_ll_playlist(text: &str) -> Vec<LlViolation> {
    let mut violations = Vec::new();
    let mut fail = |line: usize, rule: &'static str, detail: String| {
        violations.push(LlViolation { line, rule, detail })
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"#EXTM3U") {
        fail(1, "EXTM3U first", lines.first().unwrap_or(&"").to_string());
    }
    let mut version = None;
    let mut target = None;
    let mut part_target = None;
    let mut server_control = None;
    let mut msn: Option<u64> = None;
    let mut map_seen = false;
    let mut skip_seen_at = None;
    let mut segment_lines = 0usize;
    let mut parts_in_segment = 0u32;
    let mut part_sum = 0.0f64;
    let mut pending_extinf: Option<f64> = None;
    let mut hint: Option<(usize, String)> = None;
    let mut ended = false;
    let mut prefix: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            version = v.parse::<u32>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            part_target = seconds(attributes(v).get("PART-TARGET"));
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            server_control = Some((n, attributes(v)));
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = v.parse().ok();
        } else if line.starts_with("#EXT-X-MAP:") {
            map_seen = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            if segment_lines > 0 || skip_seen_at.is_some() {
                fail(n, "EXT-X-SKIP before every segment", line.to_string());
            }
            skip_seen_at = Some(n);
            let skipped: u64 = attributes(v)
                .get("SKIPPED-SEGMENTS")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            msn = msn.map(|m| m + skipped);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            segment_lines += 1;
            if !map_seen {
                fail(n, "EXT-X-MAP before media", line.to_string());
            }
            let attrs = attributes(v);
            let duration = seconds(attrs.get("DURATION")).unwrap_or(-1.0);
            if let Some(pt) = part_target {
                if duration > pt + 1e-9 || duration <= 0.0 {
                    fail(n, "part duration ≤ PART-TARGET", line.to_string());
                }
            }
            part_sum += duration;
            let uri = attrs.get("URI").cloned().unwrap_or_default();
            let (uri_prefix, name) = uri
                .rsplit_once('/')
                .map_or(("", uri.as_str()), |(p, n)| (p, n));
            prefix.get_or_insert_with(|| uri_prefix.to_string());
            let expected = format!("{}.{parts_in_segment}.m4s", msn.unwrap_or(0));
            if name != expected {
                fail(
                    n,
                    "part named after its MSN and index",
                    format!("{name} (expected {expected})"),
                );
            }
            if parts_in_segment == 0 && attrs.get("INDEPENDENT").map(String::as_str) != Some("YES")
            {
                fail(
                    n,
                    "first part of a segment INDEPENDENT=YES",
                    line.to_string(),
                );
            }
            parts_in_segment += 1;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let duration = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
            if let (Some(d), Some(t)) = (duration, target) {
                if d.round() as u64 > t {
                    fail(n, "EXTINF rounded ≤ TARGETDURATION", line.to_string());
                }
            }
            if parts_in_segment > 0 {
                if let Some(d) = duration {
                    if (d - part_sum).abs() > 0.0015 * f64::from(parts_in_segment) {
                        fail(
                            n,
                            "parts add up to the segment",
                            format!("{part_sum:.3} vs {d:.3}"),
                        );
                    }
                }
            }
            pending_extinf = duration;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            hint = Some((n, attributes(v).get("URI").cloned().unwrap_or_default()));
        } else if *line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            segment_lines += 1;
            if !map_seen {
                fail(n, "EXT-X-MAP before media", line.to_string());
            }
            if pending_extinf.take().is_none() {
                fail(n, "segment URI after EXTINF", line.to_string());
            }
            let name = line.rsplit('/').next().unwrap_or(line);
            let expected = format!("{}.m4s", msn.unwrap_or(0));
            if name != expected {
                fail(
                    n,
                    "segment named after its MSN",
                    format!("{name} (expected {expected})"),
                );
            }
            msn = msn.map(|m| m + 1);
            parts_in_segment = 0;
            part_sum = 0.0;
        }
    }
    match version {
        Some(v) if v >= 9 => {}
        other => fail(0, "EXT-X-VERSION ≥ 9", format!("{other:?}")),
    }
    let (Some(target), Some(part_target)) = (target, part_target) else {
        fail(
            0,
            "EXT-X-TARGETDURATION and EXT-X-PART-INF present",
            String::new(),
        );
        return violations;
    };
    match server_control {
        Some((n, attrs)) => {
            if attrs.get("CAN-BLOCK-RELOAD").map(String::as_str) != Some("YES") {
                fail(n, "CAN-BLOCK-RELOAD=YES", String::new());
            }
            let hold_back = seconds(attrs.get("PART-HOLD-BACK")).unwrap_or(0.0);
            if hold_back + 1e-9 < 3.0 * part_target {
                fail(
                    n,
                    "PART-HOLD-BACK ≥ 3 × PART-TARGET",
                    format!("{hold_back} vs {part_target}"),
                );
            }
            if let Some(skip) = seconds(attrs.get("CAN-SKIP-UNTIL")) {
                if skip + 1e-9 < 6.0 * target as f64 {
                    fail(n, "CAN-SKIP-UNTIL ≥ 6 × TARGETDURATION", format!("{skip}"));
                }
            } else if skip_seen_at.is_some() {
                fail(n, "EXT-X-SKIP needs CAN-SKIP-UNTIL", String::new());
            }
        }
        None => fail(0, "EXT-X-SERVER-CONTROL present", String::new()),
    }
    match (ended, hint) {
        (true, Some((n, _))) => fail(n, "no preload hint after EXT-X-ENDLIST", String::new()),
        (false, None) => fail(0, "a live playlist has a preload hint", String::new()),
        (false, Some((n, uri))) => {
            let name = uri.rsplit('/').next().unwrap_or(&uri);
            let expected = format!("{}.{parts_in_segment}.m4s", msn.unwrap_or(0));
            if name != expected {
                fail(
                    n,
                    "preload hint names the next part",
                    format!("{name} (expected {expected})"),
                );
            }
        }
        (true, None) => {}
    }
    violations
}
