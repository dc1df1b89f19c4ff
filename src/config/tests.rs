//! Tests of the config loader (placeholder while building).
