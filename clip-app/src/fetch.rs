//! A released checkpoint's download as the `clip` tool shows it: the library's fetch
//! (`clip_core::clip::weights::download`) prints nothing, so its events become a progress bar on
//! stderr (when stderr is a terminal) and the stale-file warning here.

use clip_core::clip::weights::download::{self, FetchEvent, Watch};
use clip_core::clip::weights::WeightsError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;

/// The local path of released model `name`, downloaded into `~/.cache/clip` first if needed
/// (with a progress bar), asking `stop` between chunks whether to give up.
pub fn resolve_model(name: &str, stop: &dyn Fn() -> bool) -> Result<PathBuf, WeightsError> {
    let bar = RefCell::new(None);
    let report = |event: FetchEvent| show(&bar, event);
    download::resolve_model_watched(name, None, Watch { stop, report: &report })
}

fn show(bar: &RefCell<Option<ProgressBar>>, event: FetchEvent) {
    match event {
        FetchEvent::Mismatch { path } => eprintln!(
            "warning: {} exists, but the SHA256 checksum does not match; re-downloading the file",
            path.display()
        ),
        FetchEvent::Progress { file_name, received, total } => bar
            .borrow_mut()
            .get_or_insert_with(|| progress_bar(total, file_name))
            .set_position(received),
        FetchEvent::Done => {
            if let Some(bar) = bar.borrow_mut().take() {
                bar.finish_and_clear();
            }
        }
    }
}

fn progress_bar(len: Option<u64>, file_name: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(len, target);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(file_name.to_string());
    bar
}
