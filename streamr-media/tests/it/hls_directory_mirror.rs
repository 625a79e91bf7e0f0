//! The `--hls-dir` mirror of live HLS: the LL-HLS rendition (playlist, init segment, segments
//! and parts) is mirrored beside the MPEG-TS one, an ended stream's files of both go once its
//! retention runs out, and on a full disk (a small tmpfs) the on-disk playlist lists only completely written
//! segments while HTTP keeps serving from memory; the mirror catches up when space returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use streamr_media::flv::{FlvReader, FlvTag, FlvTagType};
use streamr_media::hls::{check_ll_playlist, check_multivariant, ParsedPlaylist};
use streamr_media::http::{LiveHls, LiveHlsConfig, PlaylistLookup};
use streamr_media::relay::{FrameKind, Publisher, RelayHub, StreamKey};
use tokio_util::sync::CancellationToken;

/// `seconds` of 25 fps H.264 (1 s GOPs) and AAC, encoded by ffmpeg, as FLV tags.
fn encoded_tags(dir: &Path, seconds: u32) -> Vec<FlvTag> {
    let path = dir.join("source.flv");
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=320x240:rate=25:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv"])
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed");
    assert!(output.status.success());
    FlvReader::read_all(&std::fs::read(&path).unwrap())
        .unwrap()
        .1
}

/// Publishes the tags whose timestamps fall in `[from_ms, to_ms)` (headers always).
fn publish_range(publisher: &Publisher, tags: &[FlvTag], from_ms: u32, to_ms: u32) {
    for tag in tags {
        let kind = match tag.tag_type {
            FlvTagType::Audio => FrameKind::Audio,
            FlvTagType::Video => FrameKind::Video,
            _ => FrameKind::Metadata,
        };
        let header = tag.data.get(1).is_some_and(|b| *b == 0) && tag.timestamp == 0;
        if (from_ms..to_ms).contains(&tag.timestamp) || (header && from_ms == 0) {
            publisher.send(kind, tag.timestamp, tag.data.clone());
        }
    }
}

fn config(root: &Path) -> LiveHlsConfig {
    LiveHlsConfig::default()
        .with_segments(Duration::from_secs(1), 4)
        .with_directory(root)
        .with_end_timing(Duration::from_millis(300), Duration::from_secs(1))
}

/// Polls `check` until it holds, for up to 30 s (the machine may be loaded).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn on_disk(root: &Path) -> Option<ParsedPlaylist> {
    let text = std::fs::read_to_string(root.join("live/cam.m3u8")).ok()?;
    ParsedPlaylist::parse(&text).ok()
}

async fn in_memory(live: &LiveHls, key: &StreamKey) -> ParsedPlaylist {
    match live.playlist(key, Duration::from_secs(20)).await {
        PlaylistLookup::Ready(bytes) => {
            ParsedPlaylist::parse(std::str::from_utf8(&bytes).unwrap()).unwrap()
        }
        other => panic!("no playlist: {other:?}"),
    }
}

/// Every segment the on-disk playlist lists is there, complete (the bytes HTTP serves), and no
/// temporary file is left behind.
fn assert_disk_lists_only_complete_segments(root: &Path, live: &LiveHls, key: &StreamKey) {
    let Some(parsed) = on_disk(root) else {
        return;
    };
    for segment in &parsed.segments {
        let path = root.join("live").join(&segment.uri);
        let bytes = std::fs::read(&path).unwrap_or_default();
        match live.segment(key, segment.sequence) {
            Some(served) => assert_eq!(bytes, served.to_vec(), "{} incomplete", path.display()),
            None => assert!(!bytes.is_empty() && bytes.len() % 188 == 0),
        }
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(root.join("live/cam"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn an_ended_streams_files_are_removed_after_its_retention() {
    let work = tempfile::tempdir().unwrap();
    let tags = encoded_tags(work.path(), 6);
    let root = work.path().join("hls");
    std::fs::create_dir_all(root.join("live")).unwrap();
    std::fs::write(root.join("live/keep.txt"), b"not ours").unwrap();
    let hub = RelayHub::default();
    let shutdown = CancellationToken::new();
    let live = LiveHls::start(hub.clone(), config(&root), shutdown.clone());
    let key = StreamKey::parse("live", "cam").unwrap();
    let publisher = hub.publish(key.clone()).unwrap();
    // Live HLS follows the stream from here (it would pick it up within a poll interval).
    assert_eq!(
        live.playlist(&key, Duration::ZERO).await,
        PlaylistLookup::Pending
    );
    publish_range(&publisher, &tags, 0, 7_000);
    eventually("segments on disk", || {
        on_disk(&root).is_some_and(|p| p.segments.len() >= 4)
    })
    .await;
    let ll_playlist = root.join("live/cam/ll.m3u8");
    eventually("LL-HLS segments on disk", || {
        std::fs::read_to_string(&ll_playlist).is_ok_and(|text| text.matches("#EXTINF").count() >= 3)
    })
    .await;
    assert_ll_disk_matches_http(&root, &live, &key).await;
    // The multivariant playlist is mirrored too; its relative variant URIs name the playlists
    // on disk.
    let master = root.join("live/cam/master.m3u8");
    eventually("the multivariant playlist on disk", || master.exists()).await;
    let variants = check_multivariant(&std::fs::read_to_string(&master).unwrap()).unwrap();
    for variant in &variants {
        assert!(
            root.join("live/cam").join(&variant.uri).exists(),
            "{variant:?}"
        );
    }
    assert_eq!(variants.len(), 2, "{variants:?}");
    drop(publisher);
    eventually("the ended playlists on disk", || {
        on_disk(&root).is_some_and(|p| p.ended)
            && std::fs::read_to_string(&ll_playlist).is_ok_and(|t| t.contains("#EXT-X-ENDLIST"))
    })
    .await;
    let ended = std::fs::read_to_string(&ll_playlist).unwrap();
    assert_eq!(check_ll_playlist(&ended), vec![], "{ended}");
    eventually("the ended stream's files removed", || {
        !root.join("live/cam.m3u8").exists() && !root.join("live/cam").exists()
    })
    .await;
    assert!(root.join("live/keep.txt").exists(), "other files are kept");
    assert!(live.segment(&key, 0).is_none());
    shutdown.cancel();
}

/// The on-disk LL-HLS playlist passes the spec checker, and every file it names (init segment,
/// segments, parts) is on disk with the bytes HTTP serves.
async fn assert_ll_disk_matches_http(root: &Path, live: &LiveHls, key: &StreamKey) {
    let dir = root.join("live/cam");
    let text = std::fs::read_to_string(dir.join("ll.m3u8")).unwrap();
    assert_eq!(check_ll_playlist(&text), vec![], "{text}");
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(uri) = line.split("URI=\"").nth(1) {
            if !line.starts_with("#EXT-X-PRELOAD-HINT") {
                names.push(uri.split('"').next().unwrap().to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            names.push(line.to_string());
        }
    }
    assert!(names.iter().any(|n| n.starts_with("init-")), "{text}");
    assert!(
        names.iter().filter(|n| n.matches('.').count() == 2).count() >= 3,
        "parts: {text}"
    );
    for name in names {
        let on_disk = std::fs::read(dir.join(&name)).unwrap_or_default();
        assert!(!on_disk.is_empty(), "{name} listed but not on disk");
        // Memory may have dropped the oldest segment since the file was read.
        if let Some(served) = live.ll_file(key, &name, Duration::ZERO).await {
            assert_eq!(on_disk, served.to_vec(), "{name}");
        }
    }
}

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount must be available");
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallDisk {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Fills the disk under `dir` with a file, up to its last byte.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&block[..1]).is_ok() {}
    let _ = file.flush();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop: needs ffmpeg"]
async fn a_full_disk_lists_only_complete_segments_and_the_mirror_recovers() {
    let work = tempfile::tempdir().unwrap();
    let tags = encoded_tags(work.path(), 30);
    let disk = SmallDisk::mount(&work.path().join("disk"), "2m");
    let root = disk.path.clone();
    let hub = RelayHub::default();
    let shutdown = CancellationToken::new();
    let live = LiveHls::start(hub.clone(), config(&root), shutdown.clone());
    let key = StreamKey::parse("live", "cam").unwrap();
    let publisher = hub.publish(key.clone()).unwrap();
    // Live HLS follows the stream from here (it would pick it up within a poll interval).
    assert_eq!(
        live.playlist(&key, Duration::ZERO).await,
        PlaylistLookup::Pending
    );
    publish_range(&publisher, &tags, 0, 5_000);
    eventually("segments on disk", || {
        on_disk(&root).is_some_and(|p| p.segments.len() >= 4)
    })
    .await;
    let before_full = on_disk(&root).unwrap();

    // The disk fills up: segments keep coming and are served from memory.
    let filler = fill(&root);
    publish_range(&publisher, &tags, 5_000, 15_000);
    let mut served = in_memory(&live, &key).await;
    let wanted = before_full.segments.last().unwrap().sequence + 8;
    while served.segments.last().unwrap().sequence < wanted {
        tokio::time::sleep(Duration::from_millis(50)).await;
        served = in_memory(&live, &key).await;
    }
    for segment in &served.segments {
        assert!(live.segment(&key, segment.sequence).is_some());
    }
    assert_disk_lists_only_complete_segments(&root, &live, &key);
    let while_full = on_disk(&root).unwrap();
    assert!(
        while_full.segments.last().unwrap().sequence < served.segments.last().unwrap().sequence,
        "the disk could not have taken every segment"
    );

    // Space returns: the mirror catches up with what is served.
    std::fs::remove_file(filler).unwrap();
    publish_range(&publisher, &tags, 15_000, 20_000);
    let served = loop {
        let served = in_memory(&live, &key).await;
        if served.segments.last().unwrap().sequence >= wanted + 4 {
            break served;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let newest = served.segments.last().unwrap().sequence;
    eventually("the on-disk playlist caught up", || {
        on_disk(&root).is_some_and(|p| p.segments.last().is_some_and(|s| s.sequence >= newest))
    })
    .await;
    assert_disk_lists_only_complete_segments(&root, &live, &key);
    shutdown.cancel();
    drop(publisher);
    drop(live);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(disk);
}
