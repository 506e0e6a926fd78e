//! The HTTP boot server against curl, in process, on loopback: Range,
//! HEAD, ETag/If-None-Match, Range abuse (416, reason logged, server still
//! serving), signed images only (a bad signature or a bad digest keeps an
//! image out, with its reason in /api/images), iPXE scripts per policy,
//! per-node rollback refusal, and an artifact changed on disk after
//! verification never served as if it were the verified one.

mod support;

mod artifacts;
mod images;
mod scripts;
