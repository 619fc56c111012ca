//! Builds the bundled web app (`web-demo/`, esbuild through Node.js) into
//! `$OUT_DIR/web` and writes `$OUT_DIR/web_assets.rs`, the table of files that
//! `src/web.rs` embeds with `include_bytes!`.
//!
//! Needs Node.js 18+ and npm. `NODO_WEB_DIST=<dir>` embeds an already built
//! `web-demo` output instead (`node web-demo/build.mjs --out <dir>`), for
//! machines that build the binary without Node.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let web = root.join("web-demo");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-env-changed=NODO_WEB_DIST");
    for f in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "index.html",
        "sw.js",
        "favicon.svg",
        "src",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(f).display());
    }

    let dist = match env::var_os("NODO_WEB_DIST") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let dist = out.join("web");
            build_with_node(&web, &dist);
            dist
        }
    };
    if !dist.join("index.html").is_file() {
        fail(&format!(
            "{} holds no built web app (index.html is missing)",
            dist.display()
        ));
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for (url, path) in &files {
        let _ = writeln!(
            table,
            "    ({url:?}, include_bytes!({:?})),",
            path.display()
        );
    }
    table.push(']');
    fs::write(
        out.join("web_assets.rs"),
        format!("/// Every file of the built web app: (URL path, bytes).\npub static ASSETS: &[(&str, &[u8])] = {table};\n"),
    )
    .expect("writing web_assets.rs");
}

/// `npm ci` when `node_modules` is missing or older than the lockfile, then `node build.mjs`.
fn build_with_node(web: &Path, dist: &Path) {
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        fail("Node.js is not installed");
    }
    let lock = web.join("package-lock.json");
    let marker = web.join("node_modules/.package-lock.json");
    let stale = match (fs::metadata(&lock), fs::metadata(&marker)) {
        (Ok(l), Ok(m)) => match (l.modified(), m.modified()) {
            (Ok(l), Ok(m)) => l > m,
            _ => true,
        },
        _ => true,
    };
    if stale {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(web)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => fail(&format!(
                "`npm ci` in web-demo/ failed ({s}); is the npm registry reachable?"
            )),
            Err(e) => fail(&format!("npm could not be run: {e}")),
        }
    }
    let status = Command::new("node")
        .arg("build.mjs")
        .arg("--out")
        .arg(dist)
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("`node build.mjs` in web-demo/ failed ({s})")),
        Err(e) => fail(&format!("node could not be run: {e}")),
    }
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, files);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            files.push((url, path));
        }
    }
}

fn fail(why: &str) -> ! {
    eprintln!(
        "\nerror: the bundled web app (web-demo/) could not be built: {why}.\n\
         Building nodo needs Node.js 18 or newer and npm (Debian/Ubuntu: \
         `apt-get install nodejs npm`; or https://nodejs.org), with the npm registry \
         reachable the first time. Or build the page elsewhere \
         (`node web-demo/build.mjs --out DIR`) and set NODO_WEB_DIST=DIR.\n"
    );
    std::process::exit(1);
}
