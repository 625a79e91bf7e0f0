//! HTTP-FLV: a chunked FLV body fed from a relay subscription.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;

use crate::flv::{FlvHeader, FlvWriter, TAG_HEADER_LEN};
use crate::relay::{RelayEvent, Subscription};

/// Events taken from the subscription per wake-up.
const BATCH: usize = 64;

/// The FLV byte stream for one viewer: the file header, then each relayed frame as a tag. Frame
/// payloads are the relay's shared [`Bytes`], never copied; only the 15 bytes of tag header and
/// PreviousTagSize around each are written per viewer. The relay's slow-viewer policy applies
/// (a viewer that falls behind skips to a keyframe). The stream ends when the publisher leaves.
pub fn flv_body(subscription: Subscription) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let header = FlvWriter::new()
        .header(FlvHeader {
            has_audio: true,
            has_video: true,
        })
        .freeze();
    let state = FlvBody {
        subscription,
        pending: VecDeque::from([header]),
        events: Vec::with_capacity(BATCH),
        ended: false,
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
}

impl FlvBody {
    async fn fill(&mut self) {
        self.events.clear();
        if self.subscription.recv_batch(&mut self.events, BATCH).await == 0 {
            self.ended = true;
            return;
        }
        let mut headers = BytesMut::with_capacity(self.events.len() * (TAG_HEADER_LEN + 4));
        for event in self.events.drain(..) {
            match event {
                RelayEvent::Frame(frame) => {
                    let payload = frame.payload();
                    let Ok(len) = u32::try_from(payload.len()) else {
                        continue;
                    };
                    if len > 0x00FF_FFFF {
                        continue;
                    }
                    let [_, s0, s1, s2] = len.to_be_bytes();
                    let [t3, t0, t1, t2] = frame.timestamp().to_be_bytes();
                    headers.put_slice(&[
                        frame.kind().flv_tag_type(),
                        s0,
                        s1,
                        s2,
                        t0,
                        t1,
                        t2,
                        t3,
                        0,
                        0,
                        0,
                    ]);
                    self.pending.push_back(headers.split().freeze());
                    self.pending.push_back(payload.clone());
                    headers.put_u32(len + TAG_HEADER_LEN as u32);
                    self.pending.push_back(headers.split().freeze());
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
