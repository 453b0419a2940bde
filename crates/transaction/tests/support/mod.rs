//! Helpers shared by the integration tests: a log capture and a reference model of the
//! commit protocol.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod logs;
pub mod model;
