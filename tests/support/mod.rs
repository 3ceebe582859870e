//! Helpers shared by the integration tests; each test file takes it in with `mod support;`.

pub mod images;
pub mod netns;
pub mod validate_lab;
