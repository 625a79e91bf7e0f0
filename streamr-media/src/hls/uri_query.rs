//! Carrying a playlist request's query (an access token) onto every URI the playlist names, so
//! players that drop the playlist's query string still present the token with each segment,
//! part, init section and preload hint.

use crate::relay::StreamKey;

/// The part of a playlist request's `query` to carry onto its URIs: everything but the LL-HLS
/// delivery directives (`_HLS_msn`, `_HLS_part`, `_HLS_skip`, ...). `None` when nothing is left.
pub fn carried_query(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("_HLS_"))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Rewrites `playlist` (of `key`) so every media URI is `/{app}/{stream}/{file}?{query}`:
/// segment lines, and the `URI` attribute of `EXT-X-MAP`, `EXT-X-PART` and
/// `EXT-X-PRELOAD-HINT`. URIs naming another playlist (`EXT-X-RENDITION-REPORT`, `EXT-X-MEDIA`,
/// `EXT-X-I-FRAME-STREAM-INF`, and the line after an `EXT-X-STREAM-INF` of a multivariant
/// playlist) keep their path and gain the query. Absolute paths make the URIs independent of the URL the playlist
/// was fetched under (`/{app}/{stream}.m3u8` or `/{app}/{stream}/index.m3u8`).
pub fn playlist_with_query(playlist: &str, key: &StreamKey, query: &str) -> String {
    let media = |uri: &str| {
        let path = uri.split_once('?').map_or(uri, |(path, _)| path);
        let file = path.rsplit('/').next().unwrap_or(path);
        format!("/{}/{}/{file}?{query}", key.app, key.name)
    };
    let report = |uri: &str| {
        let separator = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{separator}{query}")
    };
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 2);
    let mut variant_next = false;
    for line in playlist.lines() {
        if line.starts_with('#') {
            variant_next = line.starts_with("#EXT-X-STREAM-INF:");
            let is_report = ["#EXT-X-RENDITION-REPORT", "#EXT-X-MEDIA:", "#EXT-X-I-FRAME"]
                .iter()
                .any(|tag| line.starts_with(tag));
            match line.split_once("URI=\"").and_then(|(head, rest)| {
                let (uri, tail) = rest.split_once('"')?;
                Some((head, uri, tail))
            }) {
                Some((head, uri, tail)) => {
                    out.push_str(head);
                    out.push_str("URI=\"");
                    out.push_str(&if is_report { report(uri) } else { media(uri) });
                    out.push('"');
                    out.push_str(tail);
                }
                None => out.push_str(line),
            }
        } else if std::mem::take(&mut variant_next) {
            out.push_str(&report(line));
        } else if !line.is_empty() {
            out.push_str(&media(line));
        }
        out.push('\n');
    }
    out
}

/// Rewrites the MPEG-TS `playlist` of `key` for the `/{app}/{stream}/index.m3u8` alias: its
/// segment lines name `{stream}/{file}` relative to `/{app}/`, which from the alias's directory
/// (`/{app}/{stream}/`) must be `{file}`. Other lines, and URIs not under `{stream}/`, are kept.
pub fn playlist_for_alias(playlist: &str, key: &StreamKey) -> String {
    let prefix = format!("{}/", key.name);
    let mut out = String::with_capacity(playlist.len());
    for line in playlist.lines() {
        match line.strip_prefix(&prefix) {
            Some(file) if !line.starts_with('#') => out.push_str(file),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn show() -> StreamKey {
        StreamKey::parse("live", "show").expect("valid names")
    }

    #[test]
    fn the_alias_names_segments_from_its_own_directory() {
        let body = "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2026-12-07T12:00:00.000Z\n#EXTINF:2.000,\n\
                    show/3.ts\n#EXTINF:2.000,\nshow/4.ts\n";
        assert_eq!(
            playlist_for_alias(body, &show()),
            "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2026-12-07T12:00:00.000Z\n#EXTINF:2.000,\n\
             3.ts\n#EXTINF:2.000,\n4.ts\n"
        );
        // A URI under another directory is kept.
        let body = "#EXTM3U\n#EXTINF:2.000,\nother/3.ts\n";
        assert_eq!(playlist_for_alias(body, &show()), body);
    }

    #[test]
    fn segments_carry_the_query_on_an_absolute_path() {
        let body = "#EXTM3U\n#EXTINF:2.000,\nshow/3.ts\n";
        let out = playlist_with_query(body, &show(), "grant=ab");
        assert_eq!(out, "#EXTM3U\n#EXTINF:2.000,\n/live/show/3.ts?grant=ab\n");
    }

    #[test]
    fn ll_hls_uris_carry_the_query_and_reports_keep_their_path() {
        let body = "#EXTM3U\n#EXT-X-MAP:URI=\"init-ab.mp4\"\n\
                    #EXT-X-PART:DURATION=0.320,URI=\"4.0.m4s\",INDEPENDENT=YES\n\
                    #EXTINF:2.000,\n4.m4s\n\
                    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"5.0.m4s\"\n\
                    #EXT-X-RENDITION-REPORT:URI=\"../low/ll.m3u8\",LAST-MSN=4\n";
        let out = playlist_with_query(body, &show(), "t=1");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"/live/show/init-ab.mp4?t=1\"\n\
             #EXT-X-PART:DURATION=0.320,URI=\"/live/show/4.0.m4s?t=1\",INDEPENDENT=YES\n\
             #EXTINF:2.000,\n/live/show/4.m4s?t=1\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"/live/show/5.0.m4s?t=1\"\n\
             #EXT-X-RENDITION-REPORT:URI=\"../low/ll.m3u8?t=1\",LAST-MSN=4\n"
        );
    }

    #[test]
    fn variant_playlists_keep_their_path_and_gain_the_query() {
        let body = "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
                    #EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
                    ll.m3u8\n\
                    #EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
                    ../show.m3u8\n";
        let out = playlist_with_query(body, &show(), "grant=ab");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
             ll.m3u8?grant=ab\n\
             #EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
             ../show.m3u8?grant=ab\n"
        );
    }

    #[test]
    fn delivery_directives_are_not_carried() {
        assert_eq!(
            carried_query("_HLS_msn=4&grant=ab&_HLS_part=1").as_deref(),
            Some("grant=ab")
        );
        assert_eq!(carried_query("_HLS_msn=4&_HLS_part=1"), None);
        assert_eq!(carried_query(""), None);
    }

    proptest! {
        /// Every segment line of any playlist ends with the query; tags without a URI and the
        /// number of lines are unchanged.
        #[test]
        fn every_segment_carries_the_query(
            sequences in proptest::collection::vec(0u64..1_000_000, 0..20),
            token in "[a-f0-9]{1,64}",
        ) {
            let mut body = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
            for sequence in &sequences {
                body.push_str(&format!("#EXTINF:2.000,\nshow/{sequence}.ts\n"));
            }
            let query = format!("grant={token}");
            let out = playlist_with_query(&body, &show(), &query);
            prop_assert_eq!(out.lines().count(), body.lines().count());
            let uris: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
            prop_assert_eq!(uris.len(), sequences.len());
            for (uri, sequence) in uris.iter().zip(&sequences) {
                prop_assert_eq!(*uri, format!("/live/show/{sequence}.ts?{query}"));
            }
        }
    }
}
