//! Child processes: killed and reaped when the test drops them, and our binaries started with
//! a clean environment.

use std::ffi::OsStr;
use std::process::Command;

/// A child process killed (and reaped) when the test drops it, pass or fail.
#[derive(Debug)]
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command for one of our binaries (`env!("CARGO_BIN_EXE_<name>")`) without the `STREAMR_*`
/// variables of the environment running the tests: every binary reads its flags from them, so
/// an operator's shell would otherwise change what the test starts.
pub fn our_binary(path: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(path);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("STREAMR_") {
            command.env_remove(name);
        }
    }
    command
}

/// Fails the test (never skips) when a peer tool is missing from `PATH`.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is required by this interop test but is not on PATH"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_binaries_do_not_inherit_streamr_settings() {
        // The variable is set for this process only; the shell's `export -p` prints what the
        // child sees (a shell is all the hermetic test tier's PATH holds).
        std::env::set_var("STREAMR_TEST_SUPPORT_PROBE", "set");
        let output = our_binary("sh")
            .args(["-c", "export -p"])
            .output()
            .expect("run sh");
        let seen = String::from_utf8_lossy(&output.stdout);
        assert!(!seen.contains("STREAMR_TEST_SUPPORT_PROBE"), "{seen}");
        assert!(seen.contains("PATH="), "other variables stay: {seen}");
    }

    #[test]
    fn a_dropped_child_is_killed() {
        // A shell reading commands from a pipe nobody writes to waits until it is killed.
        let child = Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        drop(Running(child));
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(!alive, "sh {pid} still runs");
    }
}
