//! A short pass of every fuzz target over its committed corpus (`fuzz/corpus/<target>/`) and its
//! regressions (`fuzz/regressions/<target>/`), on the stable toolchain: the same property
//! functions libFuzzer drives in `make fuzz`, so `make test` checks every seed and every input
//! that once crashed a parser.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_passes_its_corpus_and_regressions() {
    let mut failures = Vec::new();
    for (name, target) in lanyard_fuzz::TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(
            corpus.len() >= 3,
            "fuzz/corpus/{name}/ holds {} seeds; every target keeps a few",
            corpus.len()
        );
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("a readable seed");
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their target: {failures:#?}"
    );
}

#[test]
fn every_target_has_a_libfuzzer_entry_point() {
    for (name, _) in lanyard_fuzz::TARGETS {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            source.contains(&format!("lanyard_fuzz::{name}(")),
            "{} does not call lanyard_fuzz::{name}",
            path.display()
        );
    }
}

/// The seeds reach the deep paths, so the fuzzer starts from inputs the parsers accept: a signed
/// ID token seed is valid, the policy seeds resolve in every format.
#[test]
fn seeds_reach_what_the_parsers_accept() {
    use lanyard_core::policy::sources::macos_plist::{layers_from_mobileconfig, layers_from_plist};
    use lanyard_core::policy::{parse_json, resolve, FileChecks, Layer, Scope};

    let seed = std::fs::read(fuzz_dir().join("corpus/jwt/signed-valid")).expect("the seed");
    let claims: serde_json::Value = serde_json::from_slice(&seed[5..]).expect("claims JSON");
    for with_nonce in [false, true] {
        let info = lanyard_fuzz::validate_signed(&claims, Some("JWT"), with_nonce)
            .expect("the signed seed is a valid ID token");
        assert_eq!(info.subject, "alice");
    }
    let mut expired = claims.clone();
    expired["exp"] = serde_json::json!(lanyard_fuzz::JWT_NOW - 600);
    assert!(lanyard_fuzz::validate_signed(&expired, None, false).is_err());

    let policy =
        |name: &str| std::fs::read(fuzz_dir().join("corpus/policy").join(name)).expect(name);
    let text = String::from_utf8(policy("linux-policy.json")).expect("UTF-8");
    let document = parse_json(&text, "seed").expect("JSON");
    let layer = Layer::new("seed", Scope::Mandatory, document);
    assert!(resolve(&[layer], FileChecks::Skip).is_ok());
    for name in [
        "managed-prefs.plist",
        "managed-prefs-binary.plist",
        "mcx-forced-setonce.plist",
    ] {
        let layers = layers_from_plist(&policy(name), name).expect(name);
        assert!(resolve(&layers, FileChecks::Skip).is_ok(), "{name}");
    }
    let layers =
        layers_from_mobileconfig(&policy("lanyard.mobileconfig"), "profile").expect("profile");
    assert!(resolve(&layers, FileChecks::Skip).is_ok());

    // The SAML seeds that are good answers are read as such (so the fuzzer starts from accepted
    // documents), and the hostile ones are refused.
    use base64::Engine as _;
    let saml = |name: &str| {
        let seed = std::fs::read(fuzz_dir().join("corpus/saml_response").join(name)).expect(name);
        lanyard_core::signin::saml::read_response(
            &base64::engine::general_purpose::STANDARD.encode(&seed[1..]),
            &lanyard_fuzz::SAML_EXPECTED,
        )
    };
    for name in ["inherited-namespaces", "own-namespaces"] {
        let assertion = saml(name).expect(name);
        assert_eq!(assertion.subject, "alice@example.com", "{name}");
    }
    for name in ["status-authn-failed", "encrypted-assertion", "dtd-entities"] {
        assert!(saml(name).is_err(), "{name}");
    }
}
