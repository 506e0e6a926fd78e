//! EK discovery.
