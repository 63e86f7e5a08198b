//! Configuration: a raw serde mirror of the TOML file, validated once into [`model::Config`].
//! Errors name the file, line and key.

pub mod model;
