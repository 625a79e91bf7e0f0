//! `streamr`: the StreamrP2P command line.
fn main() {}
