//! Running a binary the way a user at a terminal does: start it, wait for its first log line,
//! signal it, and wait for it — with a guard against hangs (not a timing).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `cmd`'s child starts with SIGINT at its default disposition, as a terminal's Ctrl-C finds a
/// program, whatever this test process inherited: a test run from a background shell (`cmd &` in
/// a script ignores SIGINT) would otherwise pass the ignore on, and a signal that comes before the
/// program installs its handler would be lost instead of ending it.
pub fn default_sigint(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal() is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    }
}

/// Spawns `cmd` with piped output and returns once its stdout printed a line starting with
/// `Step`; the thread collecting its stdout returns all of it.
pub fn spawn_until_first_step(mut cmd: Command) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("it starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Step ") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(180)).expect("a first log line");
    (child, reader)
}

/// `kill -SIGNAL` the child.
pub fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal}");
}

/// Waits at most `limit` for `child` (then kills it and fails); its status and stderr.
pub fn wait(mut child: Child, limit: Duration) -> (ExitStatus, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (status, err)
}
