//! `clip compare --probes LIST` (and Python's `probes=`): `ProbeList::from_str` on any UTF-8. Must
//! hold: a list or an error, never a panic; an accepted list prints as text that reads back as the
//! same list.
#![no_main]

use clip_app::compare::{Probe, ProbeList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = text.parse::<Probe>();
    let Ok(list) = text.parse::<ProbeList>() else { return };
    let shown = list.to_string();
    let again: ProbeList = shown.parse().expect("a probe list's text reads back");
    assert_eq!(again, list, "{shown} reads back as the same list");
});
