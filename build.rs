//! Finds the distro's DPDK with the `pkg-config` binary, generates bindings
//! with bindgen and compiles the C shim for DPDK's `static inline` functions.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    // The binary, not the pkg-config crate: the crate drops
    // `-include rte_config.h -march=...`, which DPDK's headers need.
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .expect("running pkg-config (apt-get install pkg-config libdpdk-dev)");
    assert!(
        out.status.success(),
        "pkg-config {args:?} libdpdk failed: {}\nInstall DPDK 22.11: apt-get install dpdk dpdk-dev libdpdk-dev",
        String::from_utf8_lossy(&out.stderr)
    );
    // `-include rte_config.h` is two words that belong together.
    let text = String::from_utf8(out.stdout).expect("pkg-config output is UTF-8");
    let mut flags = Vec::new();
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-include" {
            if let Some(file) = words.next() {
                flags.push(format!("-include{file}"));
            }
        } else {
            flags.push(word.to_string());
        }
    }
    flags
}

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk/shim.h");
    println!("cargo:rerun-if-changed=src/dpdk/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let version = pkg_config(&["--modversion"]);
    let version = version.first().map(String::as_str).unwrap_or("");
    if !version.starts_with("22.11") {
        println!("cargo:warning=rvs is written against DPDK 22.11, found {version}");
    }

    let cflags = pkg_config(&["--cflags"]);
    let mut shim = cc::Build::new();
    shim.file("src/dpdk/shim.c")
        .include("src/dpdk")
        .opt_level(2)
        .warnings(false);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("rvs_dpdk_shim");

    for flag in pkg_config(&["--libs"]) {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if flag.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={flag}");
        }
    }

    let bindings = bindgen::Builder::default()
        .header("src/dpdk/shim.h")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .clang_macro_fallback()
        .allowlist_function("rte_.*")
        .allowlist_function("rvs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // Packed structs that bindgen cannot lay out (alignment inside packing).
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on src/dpdk/shim.h");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("dpdk_bindings.rs");
    bindings.write_to_file(out).expect("writing bindings");
}
