//! The Debian archive, natively: its control-file syntax, its version order, its
//! signed indexes and a resolver that picks a package set the way apt,
//! debootstrap and mmdebstrap do. Used by `imgraph lock` to pin every package
//! of a `debian` rootfs in `images.lock`, and by the build to fetch the `.deb`s
//! it pins ([`debs`]).

pub mod deb;
pub mod deb822;
pub mod debs;
mod dns;
pub mod fetch;
pub mod install;
pub mod missing;
pub mod packages;
pub mod preparsed;
pub mod relation;
pub mod release;
pub mod resolve;
pub mod rootfs;
pub mod scripts;
pub mod signature;
pub mod version;
