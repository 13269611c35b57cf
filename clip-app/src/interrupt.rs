//! What the binaries do about Ctrl-C, SIGTERM, SIGHUP and libtorch's panics: a run that may last
//! hours must end with its results saved and one clear `error: …` line, never a crash.
//!
//! - [`install`]: the first SIGINT/SIGTERM/SIGHUP only sets a flag ([`requested`]). The program
//!   stops at its own safe points — between tensors while loading, between chunks while
//!   downloading or hashing, at the optimisation's read-backs — cleans up (an interrupted load
//!   removes the directories the run created while they are empty), saves what there is to save
//!   and exits with status 130. The handler runs on its own thread (the `ctrlc` crate), never
//!   inside libtorch, and never runs exit handlers or destructors while the main thread may be
//!   inside libtorch: a second signal ends the process at once with `_exit(130)`, without saving.
//!   Before `install` the default disposition applies (SIGTERM: status 143). Every signal is
//!   passed on to the child processes named with [`forward_signals_to`] (a sweep's workers), so
//!   they save and stop, or quit, with their parent.
//! - [`run_main`] runs a binary's body under `catch_unwind` with a quiet panic hook: tch's
//!   non-`f_` ops panic on libtorch errors (CUDA out of memory among them), and those become an
//!   `error: …` line (with advice for out of memory) and exit status 1.

use clip_core::clip::torch_error::{panic_error, payload_text};
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report Ctrl-C).
pub const INTERRUPTED_EXIT: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// Child processes every signal is passed on to (`clip sweep --workers`' workers).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set while this thread runs [`run_main`]'s body: its panics are recorded, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// The error a run returns when it stopped at a safe point because a signal asked it to, before
/// it had anything to save.
#[derive(Debug, thiserror::Error)]
#[error("interrupted {during}: nothing was saved")]
pub struct Interrupted {
    /// What the run was doing: "while loading the weights", …
    pub during: String,
}

/// A panic hook that records the message of panics inside [`run_main`] and leaves the others
/// (other threads, tests) to the previous hook.
fn install_quiet_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                return previous(info);
            }
            let message = payload_text(info.payload());
            let location = info.location().map(|l| format!(" ({}:{})", l.file(), l.line()));
            let mut slot = PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(format!("{message}{}", location.unwrap_or_default()));
        }));
    });
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler (once per process; later calls do nothing). What a
/// first signal does is up to the program's safe points; a second ends the process at once.
pub fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let result = ctrlc::set_handler(|| {
            forward_to_children();
            if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
                REQUESTED.store(true, Ordering::SeqCst);
                eprintln!(
                    "\ninterrupted: stopping at the next safe point and saving what there is \
                     (interrupt again to quit at once, without saving)"
                );
            } else {
                eprintln!("\nsecond interrupt: exiting now, without saving");
                // No exit handlers, no destructors: the main thread may be inside libtorch.
                // SAFETY: `_exit` is async-signal-safe and takes no pointers.
                unsafe { libc::_exit(i32::from(INTERRUPTED_EXIT)) }
            }
        });
        if let Err(e) = result {
            eprintln!("warning: Ctrl-C will not save the results: {e}");
        }
    });
}

/// Passes every signal this process gets on to `pid` from now on (SIGINT: the child saves and
/// stops at its safe point on the first, quits at once on the second, as this process does). The
/// child should run in its own process group, so that a Ctrl-C at the terminal reaches it once,
/// through here.
pub fn forward_signals_to(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    // A signal that came while the child was starting is passed on now.
    if requested() {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }
}

/// Stops passing signals on to `pid` (it has exited: its pid may be reused).
pub fn stop_forwarding_to(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != pid);
}

fn forward_to_children() {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in children {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill takes no pointers; a pid that has gone is an error we can ignore.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }
}

/// Whether a signal asked the program to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// A safe point: `Err(Interrupted)` once a signal asked the program to stop.
pub fn check(during: &str) -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted { during: during.to_string() })
    } else {
        Ok(())
    }
}

/// Runs a binary's body: `Ok(code)` is returned, an error is printed as `error: …` (with its
/// causes) and gives status 1 — or 130 when the error is an [`Interrupted`] stop —, and a panic
/// (a libtorch error through tch) is printed the same way.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    install_quiet_hook();
    CAPTURING.with(|c| c.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(body));
    CAPTURING.with(|c| c.set(false));
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(err)) if is_interrupted(&err) => {
            eprintln!("{}", error_line(&err));
            ExitCode::from(INTERRUPTED_EXIT)
        }
        Ok(Err(err)) => {
            eprintln!("error: {}", error_line(&err));
            ExitCode::FAILURE
        }
        Err(_) => {
            let message = PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner()).take();
            eprintln!("error: {}", panic_error(message.as_deref().unwrap_or("unknown error")));
            ExitCode::FAILURE
        }
    }
}

/// Whether `err` or one of its causes is an [`Interrupted`] stop (a library error that stopped
/// because its `stop` callback said so counts too).
pub fn is_interrupted(err: &anyhow::Error) -> bool {
    use clip_core::clip::model::LoadError;
    use clip_core::clip::weights::WeightsError;
    err.chain().any(|cause| {
        cause.is::<Interrupted>()
            || matches!(
                cause.downcast_ref::<WeightsError>(),
                Some(WeightsError::Interrupted { .. })
            )
            || matches!(
                cause.downcast_ref::<LoadError>(),
                Some(LoadError::Weights(WeightsError::Interrupted { .. }))
            )
    })
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose text the line already
/// holds (many library errors print their source in their own message too).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(clip_core::clip::weights::WeightsError::Io {
            path: "/x.pt".into(),
            source: io,
        })
        .context("loading /x.pt");
        assert_eq!(error_line(&err), "loading /x.pt: cannot read /x.pt: gone");
    }

    #[test]
    fn an_interrupted_stop_is_recognised_through_context() {
        let err = anyhow::Error::new(Interrupted { during: "while loading".into() })
            .context("loading the CLIP model");
        assert!(is_interrupted(&err));
        let weights =
            || clip_core::clip::weights::WeightsError::Interrupted { path: "/x.pt".into() };
        let err = anyhow::Error::new(weights()).context("getting the weights");
        assert!(is_interrupted(&err));
        let err = anyhow::Error::new(clip_core::clip::model::LoadError::Weights(weights()))
            .context("loading the CLIP model");
        assert!(is_interrupted(&err));
        assert!(!is_interrupted(&anyhow::anyhow!("other")));
    }

    #[test]
    fn a_libtorch_panic_is_caught_quietly() {
        let code = run_main(|| {
            let _ = tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)).view([3]);
            Ok(ExitCode::SUCCESS)
        });
        assert_eq!(code, ExitCode::FAILURE);
    }
}
