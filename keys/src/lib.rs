//! Ed25519 keys, minisign-format signatures, trust roots with delegation,
//! and signed manifests: the trust model under the builder and the PXE
//! service.
