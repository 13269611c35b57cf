"""The tests run as a terminal user runs Python: SIGINT at Python's own handler (KeyboardInterrupt).

A test session started from a background shell (`cmd &` in a script) inherits SIGINT ignored, and
Python then leaves it ignored, so `_thread.interrupt_main()` (the tests' Ctrl-C) would do nothing
and a run waiting for it would never stop. Set here, before the tests import `clip_rs` (which wraps
the default handler only when it finds it)."""

import signal

if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
    signal.signal(signal.SIGINT, signal.default_int_handler)
