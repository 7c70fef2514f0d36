//! What a client key in a TPM costs: sign-in → every server `Granted` for N = 1, 10, 50 servers,
//! with the requester's `private_key_jwt` key (both legs) in a PEM file, a SoftHSM2 token and a
//! TPM 2.0 (`swtpm` through `tpm2-pkcs11`). Every token request signs a fresh assertion (its
//! `jti` is single use): 1 at the sign-in's code exchange, then 2 per server (the IdP's token
//! exchange and the authorization server's jwt-bearer grant). Nothing is cached to hide it.
//!
//!     cargo bench -p lanyard-tests --bench client_keys                  (make bench-keys)
//!     … -- --n 1 --runs 1                                               (the smoke run in make test)
//!
//! The testbed runs in this process on 127.0.0.1 with no added latency, so the grants column is
//! the engine, the testbed and the signatures; the PEM row is the baseline the others add to.
//! Also measured: one signature alone (median of 30), straight through the key store.

#[cfg(target_os = "linux")]
#[path = "../tests/support/mod.rs"]
mod support;

#[cfg(target_os = "linux")]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    linux::run().await;
}

/// PKCS#11 tokens and swtpm are Linux's; elsewhere there is nothing to measure here.
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("client_keys: the PKCS#11 key stores are measured on Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::time::{Duration, Instant};

    use super::support::*;
    use lanyard_core::device_key::{self, pkcs11, HeldKey};
    use lanyard_core::oauth::{KeyAlgorithm, SigningKey};
    use lanyard_core::policy::{KeyReference, SecretSource};
    use lanyard_core::secret::Secret;
    use lanyard_testbed::key_stores::{SoftHsm, SoftTpm};
    use lanyard_testbed::{
        AsConfig, ClientAuth, IdpConfig, McpConfig, RegisteredClient, TestbedConfig,
    };
    use serde_json::{json, Value};

    const PIN_ENV: &str = "LANYARD_BENCH_TOKEN_PIN";
    const PIN: &str = "bench-pin-1";

    /// One way the key is held: what the testbed registers, and the policy's `client_auth`.
    struct KeyVariant {
        name: &'static str,
        registered: String,
        client_auth: Value,
        /// The key as the engine signs with it, for the one-signature column.
        signing: SigningKey,
    }

    fn held(module: &std::path::Path, label: &str) -> (KeyReference, std::sync::Arc<dyn HeldKey>) {
        let reference = KeyReference::Pkcs11 {
            module: module.to_owned(),
            token: "bench".into(),
            label: Some(label.into()),
            id: None,
            pin: Some(SecretSource::Env(PIN_ENV.into())),
        };
        pkcs11::init_token(&reference, &Secret::new("bench-so"), &Secret::new(PIN)).expect("token");
        let key = device_key::create(&reference, KeyAlgorithm::ES256, Some(Secret::new(PIN)))
            .expect("key");
        (reference, key)
    }

    fn variant_of_store(name: &'static str, module: &std::path::Path) -> KeyVariant {
        let (reference, key) = held(module, name);
        KeyVariant {
            name,
            registered: key.public_jwk().expect("jwk").to_string(),
            client_auth: json!({"method": "private_key_jwt", "alg": "ES256",
                                "key": serde_json::to_value(&reference).expect("reference")}),
            signing: SigningKey::held(key, KeyAlgorithm::ES256, None),
        }
    }

    fn pem_variant() -> KeyVariant {
        let (path, public) = ec_client_key();
        let pem = std::fs::read(&path).expect("pem");
        let key = SigningKey::from_pem(&pem, KeyAlgorithm::ES256, None).expect("pem key");
        KeyVariant {
            name: "PEM file",
            registered: public,
            client_auth: json!({"method": "private_key_jwt", "alg": "ES256", "key_file": path}),
            signing: key,
        }
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    /// One client assertion signed as the engine signs it (header, claims, signature), median of 30.
    fn one_signature(signing: &SigningKey) -> Duration {
        median(
            (0..30)
                .map(|i| {
                    let claims = json!({"iss": "bench", "sub": "bench", "aud": "https://as.example",
                                        "jti": format!("j-{i}"), "iat": 0, "exp": 120});
                    let started = Instant::now();
                    signing.sign(&claims, None).expect("signs");
                    started.elapsed()
                })
                .collect(),
        )
    }

    /// Sign-in, then every one of `n` servers granted; both durations.
    async fn run_once(variant: &KeyVariant, n: usize) -> (Duration, Duration) {
        let ids: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let config = TestbedConfig {
            idp: IdpConfig::default().with_client(RegisteredClient::new(
                "lanyard-desktop",
                ClientAuth::PrivateKeyJwt(variant.registered.clone()),
            )),
            auth_servers: ids
                .iter()
                .map(|id| {
                    AsConfig::new(id, &format!("lanyard-{id}")).with_client(RegisteredClient::new(
                        format!("lanyard-{id}"),
                        ClientAuth::PrivateKeyJwt(variant.registered.clone()),
                    ))
                })
                .collect(),
            mcp_servers: ids
                .iter()
                .map(|id| McpConfig::new(id, id, &["read"]))
                .collect(),
            ..TestbedConfig::default()
        };
        let mut tb = testbed(config).await;
        let mut policy = policy_json(&tb);
        policy["idp"]["client_auth"] = variant.client_auth.clone();
        for id in &ids {
            server_entry(&mut policy, id)["client_auth"] = variant.client_auth.clone();
        }
        lanyard_testbed::demo::allow_authorization_servers_of_confidential_clients(
            &tb,
            &mut policy,
        );
        let lanyard = start_engine(&tb, &policy, Options::default());
        let started = Instant::now();
        lanyard.sign_in().await;
        let signed_in = started.elapsed();
        for id in &ids {
            lanyard.wait_granted(id).await;
        }
        let granted = started.elapsed() - signed_in;
        drop(lanyard);
        tb.shutdown();
        (signed_in, granted)
    }

    fn arg(args: &[String], name: &str) -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    }

    pub async fn run() {
        let args: Vec<String> = std::env::args().collect();
        let sizes: Vec<usize> = arg(&args, "--n")
            .unwrap_or_else(|| "1,10,50".into())
            .split(',')
            .map(|n| n.parse().expect("--n: numbers"))
            .collect();
        let runs: usize = arg(&args, "--runs")
            .map(|r| r.parse().expect("--runs: a number"))
            .unwrap_or(3);
        std::env::set_var(PIN_ENV, PIN);
        let softhsm = SoftHsm::start();
        let tpm = SoftTpm::start();
        let variants = [
            pem_variant(),
            variant_of_store("SoftHSM2", &softhsm.module),
            variant_of_store("TPM (swtpm)", &tpm.module),
        ];
        let mut table = String::from(
            "| key held in | one signature (median) | N | signatures | sign-in (median) | sign-in → all granted (median) |\n\
             |---|---|---|---|---|---|\n",
        );
        for variant in &variants {
            let signature = one_signature(&variant.signing);
            for &n in &sizes {
                let mut sign_ins = Vec::new();
                let mut grants = Vec::new();
                for _ in 0..runs {
                    let (sign_in, granted) = run_once(variant, n).await;
                    sign_ins.push(sign_in);
                    grants.push(granted);
                }
                let row = format!(
                    "| {} | {:.2} ms | {n} | {} | {:.0} ms | {:.0} ms |\n",
                    variant.name,
                    signature.as_secs_f64() * 1e3,
                    1 + 2 * n,
                    median(sign_ins).as_secs_f64() * 1e3,
                    median(grants).as_secs_f64() * 1e3,
                );
                print!("{row}");
                table.push_str(&row);
            }
        }
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
        std::fs::create_dir_all(&out).expect("artifacts dir");
        std::fs::write(out.join("bench-keys.md"), &table).expect("write table");
        println!("\n{table}\nwritten to target/artifacts/bench-keys.md ({runs} run(s) per row)");
    }
}
