//! placeholder

/// Configuration files: bad fixtures and their one-line messages, good fixtures and the model.
mod config_files;
