//! The RTMP handshake, server and client side, sans-IO.
//!
//! Both the simple handshake of the RTMP 1.0 specification and the "complex" Flash Player 9
//! handshake are supported. In the complex form C1 and S1 carry an HMAC-SHA256 digest at a
//! position derived from four offset bytes (scheme 0: bytes 8..12, scheme 1: bytes 772..776),
//! keyed with the well-known "Genuine Adobe Flash Player 001" / "Genuine Adobe Flash Media
//! Server 001" keys, and C2/S2 end with a digest keyed by the peer's C1/S1 digest. A server that
//! sees a digest C1 answers with a digest S1 and S2; a plain C1 gets the simple echo.
//!
//! Drive either side by handing it the bytes read from the socket; it consumes what it needs from
//! the front of the buffer (anything after the handshake stays there for the chunk decoder) and
//! queues bytes to send in an output buffer the caller drains with `take_output`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_PACKET_SIZE: usize = 1536;
/// The only plain-RTMP protocol version (C0/S0).
pub const RTMP_VERSION: u8 = 3;

const DIGEST_LEN: usize = 32;
/// The 32 bytes shared by both Flash keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
/// Version we advertise in S1 bytes 4..8 (a Flash Media Server 4.5 style version).
const SERVER_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// Version we advertise in a complex C1 (Flash Player 9.0.124.2, what ffmpeg sends).
const CLIENT_VERSION: [u8; 4] = [0x09, 0x00, 0x7C, 0x02];

/// Where a complex handshake packet keeps its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestScheme {
    /// Offset bytes at 8..12, digest within bytes 12..772.
    Scheme0,
    /// Offset bytes at 772..776, digest within bytes 776..1536.
    Scheme1,
}

impl DigestScheme {
    fn digest_position(self, packet: &[u8; HANDSHAKE_PACKET_SIZE]) -> usize {
        let base = match self {
            DigestScheme::Scheme0 => 8,
            DigestScheme::Scheme1 => 772,
        };
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 728 + base + 4
    }
}

/// Which handshake form a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeKind {
    /// RTMP 1.0 simple handshake: random C1, echo C2.
    Simple,
    /// Flash Player 9 digest handshake with the given digest placement.
    Complex(DigestScheme),
}

/// Errors from the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// C0/S0 named a version other than 3 (6 would be RTMPE, which is not supported).
    #[error(
        "unsupported RTMP version {version} in {packet} (only plain RTMP version 3 is supported)"
    )]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
        /// "C0" or "S0".
        packet: &'static str,
    },
    /// Bytes were fed after the handshake had already finished or failed.
    #[error("handshake already finished")]
    AlreadyFinished,
}

/// What a handshake step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeProgress {
    /// More bytes from the peer are needed.
    InProgress,
    /// The handshake is complete; remaining input belongs to the chunk stream.
    Done,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC-SHA256 accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn full_key(text: &[u8]) -> Vec<u8> {
    let mut key = text.to_vec();
    key.extend_from_slice(&KEY_TAIL);
    key
}

/// Digest of a C1/S1 packet, skipping the 32 digest bytes at `pos`.
fn packet_digest(packet: &[u8; HANDSHAKE_PACKET_SIZE], pos: usize, key: &[u8]) -> [u8; 32] {
    hmac_sha256(key, &[&packet[..pos], &packet[pos + DIGEST_LEN..]])
}

/// Finds and checks the digest of a C1 (keyed with the player key) or S1 (server key).
/// Returns the digest and the scheme it was found with.
fn find_valid_digest(
    packet: &[u8; HANDSHAKE_PACKET_SIZE],
    key_text: &[u8],
) -> Option<([u8; 32], DigestScheme)> {
    [DigestScheme::Scheme0, DigestScheme::Scheme1]
        .into_iter()
        .find_map(|scheme| {
            let pos = scheme.digest_position(packet);
            let expected = packet_digest(packet, pos, key_text);
            (packet[pos..pos + DIGEST_LEN] == expected).then_some((expected, scheme))
        })
}

/// Builds a C1 or S1 carrying a digest at the position `scheme` selects.
fn digest_packet(
    version: [u8; 4],
    scheme: DigestScheme,
    key_text: &[u8],
) -> [u8; HANDSHAKE_PACKET_SIZE] {
    let mut packet = [0u8; HANDSHAKE_PACKET_SIZE];
    rand::thread_rng().fill_bytes(&mut packet[8..]);
    packet[4..8].copy_from_slice(&version);
    let pos = scheme.digest_position(&packet);
    let digest = packet_digest(&packet, pos, key_text);
    packet[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    packet
}

/// Builds the C2/S2 answering a peer digest: random bytes ending in an HMAC keyed by the peer's
/// digest hashed with our full key.
fn digest_response(peer_digest: &[u8; 32], full_key_text: &[u8]) -> [u8; HANDSHAKE_PACKET_SIZE] {
    let mut packet = [0u8; HANDSHAKE_PACKET_SIZE];
    rand::thread_rng().fill_bytes(&mut packet);
    let key = hmac_sha256(&full_key(full_key_text), &[peer_digest]);
    let split = HANDSHAKE_PACKET_SIZE - DIGEST_LEN;
    let digest = hmac_sha256(&key, &[&packet[..split]]);
    packet[split..].copy_from_slice(&digest);
    packet
}

/// Whether `response` (a C2 or S2) ends with the digest answering `our_digest`.
fn response_is_valid(
    response: &[u8; HANDSHAKE_PACKET_SIZE],
    our_digest: &[u8; 32],
    peer_key_text: &[u8],
) -> bool {
    let key = hmac_sha256(&full_key(peer_key_text), &[our_digest]);
    let split = HANDSHAKE_PACKET_SIZE - DIGEST_LEN;
    hmac_sha256(&key, &[&response[..split]]) == response[split..]
}

fn simple_packet() -> [u8; HANDSHAKE_PACKET_SIZE] {
    let mut packet = [0u8; HANDSHAKE_PACKET_SIZE];
    rand::thread_rng().fill_bytes(&mut packet[8..]);
    packet
}

fn take_packet(input: &mut BytesMut) -> [u8; HANDSHAKE_PACKET_SIZE] {
    let mut packet = [0u8; HANDSHAKE_PACKET_SIZE];
    input.copy_to_slice(&mut packet);
    packet
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// The server side: reads C0+C1, answers S0+S1+S2, then reads C2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    output: BytesMut,
    client_used_digest: Option<DigestScheme>,
    s1_digest: Option<[u8; 32]>,
    c2_verified: bool,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A server handshake waiting for C0+C1.
    pub fn new() -> Self {
        Self {
            state: ServerState::AwaitC0C1,
            output: BytesMut::new(),
            client_used_digest: None,
            s1_digest: None,
            c2_verified: false,
        }
    }

    /// Consumes handshake bytes from the front of `input`, queueing S0+S1+S2 once C0+C1 arrived.
    pub fn process(&mut self, input: &mut BytesMut) -> Result<HandshakeProgress, HandshakeError> {
        loop {
            match self.state {
                ServerState::AwaitC0C1 => {
                    let Some(&version) = input.first() else {
                        return Ok(HandshakeProgress::InProgress);
                    };
                    if version != RTMP_VERSION {
                        return Err(HandshakeError::UnsupportedVersion {
                            version,
                            packet: "C0",
                        });
                    }
                    if input.len() < 1 + HANDSHAKE_PACKET_SIZE {
                        input.reserve(1 + HANDSHAKE_PACKET_SIZE - input.len());
                        return Ok(HandshakeProgress::InProgress);
                    }
                    input.advance(1);
                    let c1 = take_packet(input);
                    self.answer_c1(&c1);
                    self.state = ServerState::AwaitC2;
                }
                ServerState::AwaitC2 => {
                    if input.len() < HANDSHAKE_PACKET_SIZE {
                        input.reserve(HANDSHAKE_PACKET_SIZE - input.len());
                        return Ok(HandshakeProgress::InProgress);
                    }
                    let c2 = take_packet(input);
                    // Clients differ in what C2 holds (echo, digest, or junk); accept any and
                    // only record whether it proved knowledge of our S1 digest.
                    self.c2_verified = self
                        .s1_digest
                        .is_some_and(|d| response_is_valid(&c2, &d, PLAYER_KEY_TEXT));
                    self.state = ServerState::Done;
                    return Ok(HandshakeProgress::Done);
                }
                ServerState::Done => return Ok(HandshakeProgress::Done),
            }
        }
    }

    fn answer_c1(&mut self, c1: &[u8; HANDSHAKE_PACKET_SIZE]) {
        self.output.reserve(1 + 2 * HANDSHAKE_PACKET_SIZE);
        self.output.put_u8(RTMP_VERSION);
        // A zero version field means the client asked for the simple handshake.
        let client_digest = if c1[4..8] == [0, 0, 0, 0] {
            None
        } else {
            find_valid_digest(c1, PLAYER_KEY_TEXT)
        };
        match client_digest {
            Some((c1_digest, scheme)) => {
                let s1 = digest_packet(SERVER_VERSION, scheme, SERVER_KEY_TEXT);
                let s1_pos = scheme.digest_position(&s1);
                let mut s1_digest = [0u8; 32];
                s1_digest.copy_from_slice(&s1[s1_pos..s1_pos + DIGEST_LEN]);
                self.s1_digest = Some(s1_digest);
                self.client_used_digest = Some(scheme);
                self.output.put_slice(&s1);
                self.output
                    .put_slice(&digest_response(&c1_digest, SERVER_KEY_TEXT));
            }
            None => {
                self.output.put_slice(&simple_packet());
                self.output.put_slice(c1);
            }
        }
    }

    /// Bytes to send to the client (S0+S1+S2 once C0+C1 arrived).
    pub fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// Whether the handshake finished.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// The digest scheme of the client's C1 when it sent a valid complex C1.
    pub fn client_digest_scheme(&self) -> Option<DigestScheme> {
        self.client_used_digest
    }

    /// Whether C2 carried a valid digest answering our S1 (only possible in the complex form).
    pub fn client_response_verified(&self) -> bool {
        self.c2_verified
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0S1S2,
    Done,
}

/// The client side: sends C0+C1 at once, reads S0+S1+S2, answers C2.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    output: BytesMut,
    c1: [u8; HANDSHAKE_PACKET_SIZE],
    c1_digest: Option<[u8; 32]>,
    server_verified: bool,
}

impl ClientHandshake {
    /// A client handshake of `kind`; C0+C1 are queued immediately.
    pub fn new(kind: HandshakeKind) -> Self {
        let (c1, c1_digest) = match kind {
            HandshakeKind::Simple => (simple_packet(), None),
            HandshakeKind::Complex(scheme) => {
                let c1 = digest_packet(CLIENT_VERSION, scheme, PLAYER_KEY_TEXT);
                let pos = scheme.digest_position(&c1);
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&c1[pos..pos + DIGEST_LEN]);
                (c1, Some(digest))
            }
        };
        let mut output = BytesMut::with_capacity(1 + HANDSHAKE_PACKET_SIZE);
        output.put_u8(RTMP_VERSION);
        output.put_slice(&c1);
        Self {
            state: ClientState::AwaitS0S1S2,
            output,
            c1,
            c1_digest,
            server_verified: false,
        }
    }

    /// Consumes S0+S1+S2 from the front of `input` and queues C2.
    pub fn process(&mut self, input: &mut BytesMut) -> Result<HandshakeProgress, HandshakeError> {
        if self.state == ClientState::Done {
            return Ok(HandshakeProgress::Done);
        }
        let Some(&version) = input.first() else {
            return Ok(HandshakeProgress::InProgress);
        };
        if version != RTMP_VERSION {
            return Err(HandshakeError::UnsupportedVersion {
                version,
                packet: "S0",
            });
        }
        let needed = 1 + 2 * HANDSHAKE_PACKET_SIZE;
        if input.len() < needed {
            input.reserve(needed - input.len());
            return Ok(HandshakeProgress::InProgress);
        }
        input.advance(1);
        let s1 = take_packet(input);
        let s2 = take_packet(input);
        let server_digest = match self.c1_digest {
            Some(_) => find_valid_digest(&s1, SERVER_KEY_TEXT),
            None => None,
        };
        match (server_digest, self.c1_digest) {
            (Some((s1_digest, _)), Some(c1_digest)) => {
                self.server_verified = response_is_valid(&s2, &c1_digest, SERVER_KEY_TEXT);
                self.output
                    .put_slice(&digest_response(&s1_digest, PLAYER_KEY_TEXT));
            }
            _ => {
                self.server_verified = s2 == self.c1;
                self.output.put_slice(&s1);
            }
        }
        self.state = ClientState::Done;
        Ok(HandshakeProgress::Done)
    }

    /// Bytes to send to the server (C0+C1 first, then C2).
    pub fn take_output(&mut self) -> Bytes {
        self.output.split().freeze()
    }

    /// Whether the handshake finished.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    /// Whether S2 proved the server saw our C1 (an echo, or a valid digest response).
    pub fn server_verified(&self) -> bool {
        self.server_verified
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(kind: HandshakeKind, split: usize) -> (ServerHandshake, ClientHandshake, BytesMut) {
        let mut server = ServerHandshake::new();
        let mut client = ClientHandshake::new(kind);
        let mut to_server = BytesMut::from(&client.take_output()[..]);
        // Deliver C0+C1 in two pieces to exercise partial input.
        let cut = split.min(to_server.len());
        let mut partial = to_server.split_to(cut);
        assert_eq!(
            server.process(&mut partial).unwrap(),
            HandshakeProgress::InProgress
        );
        partial.unsplit(to_server);
        let mut to_server = partial;
        server.process(&mut to_server).unwrap();
        let mut to_client = BytesMut::from(&server.take_output()[..]);
        assert_eq!(
            client.process(&mut to_client).unwrap(),
            HandshakeProgress::Done
        );
        let mut c2 = BytesMut::from(&client.take_output()[..]);
        c2.extend_from_slice(b"chunk bytes");
        assert_eq!(server.process(&mut c2).unwrap(), HandshakeProgress::Done);
        (server, client, c2)
    }

    proptest! {
        #[test]
        fn complex_handshake_completes_and_digests_verify(
            scheme1 in any::<bool>(),
            split in 0usize..1537,
        ) {
            let scheme = if scheme1 { DigestScheme::Scheme1 } else { DigestScheme::Scheme0 };
            let (server, client, rest) = run(HandshakeKind::Complex(scheme), split);
            prop_assert_eq!(server.client_digest_scheme(), Some(scheme));
            prop_assert!(server.client_response_verified());
            prop_assert!(client.server_verified());
            prop_assert!(server.is_done() && client.is_done());
            prop_assert_eq!(&rest[..], b"chunk bytes");
        }

        #[test]
        fn simple_handshake_completes_with_echo(split in 0usize..1537) {
            let (server, client, rest) = run(HandshakeKind::Simple, split);
            prop_assert_eq!(server.client_digest_scheme(), None);
            prop_assert!(client.server_verified());
            prop_assert_eq!(&rest[..], b"chunk bytes");
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
            let mut server = ServerHandshake::new();
            let _ = server.process(&mut BytesMut::from(&bytes[..]));
            let mut client = ClientHandshake::new(HandshakeKind::Complex(DigestScheme::Scheme0));
            let _ = client.process(&mut BytesMut::from(&bytes[..]));
        }
    }

    #[test]
    fn rtmpe_version_is_refused_by_name() {
        let mut server = ServerHandshake::new();
        let err = server.process(&mut BytesMut::from(&[6u8, 0, 0][..]));
        assert_eq!(
            err,
            Err(HandshakeError::UnsupportedVersion {
                version: 6,
                packet: "C0"
            })
        );
    }

    #[test]
    fn truncated_c1_waits_without_output() {
        let mut server = ServerHandshake::new();
        let mut input = BytesMut::from(&[3u8; 700][..]);
        assert_eq!(
            server.process(&mut input).unwrap(),
            HandshakeProgress::InProgress
        );
        assert!(server.take_output().is_empty());
        assert_eq!(input.len(), 700);
    }

    #[test]
    fn client_digest_with_wrong_key_gets_simple_answer() {
        let mut c1 = digest_packet(CLIENT_VERSION, DigestScheme::Scheme0, b"not the player key");
        c1[4] = 9;
        let mut input = BytesMut::new();
        input.put_u8(3);
        input.put_slice(&c1);
        let mut server = ServerHandshake::new();
        server.process(&mut input).unwrap();
        let out = server.take_output();
        assert_eq!(server.client_digest_scheme(), None);
        assert_eq!(&out[1 + HANDSHAKE_PACKET_SIZE..], &c1[..]);
    }
}
