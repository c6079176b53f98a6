//! imgraph's integration tests: one test binary driving the real `imgraph`.

#![allow(unreachable_pub)]

mod support;

mod attached;
mod cache_trust;
mod core;
mod debian_archive;
mod debian_deb;
mod debian_debs;
mod debian_install;
mod debian_messages;
mod debian_resolve;
mod debian_scripts;
mod edges;
mod editing;
mod examples;
mod fault_proxy_selftest;
mod hardening;
mod keep_going;
mod library;
mod lock;
mod lock_truth;
mod manifest_errors;
mod messages;
mod minideb;
mod one_pass;
mod output;
mod podman;
mod progress;
mod properties;
mod push;
mod registry_client;
mod remote_cache;
mod repository_paths;
mod rootfs_sources;
mod sbom;
mod signing;
