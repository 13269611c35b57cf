//! libtorch's errors as one readable line. tch's non-`f_` operations panic on libtorch errors (a
//! CUDA out-of-memory among them) with tch's `Result::unwrap()` wrapping around libtorch's message
//! and a C++ backtrace; callers that catch such a panic print [`panic_message`] instead.

/// The text a panic carries (`panic!`'s message), or "unknown error".
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown error".to_string())
}

/// The one-line error ([`panic_error`]) for the payload of a panic caught with `catch_unwind`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    panic_error(&payload_text(payload))
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

/// libtorch's first line when a caught panic's message is an out-of-memory error.
pub fn out_of_memory(message: &str) -> Option<String> {
    if !message.to_lowercase().contains("out of memory") {
        return None;
    }
    let torch = message
        .split_once("Torch(\"")
        .map(|(_, rest)| rest.rsplit_once("\")").map_or(rest, |(m, _)| m))
        .unwrap_or(message)
        .replace("\\n", "\n");
    Some(torch.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string())
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
        assert_eq!(
            out_of_memory(oom).as_deref(),
            Some("CUDA out of memory. Tried to allocate 2.00 GiB")
        );
        assert_eq!(out_of_memory(shape), None);
    }
}
