//! Arbitrary bytes into the PyTorch checkpoint reader, through every entry
//! point: the restricted pickle VM alone, each container reader whatever the
//! first bytes say, and the public import (detection, conversion to the
//! state map, model validation). Any outcome but a panic, abort, hang or
//! runaway allocation is fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sgraf::pth;

fuzz_target!(|data: &[u8]| {
    let _ = pth::pickle::unpickle(data, 0, true);
    if let Ok(f) = pth::read_zip(data) {
        let _ = pth::convert::convert(&f);
    }
    if let Ok(f) = pth::read_legacy(data) {
        let _ = pth::convert::convert(&f);
    }
    if let Ok(imp) = pth::import(data, "fuzz") {
        let _ = imp.params("fuzz");
    }
});
