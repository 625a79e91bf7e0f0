//! HLS player: polls the media playlist like a live player and downloads every new segment.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;

use crate::stats::{PlayerCounters, PlayerState};

/// How many segments behind the live edge a player starts (as common players do).
const START_SEGMENTS_FROM_EDGE: usize = 3;

/// The parts of a media playlist a player needs.
#[derive(Debug, PartialEq)]
pub struct MediaPlaylist {
    /// EXT-X-TARGETDURATION in seconds.
    pub target_duration: u64,
    /// EXT-X-MEDIA-SEQUENCE.
    pub media_sequence: u64,
    /// Segment URIs in order.
    pub segments: Vec<String>,
    /// Whether EXT-X-ENDLIST was present.
    pub ended: bool,
}

impl MediaPlaylist {
    /// Parses a media playlist; errors when it is not an M3U8 playlist.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text.lines().map(str::trim);
        anyhow::ensure!(lines.next() == Some("#EXTM3U"), "not an M3U8 playlist");
        let mut playlist = MediaPlaylist {
            target_duration: 6,
            media_sequence: 0,
            segments: Vec::new(),
            ended: false,
        };
        for line in lines {
            if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                playlist.target_duration = value.parse().context("EXT-X-TARGETDURATION")?;
            } else if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = value.parse().context("EXT-X-MEDIA-SEQUENCE")?;
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                playlist.segments.push(line.to_owned());
            }
        }
        Ok(playlist)
    }
}

/// Plays the live playlist at `url` until it ends or the task is cancelled.
pub async fn play(
    client: reqwest::Client,
    url: String,
    counters: Arc<PlayerCounters>,
) -> anyhow::Result<()> {
    let base = reqwest::Url::parse(&url)?;
    // Sequence number of the next segment to fetch; None until the first playlist.
    let mut next: Option<u64> = None;
    loop {
        let text = client
            .get(base.clone())
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let playlist = MediaPlaylist::parse(&text)?;
        counters.set_state(PlayerState::Playing);
        let first_seq = playlist.media_sequence;
        let count = playlist.segments.len() as u64;
        let start = *next.get_or_insert_with(|| {
            first_seq + count.saturating_sub(START_SEGMENTS_FROM_EDGE as u64)
        });
        for seq in start.max(first_seq)..first_seq + count {
            let Some(uri) = playlist.segments.get((seq - first_seq) as usize) else {
                break;
            };
            let mut body = client
                .get(base.join(uri)?)
                .send()
                .await?
                .error_for_status()?
                .bytes_stream();
            while let Some(chunk) = body.next().await {
                counters.add_bytes(chunk?.len());
            }
            // A segment starts with a keyframe, so a complete segment is a decodable frame.
            counters.first_frame();
            next = Some(seq + 1);
        }
        if playlist.ended {
            counters.set_state(PlayerState::Ended);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(playlist.target_duration * 1000 / 2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_live_playlist() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:17\n\
                    #EXTINF:4.0,\n17.ts\n#EXTINF:3.9,\nseg/18.ts\n";
        let playlist = MediaPlaylist::parse(text).unwrap();
        assert_eq!(
            playlist,
            MediaPlaylist {
                target_duration: 4,
                media_sequence: 17,
                segments: vec!["17.ts".into(), "seg/18.ts".into()],
                ended: false,
            }
        );
        assert!(MediaPlaylist::parse("<html>").is_err());
    }
}
