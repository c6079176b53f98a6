//! OCI images: the layer, the JSON documents, layouts on disk, docker archives.

pub mod attestations;
pub mod compress;
pub mod contents;
pub mod docker_archive;
pub mod elf;
pub mod image;
pub mod layer;
pub mod layout;
