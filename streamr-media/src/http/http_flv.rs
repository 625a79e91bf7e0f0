//! HTTP-FLV: a chunked FLV body fed from a relay subscription.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::Stream;

use crate::amf0::{self, Amf0Value};
use crate::flv::{FlvHeader, FlvWriter};
use crate::relay::{FrameKind, RelayEvent, Subscription};

/// Events taken from the subscription per wake-up.
const BATCH: usize = 64;

/// The FLV byte stream for one viewer: the file header, then each relayed frame as a tag. Each
/// frame's tag is built once ([`Frame::flv_tag`](crate::relay::Frame::flv_tag)) and shared by
/// every viewer, so nothing is copied or allocated per viewer and frame. The relay's slow-viewer
/// policy applies (a viewer that falls behind skips to a keyframe). The stream ends when the
/// publisher leaves.
///
/// The header announces the tracks the stream has, as the first frames show them (a viewer
/// starts with the sequence headers and the GOP): ffmpeg waits for every track the header
/// announces, so an audio-only stream announced with video would play nothing.
pub fn flv_body(subscription: Subscription) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let state = FlvBody {
        subscription,
        pending: VecDeque::new(),
        events: Vec::with_capacity(BATCH),
        ended: false,
        header_sent: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(chunk) = state.pending.pop_front() {
                return Some((Ok(chunk), state));
            }
            if state.ended {
                return None;
            }
            state.fill().await;
        }
    })
}

struct FlvBody {
    subscription: Subscription,
    pending: VecDeque<Bytes>,
    events: Vec<RelayEvent>,
    ended: bool,
    header_sent: bool,
}

impl FlvBody {
    /// Queues the FLV file header, once, ahead of every tag.
    fn push_header(&mut self, has_audio: bool, has_video: bool) {
        self.header_sent = true;
        let header = FlvHeader {
            has_audio,
            has_video,
        };
        self.pending
            .push_front(FlvWriter::new().header(header).freeze());
    }

    async fn fill(&mut self) {
        self.events.clear();
        if self.subscription.recv_batch(&mut self.events, BATCH).await == 0 {
            self.ended = true;
            if !self.header_sent {
                self.push_header(true, true);
            }
            return;
        }
        if !self.header_sent {
            let (audio, video) = header_tracks(&self.events);
            self.push_header(audio, video);
        }
        for event in self.events.drain(..) {
            match event {
                RelayEvent::Frame(frame) => {
                    // A payload too long for an FLV tag is left out.
                    if let Some(tag) = frame.flv_tag() {
                        self.pending.push_back(tag);
                    }
                }
                RelayEvent::PublisherEnded => {
                    self.ended = true;
                    break;
                }
                RelayEvent::PublisherStarted => {}
            }
        }
    }
}

/// The tracks an FLV file header announces, from the first events a player receives: the kinds
/// of frame among them and the tracks the stream's metadata declares, or both when nothing
/// tells. The metadata matters for a player connected before the publisher: it is woken for the
/// first keyframe, which audio without a configuration record (MP3) or with a late one may not
/// precede, and a player told there is no audio (flv.js, mpegts.js) ignores the audio that
/// follows.
pub(crate) fn header_tracks(events: &[RelayEvent]) -> (bool, bool) {
    let (mut audio, mut video) = (false, false);
    for event in events {
        let RelayEvent::Frame(frame) = event else {
            continue;
        };
        match frame.kind() {
            FrameKind::Audio => audio = true,
            FrameKind::Video => video = true,
            FrameKind::Metadata if !frame.is_node_notice() => {
                let declared = declared_tracks(frame.payload());
                audio |= declared.0;
                video |= declared.1;
            }
            _ => {}
        }
    }
    (audio || !video, video || !audio)
}

/// The (audio, video) tracks an `onMetaData` payload declares: a track whose codec id is given
/// (`audiocodecid`, `videocodecid`: what encoders write for each track they carry) or whose
/// `hasAudio` / `hasVideo` is true. Neither for any other payload.
fn declared_tracks(payload: &[u8]) -> (bool, bool) {
    let Ok(values) = amf0::decode_all(payload) else {
        return (false, false);
    };
    let (Some(name), Some(metadata)) = (values.first(), values.get(1)) else {
        return (false, false);
    };
    if name.as_str() != Some("onMetaData") {
        return (false, false);
    }
    let declares = |codec: &str, flag: &str| {
        metadata.property(codec).is_some()
            || metadata.property(flag).and_then(Amf0Value::as_bool) == Some(true)
    };
    (
        declares("audiocodecid", "hasAudio"),
        declares("videocodecid", "hasVideo"),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::relay::Frame;

    fn frame(kind: FrameKind, payload: Bytes) -> RelayEvent {
        RelayEvent::Frame(Arc::new(Frame::new(kind, 0, payload)))
    }

    fn metadata(name: &str, properties: Vec<(&str, Amf0Value)>) -> RelayEvent {
        let properties = properties
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let payload = amf0::encode_all(&[
            Amf0Value::String(name.into()),
            Amf0Value::EcmaArray(properties),
        ])
        .unwrap()
        .freeze();
        frame(FrameKind::Metadata, payload)
    }

    fn keyframe() -> RelayEvent {
        frame(
            FrameKind::Video,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 0xAA]),
        )
    }

    fn audio() -> RelayEvent {
        frame(FrameKind::Audio, Bytes::from_static(&[0x2F, 0xFF, 0xFB]))
    }

    #[test]
    fn the_header_lists_the_tracks_of_the_first_frames_and_of_the_metadata() {
        let number = Amf0Value::Number;
        // Frames alone: what they hold, or both when they hold neither.
        assert_eq!(header_tracks(&[keyframe()]), (false, true));
        assert_eq!(header_tracks(&[audio()]), (true, false));
        assert_eq!(header_tracks(&[keyframe(), audio()]), (true, true));
        assert_eq!(header_tracks(&[]), (true, true));
        // H.264 and MP3 (no configuration record): the player woken for the first keyframe
        // still hears of the audio the metadata declares.
        let h264_mp3 = metadata(
            "onMetaData",
            vec![("videocodecid", number(7.0)), ("audiocodecid", number(2.0))],
        );
        assert_eq!(header_tracks(&[h264_mp3, keyframe()]), (true, true));
        let flags = metadata(
            "onMetaData",
            vec![
                ("hasAudio", Amf0Value::Boolean(true)),
                ("hasVideo", Amf0Value::Boolean(true)),
            ],
        );
        assert_eq!(header_tracks(&[flags, keyframe()]), (true, true));
        // Metadata of a video-only stream adds nothing; a false flag declares nothing.
        let video_only = metadata(
            "onMetaData",
            vec![
                ("videocodecid", number(7.0)),
                ("hasAudio", Amf0Value::Boolean(false)),
            ],
        );
        assert_eq!(
            header_tracks(&[video_only.clone(), keyframe()]),
            (false, true)
        );
        // Metadata alone declares what it declares.
        assert_eq!(header_tracks(&[video_only]), (false, true));
        // Only onMetaData declares tracks: not a cue point, not a node notice, not bad bytes.
        let cue = metadata("onCuePoint", vec![("audiocodecid", number(10.0))]);
        let notice = metadata("onStreamrHlsTiming", vec![("audiocodecid", number(10.0))]);
        let garbage = frame(FrameKind::Metadata, Bytes::from_static(&[0x02, 0xFF]));
        assert_eq!(
            header_tracks(&[cue, notice, garbage, keyframe()]),
            (false, true)
        );
    }

    proptest::proptest! {
        #[test]
        fn any_metadata_payload_is_read_without_a_panic(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let (audio, video) = header_tracks(&[frame(FrameKind::Metadata, Bytes::from(payload))]);
            proptest::prop_assert!(audio || video);
        }
    }
}
