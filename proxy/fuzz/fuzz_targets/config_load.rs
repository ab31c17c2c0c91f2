//! Config loading from TOML text (`Config::from_toml_with_env`: parse, `${VAR}` resolution,
//! secret-reference checks, typed deserialisation, validation): never a panic, whatever the
//! file says; and what validates has addresses that parse (the accessors rely on it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_sidecar::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Some variables set, some not, so both resolution paths run; URL-named ones hold a URL
    // so that configs like examples/sidecar.toml get past resolution into validation.
    let lookup = |name: &str| {
        (name.len() % 2 == 0).then(|| {
            if name.ends_with("URL") {
                "http://127.0.0.1:8000/mcp".to_owned()
            } else {
                format!("secret-value-of-{name}-0123456789abcdef")
            }
        })
    };
    let Ok(config) = Config::from_toml_with_env(text, &lookup) else {
        return;
    };
    assert!(config.listen_addr().is_ok());
    assert!(config.admin_addr().is_ok());
});
