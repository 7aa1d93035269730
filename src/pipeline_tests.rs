//! Unit tests of the pipeline on Vec<u8> frames (placeholder).
