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
/// of a complete segment adding up to its EXTINF, each one other than a segment's last and the
/// independent ones ≥ 85 % of PART-TARGET; the first part of each segment INDEPENDENT;
/// EXT-X-MAP before the first segment; EXT-X-SKIP only as the first segment line; the preload
/// hint naming the part after the last one (or, with no part listed after the last complete
/// segment, the first part of the segment after the next: that one may be listed without
/// parts); no preload hint after EXT-X-ENDLIST; a segment marked EXT-X-GAP lists no part (it
/// still has its EXTINF and URI, and its number).
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
    // The parts of the segment being listed: line, duration, INDEPENDENT=YES.
    let mut segment_parts: Vec<(usize, f64, bool)> = Vec::new();
    let mut pending_extinf: Option<f64> = None;
    let mut hint: Option<(usize, String)> = None;
    let mut ended = false;
    let mut prefix: Option<String> = None;
    // Line of an EXT-X-GAP whose segment URI is still to come.
    let mut gap_at: Option<usize> = None;
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
        } else if *line == "#EXT-X-GAP" {
            gap_at = Some(n);
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
            segment_parts.push((
                n,
                duration,
                attrs.get("INDEPENDENT").map(String::as_str) == Some("YES"),
            ));
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
            // Every part but the segment's last lasts at least 85 % of PART-TARGET, unless it
            // is independent.
            segment_parts.pop();
            if let Some(pt) = part_target {
                short_parts(&segment_parts, pt, &mut fail);
            }
            segment_parts.clear();
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
            if let Some(at) = gap_at.take().filter(|_| parts_in_segment > 0) {
                fail(
                    at,
                    "a GAP segment lists no part",
                    format!("{parts_in_segment} parts"),
                );
            }
            msn = msn.map(|m| m + 1);
            parts_in_segment = 0;
            part_sum = 0.0;
        }
    }
    // The open segment's parts: none of them is known to be its last yet.
    if let Some(pt) = part_target {
        short_parts(&segment_parts, pt, &mut fail);
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
            // With no part listed after the last complete segment, the open segment may be
            // one whose parts are not listed: the next part listed is the following one's
            // first.
            let after_unlisted = format!("{}.0.m4s", msn.unwrap_or(0).saturating_add(1));
            if name != expected && !(parts_in_segment == 0 && name == after_unlisted) {
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

/// Reports each part of `parts` that is not independent and lasts less than 85 % of
/// `part_target` (seconds): RFC 8216bis allows that only to a segment's last part.
fn short_parts(
    parts: &[(usize, f64, bool)],
    part_target: f64,
    fail: &mut impl FnMut(usize, &'static str, String),
) {
    let least = part_target * super::ll_packager::PART_MIN_PERCENT as f64 / 100.0;
    for (line, duration, independent) in parts {
        if !independent && *duration + 1e-9 < least {
            fail(
                *line,
                "part other than its segment's last or an independent one ≥ 85 % of PART-TARGET",
                format!("{duration:.3} s < {least:.4} s"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::{FlvTag, FlvTagType};
    use crate::hls::{LlEvent, LlHlsStream, LlPackagerConfig, SegmenterConfig, SegmenterEvent};
    use bytes::Bytes;
    use proptest::prelude::*;

    /// An Enhanced RTMP AV1 tag (the packager needs no real bitstream to cut parts).
    fn video(first: u8, timestamp: u64, body: &[u8]) -> FlvTag {
        let mut data = vec![first, b'a', b'v', b'0', b'1'];
        data.extend_from_slice(body);
        FlvTag {
            tag_type: FlvTagType::Video,
            timestamp: timestamp as u32,
            stream_id: 0,
            data: Bytes::from(data),
        }
    }

    fn opus(first: u8, timestamp: u64, body: &[u8]) -> FlvTag {
        let mut data = vec![first, b'O', b'p', b'u', b's'];
        data.extend_from_slice(body);
        FlvTag {
            tag_type: FlvTagType::Audio,
            timestamp: timestamp as u32,
            stream_id: 0,
            data: Bytes::from(data),
        }
    }

    /// An `onMetaData` tag declaring `fps` frames a second, as a publisher sends it.
    fn metadata(fps: f64) -> FlvTag {
        use crate::amf0::{encode_all, Amf0Value};
        let values = [
            Amf0Value::String("@setDataFrame".into()),
            Amf0Value::String("onMetaData".into()),
            Amf0Value::EcmaArray(vec![("framerate".into(), Amf0Value::Number(fps))]),
        ];
        FlvTag {
            tag_type: FlvTagType::ScriptData,
            timestamp: 0,
            stream_id: 0,
            data: encode_all(&values).unwrap().freeze(),
        }
    }

    /// A stream declaring (`onMetaData`) and sending video frames `interval` ms apart, frame `i`
    /// off by `jitter[i] - 1` ms, a keyframe every `gop` frames, with Opus every 20 ms when
    /// `audio`.
    fn stream_tags(interval: u64, jitter: &[u64], gop: usize, audio: bool) -> Vec<FlvTag> {
        let mut tags = vec![
            metadata(1_000.0 / interval as f64),
            video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00]),
        ];
        if audio {
            let head = b"OpusHead\x01\x02\x38\x01\x80\xBB\x00\x00\x00\x00\x00";
            tags.push(opus(0x90, 0, head));
        }
        let mut audio_at = 0;
        for (i, jitter) in jitter.iter().enumerate() {
            let timestamp = (i as u64 * interval + jitter).saturating_sub(1);
            while audio && audio_at < timestamp {
                tags.push(opus(0x91, audio_at, &[0xFC, 0xFF, 0xFE]));
                audio_at += 20;
            }
            let first = if i % gop == 0 { 0x91 } else { 0xA1 };
            tags.push(video(first, timestamp, &[0x32, 0x01, i as u8]));
        }
        tags
    }

    /// Like [`stream_tags`], but each GOP lasts between half and twice `gop` frames (a keyframe
    /// at every scene cut), chosen from the jitter values.
    fn irregular_stream_tags(
        interval: u64,
        jitter: &[u64],
        gop: usize,
        audio: bool,
    ) -> Vec<FlvTag> {
        let mut tags = stream_tags(interval, jitter, gop, audio);
        let mut next_keyframe = 0usize;
        let mut frame = 0usize;
        for tag in tags.iter_mut() {
            if tag.tag_type != FlvTagType::Video || tag.data.first() == Some(&0x90) {
                continue;
            }
            let mut data = tag.data.to_vec();
            let keyframe = frame == next_keyframe;
            data[0] = if keyframe { 0x91 } else { 0xA1 };
            if keyframe {
                let scale =
                    usize::try_from(jitter.get(frame).copied().unwrap_or(1)).unwrap_or(1) + 1; // 1..=3
                next_keyframe = frame + (gop * scale / 2).max(1);
            }
            tag.data = Bytes::from(data);
            frame += 1;
        }
        tags
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Frames up to ~1.1 fps with ±1 ms of timestamp jitter (FLV's millisecond rounding of
        /// a regular clock), with a part target above the frame interval: every playlist keeps
        /// the spec's rules (each part within PART-TARGET, every EXTINF within TARGETDURATION,
        /// parts adding up to their segment, each segment starting with an independent part),
        /// and PART-TARGET never changes.
        #[test]
        fn playlists_of_irregularly_timed_streams_keep_the_part_rules(
            interval in 15u64..900,
            jitter in proptest::collection::vec(0u64..=2, 40..120),
            gop_ms in 200u64..4_000,
            audio in any::<bool>(),
        ) {
            let gop = usize::try_from(gop_ms / interval).unwrap_or(1).max(1);
            let mut stream = LlHlsStream::new(
                SegmenterConfig { segment_duration_ms: 2_000, target_duration_secs: 12 },
                LlPackagerConfig::default(),
                6,
                "",
            );
            let mut part_targets = std::collections::BTreeSet::new();
            let mut parts = Vec::new();
            let tags = stream_tags(interval, &jitter, gop, audio);
            let mut outputs = Vec::new();
            for tag in &tags {
                outputs.push(stream.push(tag).unwrap().ll);
                let changed = outputs.last().is_some_and(|ll| !ll.is_empty());
                if changed && stream.playlist().has_segments() {
                    let text = stream.playlist().render(false);
                    let violations = check_ll_playlist(&text);
                    prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
                    let line = text.lines().find(|l| l.starts_with("#EXT-X-PART-INF:"));
                    part_targets.insert(line.unwrap_or_default().to_string());
                }
            }
            outputs.push(stream.finish().unwrap().ll);
            for event in outputs.into_iter().flatten() {
                if let LlEvent::PartReady(part) = event {
                    parts.push(part.duration_ms);
                }
            }
            let text = stream.playlist().render(false);
            prop_assert!(check_ll_playlist(&text).is_empty(), "{text}");
            prop_assert!(part_targets.len() <= 1, "{part_targets:?}");
            let target = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap();
            for duration in parts {
                prop_assert!(duration as f64 <= target * 1_000.0 + 1e-6, "{duration} ms > {target} s");
            }
        }
    }

    /// What one node cut from `tags`: its listed MPEG-TS segments (start, hash), its LL-HLS
    /// segments (start, hash, part hashes), the TARGETDURATION of its TS segments, and its final
    /// LL playlist.
    struct NodeOutput {
        /// The timing this node would announce (once both targets are fixed), with the index
        /// of the tag after which it was.
        timing: Option<(usize, crate::hls::HlsTiming)>,
        ts: Vec<(u64, blake3::Hash, u64)>,
        ll: Vec<(u64, blake3::Hash, Vec<blake3::Hash>)>,
        /// Each segment's start, duration and discontinuity flag, MPEG-TS then LL-HLS.
        cuts: [Vec<(u64, u64, bool)>; 2],
        ts_target_secs: Option<u32>,
        playlist: String,
    }

    fn node_output(tags: &[FlvTag], joining: bool) -> Result<NodeOutput, TestCaseError> {
        let stream = LlHlsStream::new(
            SegmenterConfig {
                segment_duration_ms: 2_000,
                target_duration_secs: 12,
            },
            LlPackagerConfig::default(),
            6,
            "",
        );
        let mut stream = if joining {
            stream.joining_mid_stream()
        } else {
            stream
        };
        let mut ts_events = Vec::new();
        let mut ll_events = Vec::new();
        let mut timing = None;
        for (index, tag) in tags.iter().enumerate() {
            let out = stream.push(tag).unwrap();
            if timing.is_none() && stream.packager().part_target_fixed() {
                timing = stream.segmenter().target_duration_secs().map(|secs| {
                    let timing = crate::hls::HlsTiming {
                        part_target_ms: Some(stream.packager().part_target_ms()),
                        target_duration_secs: secs,
                    };
                    (index, timing)
                });
            }
            if !out.ll.is_empty() && stream.playlist().has_segments() {
                let text = stream.playlist().render(false);
                let violations = check_ll_playlist(&text);
                prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
            }
            ts_events.extend(out.ts);
            ll_events.extend(out.ll);
        }
        let out = stream.finish().unwrap();
        ts_events.extend(out.ts);
        ll_events.extend(out.ll);
        let ts_segments: Vec<_> = ts_events
            .into_iter()
            .filter_map(|event| match event {
                SegmenterEvent::SegmentReady(s) => Some(s),
                _ => None,
            })
            .collect();
        let ll_segments: Vec<_> = ll_events
            .into_iter()
            .filter_map(|event| match event {
                LlEvent::SegmentReady(s) => Some(s),
                _ => None,
            })
            .collect();
        let cuts = [
            ts_segments
                .iter()
                .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                .collect(),
            ll_segments
                .iter()
                .map(|s| (s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                .collect(),
        ];
        let ts = ts_segments
            .into_iter()
            .map(|s| (s.start_timestamp_ms, s.hash, s.duration_ms))
            .collect();
        let ll = ll_segments
            .into_iter()
            .map(|s| (s.start_timestamp_ms, s.hash, s.part_hashes))
            .collect();
        Ok(NodeOutput {
            timing,
            ts,
            ll,
            cuts,
            ts_target_secs: stream.segmenter().target_duration_secs(),
            playlist: stream.playlist().render(false),
        })
    }

    /// What a friend joining at tag `start` (after the `headers` first tags) receives: the
    /// headers, the origin's timing announcement (`onStreamrHlsTiming`) before its first frame
    /// when the origin made it before `start`, then the tags from `start` on, with the
    /// announcement where the origin made it when that comes later, as a relay's upstream
    /// appends it to the stream.
    fn joined_tags(
        tags: &[FlvTag],
        headers: usize,
        start: usize,
        timing: Option<(usize, crate::hls::HlsTiming)>,
    ) -> Vec<FlvTag> {
        let notice = |at: usize, timing: &crate::hls::HlsTiming| FlvTag {
            tag_type: FlvTagType::ScriptData,
            timestamp: tags.get(at).map_or(0, |t| t.timestamp),
            stream_id: 0,
            data: timing.encode(),
        };
        let mut joined: Vec<FlvTag> = tags[..headers].to_vec();
        if let Some((at, timing)) = timing.as_ref().filter(|(at, _)| *at < start) {
            joined.push(notice(*at, timing));
        }
        for (index, tag) in tags.iter().enumerate().skip(start) {
            joined.push(tag.clone());
            if let Some((at, timing)) = timing.as_ref().filter(|(at, _)| *at == index) {
                joined.push(notice(*at, timing));
            }
        }
        joined
    }

    /// The playlist's TARGETDURATION and EXT-X-PART-INF lines.
    fn declared_targets(playlist: &str) -> Vec<&str> {
        playlist
            .lines()
            .filter(|l| {
                l.starts_with("#EXT-X-TARGETDURATION:") || l.starts_with("#EXT-X-PART-INF:")
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A friend that starts from any frame (after the sequence headers, as a relay's GOP
        /// replay hands it; the segmenter waits for a keyframe) lists only MPEG-TS and LL-HLS
        /// segments the origin lists too, with the same bytes and parts, leaves out at most its
        /// first, and its LL-HLS playlist declares the same TARGETDURATION and PART-TARGET. With
        /// regular GOPs every TS segment of both fits the TARGETDURATION its segmenter derived;
        /// irregular GOPs vary from half to one and a half times the drawn length. Audio-only
        /// streams (Opus every 20 ms) are cut by time at any of their frames. With a forward
        /// jump in the timeline (12.001 s to 60 s, to any frame of either track), the segments
        /// before it end by their last frame's end, none runs into the next, and the first
        /// after it is discontinuous, in both renditions of both nodes.
        #[test]
        fn a_friend_joining_at_any_frame_lists_only_the_origins_segments_and_parts(
            interval in 15u64..900,
            jitter in proptest::collection::vec(0u64..=2, 40..140),
            gop_ms in 200u64..4_000,
            irregular in any::<bool>(),
            audio in any::<bool>(),
            audio_only in any::<bool>(),
            join in any::<prop::sample::Index>(),
            at_keyframe in any::<bool>(),
            jump in proptest::option::of((any::<prop::sample::Index>(), 12_001u64..60_000, any::<bool>())),
        ) {
            let gop = usize::try_from(gop_ms / interval).unwrap_or(1).max(1);
            let audio = audio || audio_only;
            let mut tags = if irregular {
                irregular_stream_tags(interval, &jitter, gop, audio)
            } else {
                stream_tags(interval, &jitter, gop, audio)
            };
            // onMetaData, then the sequence headers (an audio-only stream keeps its metadata).
            if audio_only {
                tags.retain(|t| t.tag_type != FlvTagType::Video);
            }
            let headers = if audio && !audio_only { 3 } else { 2 };
            // Every tag from one after the first frame on (a video keyframe half the time) is
            // stamped that much later.
            let jump = jump.and_then(|(at, by, to_keyframe)| {
                let candidates: Vec<usize> = (headers + 1..tags.len())
                    .filter(|&i| {
                        !to_keyframe
                            || audio_only
                            || (tags[i].tag_type == FlvTagType::Video && tags[i].data.first() == Some(&0x91))
                    })
                    .collect();
                let at = *candidates.get(at.index(candidates.len().max(1)))?;
                let last_before = u64::from(tags[at - 1].timestamp);
                // Frames of the track that times segments before the jump: with one, no node
                // has measured its interval, and its duration is the packagers' fallback.
                let timing_frames = tags[headers..at]
                    .iter()
                    .filter(|t| audio_only || t.tag_type == FlvTagType::Video)
                    .count();
                for tag in &mut tags[at..] {
                    tag.timestamp += by as u32;
                }
                Some((last_before, u64::from(tags[at].timestamp), timing_frames))
            });
            let joinable: Vec<usize> = (headers..tags.len())
                .filter(|&i| {
                    !at_keyframe
                        || audio_only
                        || (tags[i].tag_type == FlvTagType::Video && tags[i].data.first() == Some(&0x91))
                })
                .collect();
            prop_assume!(!joinable.is_empty(), "no audio frame");
            let start = joinable[join.index(joinable.len())];
            let origin = node_output(&tags, false)?;
            let joined = joined_tags(&tags, headers, start, origin.timing);
            let friend = node_output(&joined, true)?;
            let joined_at = u64::from(tags[start].timestamp);
            prop_assert!(!origin.ts.is_empty() && !origin.ll.is_empty(), "the origin lists its segments");
            // The MPEG-TS TARGETDURATION follows the stream's first GOPs (never shorter than a
            // segment of regular GOPs); a later GOP longer than those is held to it: no segment
            // of either node rounds above the target its segmenter derived.
            for node in [&origin, &friend] {
                let target = node.ts_target_secs.map_or(12, u64::from);
                for (at, _, duration) in &node.ts {
                    prop_assert!((duration + 499) / 1_000 <= target, "TS segment at {at} ms lasts {duration} ms, TARGETDURATION {target}");
                }
            }
            if let Some((last_before, first_after, timing_frames)) = jump {
                // The frames that time segments come at most this far apart, the jump aside; a
                // lone frame before the jump lasts the packagers' fallback of 33 ms.
                let frame_ms = if audio_only { 20 } else { interval + 2 };
                let frame_ms = if timing_frames > 1 { frame_ms } else { frame_ms.max(33) };
                // Only a node that saw the frame before the jump can tell it.
                for (node, saw_jump) in [(&origin, true), (&friend, false)] {
                    for cuts in &node.cuts {
                        let after = saw_jump.then_some(first_after);
                        check_cut_around_jump(cuts, last_before, after, frame_ms)?;
                    }
                }
            }
            let ts_after = origin.ts.iter().filter(|(at, ..)| *at > joined_at).count();
            prop_assert!(friend.ts.len() + 1 >= ts_after, "TS: {} of {ts_after}", friend.ts.len());
            // A friend that derived another MPEG-TS target (irregular GOPs, joined past the
            // first ones) cuts at the origin's frames but holds its longer GOPs to its own
            // target.
            let same_ts_target = friend.ts_target_secs == origin.ts_target_secs;
            for segment in &friend.ts {
                prop_assert!(
                    origin.ts.contains(segment)
                        || !same_ts_target && origin.ts.iter().any(|o| o.0 == segment.0),
                    "TS segment at {} ms: {:?} at the origin, {:?} at the friend, joined at {joined_at} ms",
                    segment.0,
                    origin.ts.iter().find(|s| s.0 == segment.0),
                    segment
                );
            }
            let ll_after = origin.ll.iter().filter(|(at, ..)| *at > joined_at).count();
            prop_assert!(friend.ll.len() + 1 >= ll_after, "LL: {} of {ll_after}", friend.ll.len());
            for segment in &friend.ll {
                prop_assert!(origin.ll.contains(segment), "LL segment at {} ms", segment.0);
            }
            // The same segments in the same order, so the same part names relative to the first.
            let friend_starts: Vec<u64> = friend.ll.iter().map(|s| s.0).collect();
            let origin_starts: Vec<u64> = origin.ll.iter().map(|s| s.0).filter(|at| friend_starts.first().is_some_and(|first| at >= first)).collect();
            prop_assert_eq!(friend_starts, origin_starts);
            if !friend.ll.is_empty() {
                prop_assert_eq!(declared_targets(&friend.playlist), declared_targets(&origin.playlist));
            }
        }
    }

    /// `cuts` (start, duration, discontinuity; in order) are cut as a forward jump in the
    /// timeline after `last_before` (ms) requires: the segments before it end
    /// at most one frame interval (`frame_ms`) after its last frame, none runs past the start
    /// of the next, and the first from `first_after` on, when given and when a segment comes
    /// before it (a playlist's first segment needs none), carries a discontinuity.
    fn check_cut_around_jump(
        cuts: &[(u64, u64, bool)],
        last_before: u64,
        first_after: Option<u64>,
        frame_ms: u64,
    ) -> Result<(), TestCaseError> {
        for &(start, duration, _) in cuts.iter().filter(|cut| cut.0 <= last_before) {
            prop_assert!(
                start + duration <= last_before + frame_ms,
                "the segment at {start} ms lasts {duration} ms, past the jump after {last_before} ms: {cuts:?}"
            );
        }
        for pair in cuts.windows(2) {
            prop_assert!(
                pair[0].0 + pair[0].1 <= pair[1].0,
                "the segment at {} ms runs into the next one: {cuts:?}",
                pair[0].0
            );
        }
        let after = first_after.and_then(|at| cuts.iter().position(|cut| cut.0 >= at));
        if let Some(after) = after.filter(|&index| index > 0) {
            prop_assert!(cuts[after].2, "the first segment after the jump: {cuts:?}");
        }
        Ok(())
    }

    /// Origin and friend output of a 2 fps video stream with a frame at each of `frames` (ms),
    /// keyframes at `keyframes`; the friend joins at the keyframe at 1 s. Also the segments'
    /// starts and durations in MPEG-TS.
    fn origin_and_friend_joining_at_one_second(
        frames: Vec<u64>,
        keyframes: &[u64],
    ) -> (NodeOutput, NodeOutput) {
        let mut tags = vec![metadata(2.0), video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00])];
        for (i, timestamp) in frames.into_iter().enumerate() {
            let byte = if keyframes.contains(&timestamp) {
                0x91
            } else {
                0xA1
            };
            tags.push(video(byte, timestamp, &[0x32, 0x01, i as u8]));
        }
        let join = tags.iter().position(|t| t.timestamp == 1_000).unwrap();
        let origin = node_output(&tags, false).unwrap();
        let joined = joined_tags(&tags, 2, join, origin.timing);
        (origin, node_output(&joined, true).unwrap())
    }

    fn starts(ts: &[(u64, blake3::Hash, u64)]) -> Vec<(u64, u64)> {
        ts.iter()
            .map(|(at, _, duration)| (*at, *duration))
            .collect()
    }

    #[test]
    fn a_friend_joining_in_a_segment_the_origin_ends_early_lists_the_same_next_one() {
        // 2 fps, keyframes at 0, 1 s and 12.499 s (the last frame 499 ms after the one before),
        // then the stream ends. The origin's segment from 0 holds both first GOPs (one grid
        // slot) and ends at 12 s, the longest allowed: the frame at 12 s goes into no segment.
        // A friend joining at the keyframe at 1 s keeps it in its own first segment. The last
        // keyframe's segment then lasts the 499 ms before it on both nodes, in both renditions.
        let mut frames: Vec<u64> = (0..25).map(|i| i * 500).collect();
        frames.push(12_499);
        let (origin, friend) = origin_and_friend_joining_at_one_second(frames, &[0, 1_000, 12_499]);
        assert_eq!(starts(&origin.ts), vec![(0, 12_000), (12_499, 499)]);
        assert_eq!(starts(&friend.ts), vec![(12_499, 499)]);
        assert_eq!(friend.ts[0], origin.ts[1]);
        assert_eq!(friend.ll.len(), 1);
        assert_eq!(origin.ll.len(), 2);
        assert_eq!(friend.ll[0], origin.ll[1], "the LL-HLS segment at 12.499 s");
        assert!(
            friend.playlist.contains("#EXTINF:0.499,"),
            "{}",
            friend.playlist
        );
        assert!(
            origin.playlist.contains("#EXTINF:0.499,"),
            "{}",
            origin.playlist
        );
    }

    #[test]
    fn a_friend_joining_in_a_segment_the_origin_ends_at_a_stall_lists_the_same_next_one() {
        // 2 fps, keyframes at 0 and 1 s, then the video stalls from 10.5 s to a keyframe at 13 s,
        // and the stream ends. The origin's segment from 0 ends at 12 s, the longest allowed,
        // its frame at 10.5 s held to that limit; a friend joining at 1 s keeps the whole
        // 2.5 s interval in its own first segment. The frame at 13 s alone then lasts as long
        // as the interval before it on both nodes, in both renditions.
        let mut frames: Vec<u64> = (0..22).map(|i| i * 500).collect();
        frames.push(13_000);
        let (origin, friend) = origin_and_friend_joining_at_one_second(frames, &[0, 1_000, 13_000]);
        assert_eq!(starts(&origin.ts), vec![(0, 11_000), (13_000, 2_500)]);
        assert_eq!(friend.ts, origin.ts[1..]);
        assert_eq!(friend.ll, origin.ll[1..], "the LL-HLS segment at 13 s");
        assert!(
            friend.playlist.contains("#EXTINF:2.500,"),
            "{}",
            friend.playlist
        );
    }

    /// Feeds `tags` to a stream with the default part target (350 ms), checking every
    /// playlist version; returns the declared PART-TARGET and the parts' durations (ms).
    fn declared_part_target(tags: &[FlvTag]) -> (String, Vec<u64>) {
        let mut stream = LlHlsStream::new(
            SegmenterConfig {
                segment_duration_ms: 2_000,
                target_duration_secs: 12,
            },
            LlPackagerConfig::default(),
            6,
            "",
        );
        let mut parts = Vec::new();
        for tag in tags {
            let out = stream.push(tag).unwrap();
            if !out.ll.is_empty() && stream.playlist().has_segments() {
                let text = stream.playlist().render(false);
                let violations = check_ll_playlist(&text);
                assert!(violations.is_empty(), "{violations:#?}\n{text}");
            }
            parts.extend(out.ll.into_iter().filter_map(|event| match event {
                LlEvent::PartReady(part) => Some(part.duration_ms),
                _ => None,
            }));
        }
        stream.finish().unwrap();
        let text = stream.playlist().render(false);
        assert!(check_ll_playlist(&text).is_empty(), "{text}");
        let target = text
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
            .unwrap()
            .to_string();
        (target, parts)
    }

    /// A stream at `fps` (declared in onMetaData, or not) with a keyframe every 2 s, for 30 s.
    fn video_at(fps: f64, declared: bool) -> Vec<FlvTag> {
        let mut tags = Vec::new();
        if declared {
            tags.push(metadata(fps));
        }
        tags.push(video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00]));
        let frames = (30.0 * fps) as u64;
        let gop = ((2.0 * fps).round() as u64).max(1);
        for i in 0..frames {
            let timestamp = (i as f64 * 1_000.0 / fps).round() as u64;
            let first = if i % gop == 0 { 0x91 } else { 0xA1 };
            tags.push(video(first, timestamp, &[0x32, 0x01, i as u8]));
        }
        tags
    }

    #[test]
    fn part_target_fits_whole_frames_of_the_declared_rate() {
        // (fps, PART-TARGET): one frame and the jitter allowance under ~3 fps; the configured
        // 350 ms when whole frames fill 85 % of it; otherwise as many whole frames as fit.
        let cases = [
            (1.0, "1.010"),
            (2.0, "0.510"),
            (2.5, "0.410"),
            (3.0, "0.350"),
            (4.0, "0.260"),
            (5.0, "0.210"),
            (7.0, "0.296"),
            (10.0, "0.310"),
            (25.0, "0.350"),
            (30.0, "0.350"),
            (60.0, "0.350"),
        ];
        for (fps, expected) in cases {
            let (target, parts) = declared_part_target(&video_at(fps, true));
            assert_eq!(target, expected, "{fps} fps");
            let target_ms = (target.parse::<f64>().unwrap() * 1_000.0).round() as u64;
            assert!(!parts.is_empty(), "{fps} fps");
            assert!(
                parts.iter().all(|d| *d <= target_ms),
                "{fps} fps: {parts:?}"
            );
        }
    }

    #[test]
    fn without_a_declared_rate_the_configured_target_stays() {
        let (target, _) = declared_part_target(&video_at(30.0, false));
        assert_eq!(target, "0.350");
    }

    #[test]
    fn audio_only_aac_parts_are_whole_frames_of_its_sample_rate() {
        // AAC-LC: 1024 samples a frame, 128 ms at 8 kHz, 21.3 ms at 48 kHz.
        for (config, frame_ms, expected) in [
            ([0x15u8, 0x88], 128.0, "0.266"),
            ([0x11, 0x88], 1_024_000.0 / 48_000.0, "0.350"),
        ] {
            let aac = |first: u8, timestamp: u64, body: &[u8]| {
                let mut data = vec![0xAF, first];
                data.extend_from_slice(body);
                FlvTag {
                    tag_type: FlvTagType::Audio,
                    timestamp: timestamp as u32,
                    stream_id: 0,
                    data: Bytes::from(data),
                }
            };
            let mut tags = vec![aac(0x00, 0, &config)];
            for i in 0..(20_000.0 / frame_ms) as u64 {
                let at = (i as f64 * frame_ms).round() as u64;
                tags.push(aac(0x01, at, &[0x21, 0x10, i as u8]));
            }
            let (target, parts) = declared_part_target(&tags);
            assert_eq!(target, expected, "{frame_ms} ms frames");
            assert!(!parts.is_empty());
        }
    }

    #[test]
    fn the_checker_refuses_short_parts_other_than_a_segments_last_or_independent() {
        let playlist = |middle: &str| {
            format!(
                "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
                 #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.050\n\
                 #EXT-X-PART-INF:PART-TARGET=0.350\n#EXT-X-MEDIA-SEQUENCE:0\n\
                 #EXT-X-MAP:URI=\"init.mp4\"\n\
                 #EXT-X-PART:DURATION=0.340,URI=\"0.0.m4s\",INDEPENDENT=YES\n\
                 {middle}\
                 #EXT-X-PART:DURATION=0.100,URI=\"0.2.m4s\"\n\
                 #EXTINF:0.740,\n0.m4s\n\
                 #EXT-X-PART:DURATION=0.340,URI=\"1.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"1.1.m4s\"\n"
            )
        };
        let fine = playlist("#EXT-X-PART:DURATION=0.300,URI=\"0.1.m4s\"\n");
        assert_eq!(check_ll_playlist(&fine), vec![]);
        let independent = playlist("#EXT-X-PART:DURATION=0.100,URI=\"0.1.m4s\",INDEPENDENT=YES\n")
            .replace("#EXTINF:0.740", "#EXTINF:0.540");
        assert_eq!(check_ll_playlist(&independent), vec![]);
        let short = playlist("#EXT-X-PART:DURATION=0.290,URI=\"0.1.m4s\"\n")
            .replace("#EXTINF:0.740", "#EXTINF:0.730");
        let violations = check_ll_playlist(&short);
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert_eq!(violations[0].line, 9);
        // The open segment's parts are not its last yet.
        let open = fine.replace(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"1.1.m4s\"",
            "#EXT-X-PART:DURATION=0.200,URI=\"1.1.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"1.2.m4s\"",
        );
        assert_eq!(check_ll_playlist(&open).len(), 1);
    }

    #[test]
    fn a_gap_segment_keeps_its_extinf_and_uri_but_lists_no_part() {
        let playlist = |gap: &str| {
            format!(
                "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
                 #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.050\n\
                 #EXT-X-PART-INF:PART-TARGET=0.350\n#EXT-X-MEDIA-SEQUENCE:4\n\
                 #EXT-X-MAP:URI=\"init.mp4\"\n\
                 #EXTINF:1.000,\n4.m4s\n\
                 #EXT-X-GAP\n{gap}#EXTINF:1.000,\n5.m4s\n\
                 #EXT-X-PART:DURATION=0.340,URI=\"6.0.m4s\",INDEPENDENT=YES\n\
                 #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.m4s\"\n"
            )
        };
        assert_eq!(check_ll_playlist(&playlist("")), vec![]);
        let with_part = playlist("#EXT-X-PART:DURATION=0.340,URI=\"5.0.m4s\",INDEPENDENT=YES\n")
            .replace("#EXTINF:1.000,\n5.m4s", "#EXTINF:0.340,\n5.m4s");
        let violations = check_ll_playlist(&with_part);
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert_eq!(violations[0].rule, "a GAP segment lists no part");
        // Its number counts: the next segment is 6.
        let renumbered = playlist("").replace("6.0.m4s", "5.0.m4s");
        assert!(!check_ll_playlist(&renumbered).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Any GOP sequence from 0.2 s to 20 s (past the 12 s longest segment allowed), at
        /// frame rates down to 1 fps declared in onMetaData: every LL-HLS playlist version keeps
        /// every rule (each EXTINF rounded within TARGETDURATION, parts within PART-TARGET and
        /// 85 % of it), and every segment starts with an independent part.
        #[test]
        fn ll_playlists_of_any_gops_keep_every_rule(
            interval in prop::sample::select(vec![17u64, 33, 40, 100, 143, 250, 400, 500, 1_000]),
            gops in proptest::collection::vec(200u64..20_000, 1..10),
        ) {
            let mut tags = vec![
                metadata(1_000.0 / interval as f64),
                video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00]),
            ];
            let mut timestamp = 0;
            for gop in &gops {
                let end = timestamp + gop;
                let mut first = true;
                while first || timestamp < end {
                    let byte = if first { 0x91 } else { 0xA1 };
                    tags.push(video(byte, timestamp, &[0x32, 0x01, timestamp as u8]));
                    first = false;
                    timestamp += interval;
                }
            }
            let mut stream = LlHlsStream::new(SegmenterConfig::default(), LlPackagerConfig::default(), 6, "");
            for tag in &tags {
                let out = stream.push(tag).unwrap();
                if !out.ll.is_empty() && stream.playlist().has_segments() {
                    let text = stream.playlist().render(false);
                    let violations = check_ll_playlist(&text);
                    prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
                }
            }
            stream.finish().unwrap();
            let text = stream.playlist().render(false);
            let violations = check_ll_playlist(&text);
            prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
        }
    }

    /// Video frames `interval` ms apart, declared in onMetaData, a keyframe opening each GOP of
    /// `gops` (ms).
    fn gop_tags(interval: u64, gops: &[u64]) -> Vec<FlvTag> {
        let mut tags = vec![
            metadata(1_000.0 / interval as f64),
            video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00]),
        ];
        let mut timestamp = 0;
        for gop in gops {
            let end = timestamp + gop;
            let mut first = true;
            while first || timestamp < end {
                let byte = if first { 0x91 } else { 0xA1 };
                tags.push(video(byte, timestamp, &[0x32, 0x01, timestamp as u8]));
                first = false;
                timestamp += interval;
            }
        }
        tags
    }

    /// The LL-HLS playlist after feeding `tags` to a stream with the default configuration
    /// (4 s segments, 12 s the longest allowed), checked against every rule at every version,
    /// and the stream.
    fn ll_playlist_of(tags: &[FlvTag]) -> (String, LlHlsStream) {
        let mut stream = LlHlsStream::new(
            SegmenterConfig::default(),
            LlPackagerConfig::default(),
            6,
            "",
        );
        for tag in tags {
            let out = stream.push(tag).unwrap();
            if !out.ll.is_empty() && stream.playlist().has_segments() {
                let text = stream.playlist().render(false);
                assert_eq!(check_ll_playlist(&text), vec![], "{text}");
            }
        }
        (stream.playlist().render(false), stream)
    }

    /// Players take their live edge and reload cadence from TARGETDURATION: 30 fps with 2 s
    /// GOPs makes 4 s segments, and the LL-HLS playlist declares 4, as the MPEG-TS one does, not
    /// the 12 s longest allowed (video.js started 8 to 11 s behind live on it).
    #[test]
    fn the_ll_target_duration_is_the_segments_not_the_longest_allowed() {
        let (text, stream) = ll_playlist_of(&gop_tags(33, &[2_000; 12]));
        assert!(
            text.contains(
                "#EXT-X-TARGETDURATION:4
"
            ),
            "{text}"
        );
        assert_eq!(stream.segmenter().target_duration_secs(), Some(4));
        assert_eq!(stream.segmenter().ll_target_duration_secs(), Some(4));
        // 61 frames of 33 ms a GOP.
        assert!(text.contains("#EXTINF:4.026,"), "{text}");
    }

    /// A fixed target duration below the 4 s segment length (a node's
    /// `--hls-target-duration 2s`) is the LL-HLS playlist's too, and segments are aimed at
    /// it: 1 s and 2 s GOPs make 2 s segments, each whole in both renditions (the same frames,
    /// nothing left out, no discontinuity), every EXTINF within the target. Before, the LL-HLS
    /// playlist declared 4 and its 4 s segments held frames the MPEG-TS ones, cut at 2.499 s,
    /// left out.
    #[test]
    fn a_fixed_target_below_the_segment_length_holds_both_renditions() {
        for gop in [1_000, 2_000] {
            let mut stream = LlHlsStream::new(
                SegmenterConfig::default(),
                LlPackagerConfig::default(),
                6,
                "",
            )
            .with_fixed_target_duration(2);
            let mut ts = Vec::new();
            let mut ll = Vec::new();
            for tag in &gop_tags(33, &[gop; 12]) {
                let out = stream.push(tag).unwrap();
                ts.extend(out.ts);
                ll.extend(out.ll);
                if stream.playlist().has_segments() {
                    let text = stream.playlist().render(false);
                    assert_eq!(check_ll_playlist(&text), vec![], "{text}");
                }
            }
            let out = stream.finish().unwrap();
            ts.extend(out.ts);
            ll.extend(out.ll);
            let text = stream.playlist().render(false);
            assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
            assert_eq!(stream.segmenter().ll_target_duration_secs(), Some(2));
            let ts: Vec<(u64, u64, bool)> = ts
                .iter()
                .filter_map(|event| match event {
                    SegmenterEvent::SegmentReady(s) => {
                        Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                    }
                    _ => None,
                })
                .collect();
            let ll: Vec<(u64, u64, bool)> = ll
                .iter()
                .filter_map(|event| match event {
                    LlEvent::SegmentReady(s) => {
                        Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(ts, ll, "GOP {gop} ms");
            assert!(ts.len() >= 5, "GOP {gop} ms: {ts:?}");
            for (start, duration, discontinuity) in &ts {
                assert!(!discontinuity, "GOP {gop} ms: at {start} ms");
                assert!(
                    *duration <= 2_499,
                    "GOP {gop} ms: {duration} ms at {start} ms"
                );
            }
            // Aimed at 2 s: whole GOPs of about 2 s, the last (the stream's end) aside.
            for (start, duration, _) in &ts[..ts.len() - 1] {
                assert!(
                    *duration >= 1_900,
                    "GOP {gop} ms: {duration} ms at {start} ms"
                );
            }
        }
    }

    /// 20 s GOPs (`-g 600` at 30 fps) with the longest segment raised to 30 s: one whole GOP
    /// a segment in both renditions, TARGETDURATION 20 in the LL-HLS playlist, nothing left
    /// out. With the default 12 s, 8 s of every GOP are left out of both.
    #[test]
    fn long_gops_are_cut_whole_up_to_the_longest_segment_allowed() {
        for (longest, whole) in [(30, true), (12, false)] {
            let config = SegmenterConfig {
                target_duration_secs: longest,
                ..SegmenterConfig::default()
            };
            let mut stream = LlHlsStream::new(config, LlPackagerConfig::default(), 6, "");
            let mut ts = Vec::new();
            let mut ll = Vec::new();
            for tag in &gop_tags(33, &[20_000; 5]) {
                let out = stream.push(tag).unwrap();
                ts.extend(out.ts);
                ll.extend(out.ll);
                if stream.playlist().has_segments() {
                    let text = stream.playlist().render(false);
                    assert_eq!(check_ll_playlist(&text), vec![], "{text}");
                }
            }
            let text = stream.playlist().render(false);
            let ts: Vec<(u64, u64, bool)> = ts
                .iter()
                .filter_map(|event| match event {
                    SegmenterEvent::SegmentReady(s) => {
                        Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                    }
                    _ => None,
                })
                .collect();
            let ll: Vec<(u64, u64, bool)> = ll
                .iter()
                .filter_map(|event| match event {
                    LlEvent::SegmentReady(s) => {
                        Some((s.start_timestamp_ms, s.duration_ms, s.discontinuity))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(ts, ll, "longest {longest} s");
            assert!(ts.len() >= 4, "longest {longest} s: {ts:?}");
            if whole {
                assert!(text.contains("#EXT-X-TARGETDURATION:20\n"), "{text}");
                for (start, duration, discontinuity) in &ts {
                    assert!(!discontinuity, "at {start} ms");
                    assert!(
                        (19_900..=20_100).contains(duration),
                        "{duration} ms at {start} ms"
                    );
                }
            } else {
                assert!(text.contains("#EXT-X-TARGETDURATION:12\n"), "{text}");
                assert!(
                    ts.iter().all(|(_, duration, _)| *duration <= 12_499),
                    "{ts:?}"
                );
            }
        }
    }

    /// A GOP longer than the target duration the first GOPs set (a 9 s GOP after 2 s ones) is
    /// held to it in the LL-HLS rendition too: its segment ends by 4.499 s (EXTINF rounding to
    /// 4), the frames up to the next keyframe are left out, and the next segment follows a
    /// discontinuity; TARGETDURATION never changes.
    #[test]
    fn a_gop_longer_than_the_ll_target_duration_is_held_to_it() {
        let (text, _) = ll_playlist_of(&gop_tags(
            33,
            &[
                2_000, 2_000, 2_000, 2_000, 9_000, 2_000, 2_000, 2_000, 2_000,
            ],
        ));
        assert!(
            text.contains(
                "#EXT-X-TARGETDURATION:4
"
            ),
            "{text}"
        );
        let durations: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|d| d.trim_end_matches(',').parse().ok())
            .collect();
        assert!(durations.len() >= 4, "{text}");
        assert!(durations.iter().all(|d| *d < 4.5), "{durations:?}");
        assert!(
            text.contains(
                "#EXT-X-DISCONTINUITY
"
            ),
            "{text}"
        );
    }

    /// An AAC tag (`first` 0 for the sequence header, 1 for a frame).
    fn aac(first: u8, timestamp: u64, body: &[u8]) -> FlvTag {
        let mut data = vec![0xAF, first];
        data.extend_from_slice(body);
        FlvTag {
            tag_type: FlvTagType::Audio,
            timestamp: timestamp as u32,
            stream_id: 0,
            data: Bytes::from(data),
        }
    }

    /// Feeds `tags`, checking every playlist version that changed (and the last) against every
    /// rule and PART-TARGET for constancy; returns the parts cut and the segments whose parts
    /// were withdrawn.
    fn check_every_version(tags: &[FlvTag]) -> Result<(Vec<u64>, usize), TestCaseError> {
        let mut stream = LlHlsStream::new(
            SegmenterConfig::default(),
            LlPackagerConfig::default(),
            6,
            "",
        );
        let mut targets = std::collections::BTreeSet::new();
        let mut parts = Vec::new();
        let mut withdrawn = 0;
        let mut outputs = Vec::new();
        for tag in tags {
            let out = stream.push(tag).unwrap();
            let changed = !out.ll.is_empty();
            outputs.push(out.ll);
            if changed && stream.playlist().has_segments() {
                let text = stream.playlist().render(false);
                let violations = check_ll_playlist(&text);
                prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
                let delta = stream.playlist().render(true);
                let violations = check_ll_playlist(&delta);
                prop_assert!(violations.is_empty(), "{violations:#?}\n{delta}");
                targets.insert(
                    text.lines()
                        .find(|l| l.starts_with("#EXT-X-PART-INF:"))
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
        outputs.push(stream.finish().unwrap().ll);
        let text = stream.playlist().render(false);
        let violations = check_ll_playlist(&text);
        prop_assert!(violations.is_empty(), "{violations:#?}\n{text}");
        prop_assert!(targets.len() <= 1, "{targets:?}");
        for event in outputs.into_iter().flatten() {
            match event {
                LlEvent::PartReady(part) => parts.push(part.duration_ms),
                LlEvent::PartsWithdrawn { .. } => withdrawn += 1,
                _ => {}
            }
        }
        Ok((parts, withdrawn))
    }

    /// Frame gaps of a variable-frame-rate stream: mostly a video frame interval, sometimes a
    /// stall, now and then a long pause.
    fn frame_gaps() -> impl Strategy<Value = Vec<(u64, bool)>> {
        proptest::collection::vec(
            (
                prop_oneof![8 => 1u64..70, 2 => 70u64..450, 1 => 450u64..3_000],
                prop::bool::weighted(0.08),
            ),
            10..160,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Frames at any timing (variable frame rate, stalls, pauses of seconds), declaring any
        /// frame rate or none, with or without Opus beside the video, or audio-only (AAC at 8 or
        /// 48 kHz, or Opus) at any timing: every playlist version, full and delta, keeps every
        /// rule (no part over PART-TARGET, the 85 % rule, PART-HOLD-BACK ≥ 3 × PART-TARGET,
        /// parts adding up to their segment, the preload hint), and PART-TARGET never changes.
        #[test]
        fn parts_keep_the_rules_for_any_frame_timing(
            gaps in frame_gaps(),
            declared in proptest::option::of(0.2f64..240.0),
            kind in 0u8..5,
        ) {
            let mut tags = Vec::new();
            if let Some(fps) = declared {
                tags.push(metadata(fps));
            }
            let video_stream = kind < 2;
            match kind {
                0 | 1 => tags.push(video(0x90, 0, &[0x81, 0x00, 0x0C, 0x00])),
                2 => tags.push(aac(0x00, 0, &[0x15, 0x88])),
                3 => tags.push(aac(0x00, 0, &[0x11, 0x88])),
                _ => {}
            }
            if kind == 1 || kind == 4 {
                let head = b"OpusHead\x01\x02\x38\x01\x80\xBB\x00\x00\x00\x00\x00";
                tags.push(opus(0x90, 0, head));
            }
            let mut at = 0u64;
            let mut audio_at = 0u64;
            for (i, (gap, keyframe)) in gaps.iter().enumerate() {
                if video_stream {
                    while kind == 1 && audio_at < at {
                        tags.push(opus(0x91, audio_at, &[0xFC, 0xFF, 0xFE]));
                        audio_at += 20;
                    }
                    let first = if i == 0 || *keyframe { 0x91 } else { 0xA1 };
                    tags.push(video(first, at, &[0x32, 0x01, i as u8]));
                } else if kind == 4 {
                    tags.push(opus(0x91, at, &[0xFC, 0xFF, i as u8]));
                } else {
                    tags.push(aac(0x01, at, &[0x21, 0x10, i as u8]));
                }
                at += gap;
            }
            check_every_version(&tags)?;
        }
    }

    /// Opus-only streams keep the configured 350 ms (the packet duration is not declared
    /// anywhere every node sees before the first frame), and at every packet duration up to
    /// Opus's longest (120 ms) every part is listed and keeps the rules: no part is over the
    /// target, and every audio-only part starts with a sync sample (INDEPENDENT=YES), so the
    /// 85 % rule does not apply to the 240 ms ones two 120 ms packets make.
    #[test]
    fn opus_only_streams_keep_the_part_rules_at_every_packet_duration() {
        for packet_ms in [20u64, 40, 60, 120] {
            let head = b"OpusHead\x01\x02\x38\x01\x80\xBB\x00\x00\x00\x00\x00";
            let mut tags = vec![opus(0x90, 0, head)];
            for i in 0..(20_000 / packet_ms) {
                tags.push(opus(0x91, i * packet_ms, &[0xFC, 0xFF, i as u8]));
            }
            let (parts, withdrawn) = check_every_version(&tags).unwrap();
            assert!(!parts.is_empty(), "{packet_ms} ms");
            assert_eq!(withdrawn, 0, "{packet_ms} ms: {parts:?}");
            assert!(parts.iter().all(|d| *d <= 350), "{packet_ms} ms: {parts:?}");
            let mut stream = LlHlsStream::new(
                SegmenterConfig::default(),
                LlPackagerConfig::default(),
                6,
                "",
            );
            for tag in &tags {
                stream.push(tag).unwrap();
            }
            let text = stream.playlist().render(false);
            assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.350"), "{text}");
        }
    }

    /// A stream timed as it declares loses no part: the fallback only takes what would break
    /// the rules.
    #[test]
    fn streams_timed_as_declared_withdraw_no_part() {
        for fps in [
            1.0, 2.0, 5.0, 7.0, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0, 120.0,
        ] {
            let (parts, withdrawn) = check_every_version(&video_at(fps, true)).unwrap();
            assert!(!parts.is_empty(), "{fps} fps");
            assert_eq!(withdrawn, 0, "{fps} fps: {parts:?}");
        }
        let (_, withdrawn) = check_every_version(&video_at(30.0, false)).unwrap();
        assert_eq!(withdrawn, 0);
    }

    /// A declared rate the frames do not keep (30 fps declared, 1 fps sent): the parts that
    /// would break PART-TARGET are not listed, the segments are.
    #[test]
    fn a_wrong_declared_rate_lists_segments_without_the_parts_that_break_the_rules() {
        let mut tags = video_at(1.0, false);
        tags.insert(0, metadata(30.0));
        let mut stream = LlHlsStream::new(
            SegmenterConfig::default(),
            LlPackagerConfig::default(),
            6,
            "",
        );
        let mut withdrawn = 0;
        for tag in &tags {
            let out = stream.push(tag).unwrap();
            withdrawn += out
                .ll
                .iter()
                .filter(|e| matches!(e, LlEvent::PartsWithdrawn { .. }))
                .count();
            if stream.playlist().has_segments() {
                let text = stream.playlist().render(false);
                assert_eq!(check_ll_playlist(&text), vec![], "{text}");
                // A player blocking on the hinted part, or on any part of a segment listed
                // without parts, waits for it (never a 400): the segment is listed whole.
                let playlist = stream.playlist();
                let (msn, part) = playlist.next_part().unwrap();
                assert_eq!(
                    playlist.blocking_state(msn, Some(part)),
                    crate::hls::BlockingState::Wait
                );
                if part == 0 && msn > 0 {
                    for index in [0, 3, 9] {
                        assert_ne!(
                            playlist.blocking_state(msn - 1, Some(index)),
                            crate::hls::BlockingState::TooFar
                        );
                    }
                }
            }
        }
        let text = stream.playlist().render(false);
        assert!(withdrawn > 0);
        assert!(text.contains("#EXTINF:"), "{text}");
        assert!(!text.contains("#EXT-X-PART:"), "{text}");
        assert!(text.contains("#EXT-X-PRELOAD-HINT"), "{text}");
    }
}
