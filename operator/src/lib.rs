//! SecureBuild's operator.
