//! TPM tests against a real swtpm: every command, enrollment
//! (MakeCredential/ActivateCredential), quotes and their verification.

mod commands;
mod credential;
mod device;
mod enrollment;
mod model;
mod quote;
mod swtpm;
