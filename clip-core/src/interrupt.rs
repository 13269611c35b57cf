//! What the binaries do about Ctrl-C, SIGTERM and libtorch's panics: a run that may last hours
//! must end with its results saved and one clear `error: …` line, never a panic message.
//!
//! - [`install`] makes the first SIGINT/SIGTERM/SIGHUP set a flag that the optimisation polls at its
//!   read-backs ([`requested`]); the run then saves its best images, marked interrupted. A second
//!   signal, or one before the optimisation started ([`start_saving`]: while loading or
//!   downloading), exits at once with status 130.
//! - [`run_main`] runs a binary's body under `catch_unwind` with a quiet panic hook: tch's
//!   non-`f_` ops panic on libtorch errors (CUDA out of memory among them), and those become an
//!   `error: …` line (with advice for out of memory) and exit status 1.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report Ctrl-C).
pub const INTERRUPTED_EXIT: u8 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Whether there is something to save: before the optimisation starts a signal exits at once.
static SAVING: AtomicBool = AtomicBool::new(false);
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    /// Set while this thread runs [`run_main`]'s body: its panics are recorded, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
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
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown error".to_string());
            let location = info.location().map(|l| format!(" ({}:{})", l.file(), l.line()));
            let mut slot = PANIC_MESSAGE.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(format!("{message}{}", location.unwrap_or_default()));
        }));
    });
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler (once per process; later calls do nothing).
pub fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if !SAVING.load(Ordering::SeqCst) {
                eprintln!("\ninterrupted: nothing to save yet, exiting");
                std::process::exit(i32::from(INTERRUPTED_EXIT));
            }
            if REQUESTED.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting now, without saving");
                std::process::exit(i32::from(INTERRUPTED_EXIT));
            }
            eprintln!("\ninterrupted: saving the current images (interrupt again to quit at once)");
        });
        if let Err(e) = result {
            eprintln!("warning: Ctrl-C will not save the results: {e}");
        }
    });
}

/// From now on a first signal asks the run to stop and save ([`requested`]) instead of exiting.
pub fn start_saving() {
    SAVING.store(true, Ordering::SeqCst);
}

/// Whether a signal asked the run to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Runs a binary's body: `Ok(code)` is returned, an error is printed as `error: …` (with its
/// causes) and gives status 1, and a panic (a libtorch error through tch) is printed the same way.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    install_quiet_hook();
    CAPTURING.with(|c| c.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(body));
    CAPTURING.with(|c| c.set(false));
    match outcome {
        Ok(Ok(code)) => code,
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

/// The one-line error ([`panic_error`]) for the payload of a panic caught with `catch_unwind`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown error".to_string());
    panic_error(&message)
}

/// The one-line error for a caught panic's message: libtorch's own message without tch's
/// `called Result::unwrap()` wrapping, with advice for out of memory.
pub fn panic_error(message: &str) -> String {
    let torch = message
        .split_once("Torch(\"")
        .map(|(_, rest)| rest.rsplit_once("\")").map_or(rest, |(m, _)| m))
        .map(|m| m.replace("\\n", "\n").replace("\\\"", "\""));
    let Some(torch) = torch else {
        return format!("internal error (please report it): {message}");
    };
    // libtorch appends a C++ backtrace after the first line; keep the message.
    let first = torch.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if torch.to_lowercase().contains("out of memory") {
        format!(
            "the device ran out of memory ({first}); run fewer prompts at once (fewer --prompt \
             flags, or split them over several runs) or use --device cpu"
        )
    } else {
        format!("libtorch: {first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_errors_become_one_line() {
        let oom = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried \
                   to allocate 2.00 GiB\\nException raised from malloc at …\")";
        let msg = panic_error(oom);
        assert!(msg.starts_with("the device ran out of memory (CUDA out of memory."), "{msg}");
        assert!(msg.contains("fewer prompts") && !msg.contains("Exception raised"), "{msg}");
        let shape = "called `Result::unwrap()` on an `Err` value: Torch(\"shape '[3]' is invalid \
                     for input of size 2\")";
        assert_eq!(panic_error(shape), "libtorch: shape '[3]' is invalid for input of size 2");
        assert!(panic_error("index out of bounds").starts_with("internal error"));
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(crate::weights::WeightsError::Io {
            path: "/x.pt".into(),
            source: io,
        })
        .context("loading /x.pt");
        assert_eq!(error_line(&err), "loading /x.pt: cannot read /x.pt: gone");
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
