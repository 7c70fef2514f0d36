//! Client keys the OS holds, on real PKCS#11 tokens: SoftHSM2 and a TPM 2.0 (`swtpm` through
//! `tpm2-pkcs11`). Lanyard makes the key, signs client assertions with it that the public JWK
//! verifies, and the token refuses to hand the private key out. Then both legs of the flow run
//! against the testbed's IdP and authorization server with the key registered as a JWK.

#![cfg(target_os = "linux")]

mod kit;
mod support;

use std::path::Path;
use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use lanyard_core::device_key::{self, pkcs11, HeldKey, KeyError, KeyKind};
use lanyard_core::oauth::{KeyAlgorithm, SigningKey};
use lanyard_core::policy::{KeyReference, SecretSource};
use lanyard_core::secret::Secret;
use lanyard_testbed::key_stores::{SoftHsm, SoftTpm};
use lanyard_testbed::{
    AsConfig, ClientAuth, IdpConfig, McpConfig, RegisteredClient, TestbedConfig,
};
use serde_json::{json, Value};
use support::*;

const SO_PIN: &str = "so-pin-4711";
const USER_PIN: &str = "user-pin-0815";

fn reference(module: &Path, label: &str, id: &str) -> KeyReference {
    KeyReference::Pkcs11 {
        module: module.to_owned(),
        token: "lanyard".into(),
        label: Some(label.into()),
        id: Some(id.into()),
        pin: Some(SecretSource::Env("LANYARD_TEST_TOKEN_PIN".into())),
    }
}

fn pin() -> Option<Secret> {
    Some(Secret::new(USER_PIN))
}

fn provision(module: &Path) {
    // A second run keeps the token the first made.
    for expected in [pkcs11::TokenInit::Created, pkcs11::TokenInit::AlreadyThere] {
        let outcome = pkcs11::init_token(
            &reference(module, "any", "00"),
            &Secret::new(SO_PIN),
            &Secret::new(USER_PIN),
        )
        .expect("token");
        assert_eq!(outcome, expected);
    }
}

/// Signs a client assertion with `key` and verifies it with the key's own public JWK.
fn assert_signs_verifiable_assertions(key: Arc<dyn HeldKey>, alg: KeyAlgorithm) {
    let jwk = key.public_jwk().expect("public jwk");
    let kid = device_key::jwk_thumbprint(&jwk);
    let signing = SigningKey::held(key, alg, Some(kid.clone()));
    let claims = json!({"iss": "lanyard", "sub": "lanyard", "aud": "https://idp.example", "exp": 4_000_000_000u64, "jti": "j-1"});
    let jwt = signing.sign(&claims, None).expect("signed");
    let header = jsonwebtoken::decode_header(jwt.expose()).expect("header");
    assert_eq!(header.kid.as_deref(), Some(kid.as_str()));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).expect("jwk");
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let mut validation = jsonwebtoken::Validation::new(match alg {
        KeyAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
    });
    validation.set_audience(&["https://idp.example"]);
    let verified =
        jsonwebtoken::decode::<Value>(jwt.expose(), &decoding, &validation).expect("verifies");
    assert_eq!(verified.claims["jti"], "j-1");
    // Two signatures over the same input are both valid (ECDSA draws a fresh nonce each time).
    assert!(jsonwebtoken::decode::<Value>(
        signing.sign(&claims, None).expect("signed").expose(),
        &decoding,
        &validation
    )
    .is_ok());
}

/// Reads the made private key's attributes straight from the token, past Lanyard's code: it
/// is sensitive, not extractable, never was, and its value is refused: SoftHSM answers
/// "sensitive"; tpm2-pkcs11 has no such attribute to give (the key exists only wrapped by the
/// TPM), `sensitive_answer` false.
fn assert_the_private_key_cannot_be_read_out(module: &Path, label: &str, sensitive_answer: bool) {
    let context = pkcs11::load_module(module).expect("module");
    let slot = context
        .get_slots_with_initialized_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            context
                .get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == "lanyard")
        })
        .expect("the token");
    let session = context.open_ro_session(slot).expect("session");
    session
        .login(UserType::User, Some(&AuthPin::from(USER_PIN.to_owned())))
        .or_else(|e| match e {
            cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _) => {
                Ok(())
            }
            e => Err(e),
        })
        .expect("login");
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .expect("find")
        .pop()
        .expect("the private key");
    let flags = session
        .get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ],
        )
        .expect("attributes");
    assert!(flags.contains(&Attribute::Sensitive(true)), "{flags:?}");
    assert!(flags.contains(&Attribute::Extractable(false)), "{flags:?}");
    assert!(
        flags.contains(&Attribute::NeverExtractable(true)),
        "{flags:?}"
    );
    let info = session
        .get_attribute_info(key, &[AttributeType::Value, AttributeType::PrivateExponent])
        .expect("attribute info");
    for one in &info {
        assert!(
            matches!(
                one,
                AttributeInfo::Sensitive | AttributeInfo::TypeInvalid | AttributeInfo::Unavailable
            ),
            "a private value is readable: {info:?}"
        );
    }
    assert!(
        !sensitive_answer || info.iter().any(|i| matches!(i, AttributeInfo::Sensitive)),
        "the token did not call the key sensitive: {info:?}"
    );
    let values = session
        .get_attributes(key, &[AttributeType::Value, AttributeType::PrivateExponent])
        .unwrap_or_default();
    assert!(
        values
            .iter()
            .all(|v| !matches!(v, Attribute::Value(_) | Attribute::PrivateExponent(_))),
        "a private value came out"
    );
}

#[test]
fn a_softhsm_key_signs_assertions_and_never_comes_out() {
    let store = SoftHsm::start();
    provision(&store.module);
    for (alg, label, id) in [
        (KeyAlgorithm::ES256, "client-ec", "01"),
        (KeyAlgorithm::RS256, "client-rsa", "02"),
    ] {
        let at = reference(&store.module, label, id);
        let made = device_key::create(&at, alg, pin()).expect("created");
        assert_eq!(made.location().kind, KeyKind::SoftwareStore);
        let opened = device_key::open(&at, alg, pin()).expect("opened");
        assert_eq!(
            made.public_jwk().expect("jwk"),
            opened.public_jwk().expect("jwk"),
            "the key made is the key found"
        );
        assert_signs_verifiable_assertions(opened, alg);
        assert_the_private_key_cannot_be_read_out(&store.module, label, true);
    }
}

#[test]
fn a_tpm_key_signs_assertions_and_never_comes_out() {
    let tpm = SoftTpm::start();
    provision(&tpm.module);
    let at = reference(&tpm.module, "client", "01");
    let made = device_key::create(&at, KeyAlgorithm::ES256, pin()).expect("created in the TPM");
    let location = made.location();
    assert_eq!(location.kind, KeyKind::Tpm, "{location}");
    assert!(location.name.contains("libtpm2_pkcs11.so"), "{location}");
    assert_signs_verifiable_assertions(made, KeyAlgorithm::ES256);
    assert_the_private_key_cannot_be_read_out(&tpm.module, "client", false);
}

#[test]
fn each_way_a_key_reference_fails_is_named_with_the_store_the_key_and_the_fix() {
    let store = SoftHsm::start();
    let message = |r: Result<Arc<dyn HeldKey>, KeyError>| match r {
        Ok(key) => panic!("opened {key:?}"),
        Err(e) => (e.clone(), e.to_string()),
    };

    let missing_module = KeyReference::Pkcs11 {
        module: "/usr/lib/nonexistent/libpkcs11.so".into(),
        token: "lanyard".into(),
        label: Some("client".into()),
        id: None,
        pin: None,
    };
    let (e, text) = message(device_key::open(
        &missing_module,
        KeyAlgorithm::ES256,
        pin(),
    ));
    assert!(matches!(e, KeyError::StoreMissing { .. }), "{e:?}");
    assert!(text.contains("/usr/lib/nonexistent/libpkcs11.so"), "{text}");

    let (e, text) = message(device_key::open(
        &reference(&store.module, "client", "01"),
        KeyAlgorithm::ES256,
        pin(),
    ));
    assert!(matches!(e, KeyError::TokenAbsent { .. }), "{e:?}");
    assert!(
        text.contains("\"lanyard\"") && text.contains("provision"),
        "{text}"
    );

    provision(&store.module);
    let (e, text) = message(device_key::open(
        &reference(&store.module, "client", "01"),
        KeyAlgorithm::ES256,
        pin(),
    ));
    assert!(matches!(e, KeyError::KeyNotFound { .. }), "{e:?}");
    assert!(text.contains("lanyard device-key create"), "{text}");

    let at = reference(&store.module, "client", "01");
    device_key::create(&at, KeyAlgorithm::ES256, pin()).expect("created");
    let (e, text) = message(device_key::open(&at, KeyAlgorithm::ES256, None));
    assert!(matches!(e, KeyError::PinNeeded { .. }), "{e:?}");
    assert!(text.contains("key.pin"), "{text}");
    let (e, text) = message(device_key::open(
        &at,
        KeyAlgorithm::ES256,
        Some(Secret::new("wrong-pin")),
    ));
    assert!(matches!(e, KeyError::PinNeeded { .. }), "{e:?}");
    assert!(
        text.contains("refused") && !text.contains("wrong-pin"),
        "{text}"
    );

    let (e, text) = message(device_key::open(&at, KeyAlgorithm::RS256, pin()));
    assert!(matches!(e, KeyError::AlgorithmRefused { .. }), "{e:?}");
    assert!(text.contains("RS256") && text.contains("alg"), "{text}");

    let (e, text) = message(device_key::create(&at, KeyAlgorithm::ES256, pin()));
    assert!(matches!(e, KeyError::Store { .. }), "{e:?}");
    assert!(text.contains("already there"), "{text}");
}

/// A module is code the agent runs: one that is not an administrator's file (here a copy in a
/// world-writable temporary directory) is never loaded, whatever the policy or the CLI names.
#[test]
fn a_module_that_is_not_an_administrators_file_is_never_loaded() {
    let store = SoftHsm::start();
    let dir = std::env::temp_dir().join(format!("lanyard-module-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let copy = dir.join("libsofthsm2.so");
    std::fs::copy(&store.module, &copy).expect("copy the module");
    let at = reference(&copy, "client", "01");
    let refused = device_key::open(&at, KeyAlgorithm::ES256, pin());
    let _ = std::fs::remove_dir_all(&dir);
    match refused {
        Err(KeyError::StoreMissing { detail, .. }) => {
            assert!(detail.contains("is refused"), "{detail}")
        }
        other => panic!("the copied module was loaded: {other:?}"),
    }
}

/// The employee's flow with the requester's key in a TPM, on both legs: the IdP (sign-in, the
/// token exchange, the refresh) and the authorization server (jwt-bearer) each verify the
/// assertion with the JWK registered for the client, and the MCP server takes the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_legs_authenticate_with_a_tpm_held_key_registered_as_a_jwk() {
    let tpm = SoftTpm::start();
    provision(&tpm.module);
    let at = reference(&tpm.module, "client", "01");
    let key = device_key::create(&at, KeyAlgorithm::ES256, pin()).expect("created");
    let jwk = key.public_jwk().expect("jwk").to_string();
    drop(key);
    std::env::set_var("LANYARD_TEST_TOKEN_PIN", USER_PIN);

    let config = TestbedConfig {
        idp: IdpConfig::default().with_client(RegisteredClient::new(
            "lanyard-desktop",
            ClientAuth::PrivateKeyJwt(jwk.clone()),
        )),
        auth_servers: vec![AsConfig::new("docs", "lanyard-docs")
            .with_client(RegisteredClient::new(
                "lanyard-docs",
                ClientAuth::PrivateKeyJwt(jwk),
            ))
            .with_issuer_path("/as", false)],
        mcp_servers: vec![McpConfig::new("docs", "docs", &["docs.read"])],
        ..TestbedConfig::default()
    };
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    let key_json = serde_json::to_value(&at).expect("reference");
    policy["idp"]["client_auth"] = json!({"method": "private_key_jwt", "key": key_json});
    server_entry(&mut policy, "docs")["client_auth"] =
        json!({"method": "private_key_jwt", "key": key_json, "alg": "ES256"});
    lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(&tb, &mut policy);
    let lanyard = granted_and_accepted(&tb, &policy, "docs").await;
    let stats = tb.idp().stats();
    assert_eq!(stats.rejected_token_exchanges, 0);
    // The status names where each leg's key lives, never the PIN.
    let status = lanyard.engine.status();
    let idp_key = status.idp_client_key.clone().expect("the IdP leg's key");
    assert_eq!(idp_key.kind, KeyKind::Tpm, "{idp_key}");
    let docs = status
        .servers
        .iter()
        .find(|s| s.id == "docs")
        .expect("docs");
    assert_eq!(docs.client_key.as_ref().map(|k| k.kind), Some(KeyKind::Tpm));
    let text = serde_json::to_string(&status).expect("status");
    assert!(!text.contains(USER_PIN), "{text}");
}

/// The IdP leg's client key in the TPM is the device's DPoP key too: the bound token names its
/// thumbprint, and a proof the agent signs with it is accepted by the MCP server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_held_client_key_also_signs_the_dpop_proofs() {
    let tpm = SoftTpm::start();
    provision(&tpm.module);
    let at = reference(&tpm.module, "client", "01");
    let key = device_key::create(&at, KeyAlgorithm::ES256, pin()).expect("created");
    let public = key.public_jwk().expect("jwk");
    drop(key);
    std::env::set_var("LANYARD_TEST_TOKEN_PIN", USER_PIN);
    let config = TestbedConfig {
        idp: IdpConfig::default().with_client(RegisteredClient::new(
            "lanyard-desktop",
            ClientAuth::PrivateKeyJwt(public.to_string()),
        )),
        auth_servers: vec![AsConfig::new("docs", "lanyard-docs")
            .with_issuer_path("/as", false)
            .with_dpop(false)],
        mcp_servers: vec![McpConfig::new("docs", "docs", &["docs.read"])],
        ..TestbedConfig::default()
    };
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    policy["idp"]["client_auth"] =
        json!({"method": "private_key_jwt", "key": serde_json::to_value(&at).expect("reference")});
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let token = lanyard.token("docs", 60).await;
    let jkt = device_key::jwk_thumbprint(&public);
    assert_eq!(token.dpop_jkt.as_deref(), Some(jkt.as_str()));
    let summary = lanyard.engine.status().dpop_key.expect("a DPoP key");
    assert_eq!(
        summary.home,
        lanyard_core::oauth::dpop::DpopKeyHome::OsKeyStore
    );
    assert_eq!(summary.jkt, jkt);
    assert_eq!(tb.idp().stats().bound_id_jags, 1);
    let mcp = tb.mcp_server("docs").expect("mcp");
    let url = url::Url::parse(mcp.url()).expect("url");
    let proof = lanyard_core::engine::grant::sign_proof(
        &lanyard.engine.dpop_key(),
        "POST",
        &url,
        lanyard.now(),
        Some(token.access_token.clone()),
        None,
    )
    .await
    .expect("the TPM signed");
    let answer = lanyard_testbed::whoami_call(
        &http(),
        mcp.url(),
        &format!("DPoP {}", token.access_token.expose()),
        Some(proof.expose()),
    )
    .send()
    .await
    .expect("MCP request");
    assert_eq!(answer.status().as_u16(), 200);
}

/// A server whose key is not on the token fails by name (the fix in the message); the session
/// and the other servers are not held up by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_fails_its_server_by_name_and_the_others_are_granted() {
    let store = SoftHsm::start();
    provision(&store.module);
    std::env::set_var("LANYARD_TEST_TOKEN_PIN", USER_PIN);
    let config = TestbedConfig {
        auth_servers: vec![
            AsConfig::new("docs", "lanyard-docs"),
            AsConfig::new("keyed", "lanyard-keyed").with_client(RegisteredClient::new(
                "lanyard-keyed",
                ClientAuth::PrivateKeyJwt(r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.into()),
            )),
        ],
        mcp_servers: vec![
            McpConfig::new("docs", "docs", &["docs.read"]),
            McpConfig::new("keyed", "keyed", &["keyed.read"]),
        ],
        ..TestbedConfig::default()
    };
    let tb = testbed(config).await;
    let mut policy = policy_json(&tb);
    server_entry(&mut policy, "keyed")["client_auth"] = json!({"method": "private_key_jwt",
        "key": serde_json::to_value(reference(&store.module, "never-made", "0a")).expect("ref")});
    lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(&tb, &mut policy);
    let lanyard = start_engine(&tb, &policy, Options::default());
    lanyard.sign_in().await;
    lanyard.wait_granted("docs").await;
    let state = lanyard
        .wait_server("keyed", "failing", |s| {
            matches!(s, lanyard_core::engine::ServerState::Failing { .. })
        })
        .await;
    let lanyard_core::engine::ServerState::Failing { error, .. } = state else {
        unreachable!()
    };
    assert!(
        error.contains("has no private key") && error.contains("lanyard device-key create"),
        "{error}"
    );
    assert!(!error.contains(USER_PIN), "{error}");
    assert_eq!(
        tb.auth_server("keyed")
            .expect("AS")
            .stats()
            .jwt_bearer_mints,
        0
    );
}

/// What an administrator runs on a laptop: the shipped provisioning script makes the token and
/// the key in the TPM, and prints the public JWK to register; `lanyard device-key show` and
/// `lanyard diagnose` then say the key lives in the TPM. Running the script again changes
/// nothing. No PIN is ever on a command line.
#[test]
fn the_shipped_provisioning_script_puts_the_key_in_the_tpm_and_lanyard_says_so() {
    let tpm = SoftTpm::start();
    let dir = std::env::temp_dir().join(format!("lanyard-provision-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("run")).expect("dir");
    let policy = dir.join("policy.json");
    let reference = json!({"store": "pkcs11", "module": tpm.module, "token": "lanyard",
                           "label": "laptop", "pin": {"env": "LANYARD_TOKEN_USER_PIN"}});
    std::fs::write(
        &policy,
        json!({"idp": {"issuer": "https://idp.example", "client_id": "lanyard",
                       "client_auth": {"method": "private_key_jwt", "key": reference}},
               "servers": []})
        .to_string(),
    )
    .expect("policy");
    let lanyard = &kit::binaries().lanyard;
    let run = |program: &Path, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .env("LANYARD_CLI", lanyard)
            .env("LANYARD_POLICY", &policy)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
            .env("LANYARD_TOKEN_SO_PIN", SO_PIN)
            .env("LANYARD_TOKEN_USER_PIN", USER_PIN)
            .envs(tpm.env().iter().map(|(k, v)| (k, v)))
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/linux/provision-pkcs11-token.sh");
    let (code, first) = run(&script, &[]);
    assert_eq!(code, Some(0), "{first}");
    assert!(first.contains("The token is ready."), "{first}");
    assert!(
        first.contains("lives in    TPM: PKCS#11 token \"lanyard\""),
        "{first}"
    );
    let (code, again) = run(&script, &[]);
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("already there; it is kept"), "{again}");

    let (code, shown) = run(lanyard, &["device-key", "show", "--json"]);
    assert_eq!(code, Some(0), "{shown}");
    let shown: Value = serde_json::from_str(shown.trim()).expect("json");
    assert_eq!(shown["location"]["kind"], "tpm");
    assert_eq!(shown["jwk"]["kty"], "EC");
    assert!(shown["jwk"].get("d").is_none(), "a private member: {shown}");
    let thumbprint = shown["thumbprint"].as_str().expect("thumbprint").to_owned();
    assert!(
        first.contains(&thumbprint) && again.contains(&thumbprint),
        "the second run shows the same key"
    );

    let archive = dir.join("diag.zip");
    let (code, said) = run(
        lanyard,
        &["diagnose", "--output", archive.to_str().expect("utf-8")],
    );
    assert_eq!(code, Some(0), "{said}");
    let file = std::fs::File::open(&archive).expect("archive");
    let mut zip = zip::ZipArchive::new(file).expect("zip");
    let mut keys = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("client-keys.json").expect("client-keys.json"),
        &mut keys,
    )
    .expect("read");
    let keys: Value = serde_json::from_str(&keys).expect("json");
    assert_eq!(keys[0]["location"]["kind"], "tpm", "{keys}");
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).expect("file");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(USER_PIN) && !text.contains(SO_PIN),
            "a PIN in {}",
            file.name()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
