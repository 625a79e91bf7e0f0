//! CMAF fragments: `moof` (one `traf` per track) followed by the `mdat` with the samples.

use bytes::Bytes;

use super::writer::BoxWriter;
use super::Fmp4Error;

/// `sample_depends_on` = 2 (depends on no other sample): a sync sample.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on` = 1 and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;
/// `tfhd` flag: data offsets are relative to the start of the `moof`.
const DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` flags: data offset, and per-sample duration, size, flags, composition offset.
const TRUN_FLAGS: u32 = 0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800;

/// One sample (an access unit or audio frame) in the track's own timescale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration: the next sample's decode time minus this one's.
    pub duration: u32,
    /// Presentation minus decode time (B-frames make it positive; signed, `trun` version 1).
    pub composition_offset: i32,
    /// A sync sample (video keyframe; every audio frame).
    pub is_sync: bool,
    /// The sample bytes (length-prefixed NAL units for video, a raw frame for audio).
    pub data: Bytes,
}

/// One track's run of samples in a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRun<'a> {
    /// The track id (as in the init segment).
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale (`tfdt`).
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

/// Builds one fragment: `moof` with an `mfhd` numbered `sequence_number` and a `traf` per
/// non-empty run, then one `mdat` with every run's samples in the order given. The bytes depend
/// only on the arguments.
pub fn fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Vec<u8>, Fmp4Error> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return Err(Fmp4Error::EmptyFragment);
    }
    let media_len: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let mut w = BoxWriter::with_capacity(media_len + 256 + 16 * runs.len());
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0);
    w.u32(sequence_number);
    w.end()?;
    let mut offset_fields = Vec::with_capacity(runs.len());
    for run in &runs {
        w.begin(b"traf");
        w.begin_full(b"tfhd", 0, DEFAULT_BASE_IS_MOOF);
        w.u32(run.track_id);
        w.end()?;
        w.begin_full(b"tfdt", 1, 0);
        w.u64(run.base_decode_time);
        w.end()?;
        w.begin_full(b"trun", 1, TRUN_FLAGS);
        let count = u32::try_from(run.samples.len()).map_err(|_| Fmp4Error::BoxTooLarge {
            fourcc: "trun".into(),
            len: run.samples.len(),
        })?;
        w.u32(count);
        offset_fields.push(w.len());
        w.u32(0); // data_offset, patched below
        for sample in run.samples {
            w.u32(sample.duration);
            let size = u32::try_from(sample.data.len()).map_err(|_| Fmp4Error::BoxTooLarge {
                fourcc: "mdat".into(),
                len: sample.data.len(),
            })?;
            w.u32(size);
            w.u32(if sample.is_sync {
                SYNC_SAMPLE_FLAGS
            } else {
                NON_SYNC_SAMPLE_FLAGS
            });
            w.i32(sample.composition_offset);
        }
        w.end()?; // trun
        w.end()?; // traf
    }
    w.end()?; // moof
    let moof_len = w.len();
    let mut data_offset = moof_len + 8;
    for (field, run) in offset_fields.into_iter().zip(&runs) {
        let offset = u32::try_from(data_offset).map_err(|_| Fmp4Error::BoxTooLarge {
            fourcc: "mdat".into(),
            len: data_offset,
        })?;
        w.patch_u32(field, offset);
        data_offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    w.begin(b"mdat");
    for run in &runs {
        for sample in run.samples {
            w.bytes(&sample.data);
        }
    }
    w.end()?;
    w.finish()
}
