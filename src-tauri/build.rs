//! Build script: checks that the status window's bundle exists, then lets tauri-build embed it.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist/index.html");
    if !dist.exists() {
        // A clear message instead of tauri's generic "frontendDist not found".
        panic!(
            "{} is missing: build the status window first (`make ui`, i.e. `npm ci && npm run build` in ui/)",
            dist.display()
        );
    }
    println!("cargo:rerun-if-changed=../ui/dist");
    tauri_build::build()
}
