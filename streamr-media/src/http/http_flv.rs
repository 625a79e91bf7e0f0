//! HTTP-FLV: a chunked FLV body fed from a relay subscription.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::Stream;

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

/// The tracks an FLV file header announces, from the first events a player receives: the
/// kinds of frame among them, or both when they show neither (metadata only).
pub(crate) fn header_tracks(events: &[RelayEvent]) -> (bool, bool) {
    let has = |kind| {
        events
            .iter()
            .any(|e| matches!(e, RelayEvent::Frame(frame) if frame.kind() == kind))
    };
    let (audio, video) = (has(FrameKind::Audio), has(FrameKind::Video));
    (audio || !video, video || !audio)
}
