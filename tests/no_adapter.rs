//! With no adapter to be had, `Context::new` is an `Err` that lists what was tried and says how
//! to get a software driver. Its own test binary: it sets `WGPU_ADAPTER_NAME` for the process.

#[test]
fn no_adapter_is_an_error_that_says_what_was_tried_and_how_to_get_one() {
    // No adapter is named like this, so every backend's adapters are filtered out.
    std::env::set_var("WGPU_ADAPTER_NAME", "no-such-adapter-7d1f");
    let e = metalcore::Context::new().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, metalcore::Error::NoAdapter { .. }), "{msg}");
    assert!(
        msg.contains("no-such-adapter-7d1f") && msg.contains("WGPU_ADAPTER_NAME"),
        "{msg}"
    );
    assert!(
        msg.contains("lavapipe") && msg.contains("llvmpipe"),
        "{msg}"
    );
}
