//! EK certificates.
