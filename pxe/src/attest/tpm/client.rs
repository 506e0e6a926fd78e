//! The TPM commands the agent needs, over any [`Transport`].

use super::TpmError;
use super::attest::{PcrSelection, Signature};
use super::command::{Auth, Command, Response};
use super::constants::{SU_CLEAR, alg, cap, cc, nv, rh, st};
use super::pcr::PcrValues;
use super::public::Public;
use super::rc::ResponseCode;
use super::template::{AkTemplate, EkAuth};
use super::transport::Transport;
use super::wire::{Reader, WireError, Writer};

/// Largest NV index read (EK certificates are 1-2 KiB; chains up to a few).
const MAX_NV_READ: usize = 16 * 1024;

/// A TPM reached through a transport.
#[derive(Debug)]
pub struct Tpm<T> {
    transport: T,
}

/// A key CreatePrimary made: its transient handle, public area and Name.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// Transient handle; flush it when done.
    pub handle: u32,
    /// The public area as the TPM reports it.
    pub public: Public,
    /// The object's Name.
    pub name: Vec<u8>,
}

/// An AK ready to quote.
#[derive(Debug, Clone)]
pub struct AttestationKey {
    /// Handle, public area and Name.
    pub key: LoadedKey,
    /// Whether `key.handle` is persistent (never flush it).
    pub persistent: bool,
}

impl AttestationKey {
    /// Releases the handle if it is transient.
    pub fn release<T: Transport>(&self, tpm: &mut Tpm<T>) -> Result<(), TpmError> {
        if self.persistent {
            Ok(())
        } else {
            tpm.flush(self.key.handle)
        }
    }
}

/// TPMS_NV_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    /// The index.
    pub index: u32,
    /// Hash of the Name.
    pub name_alg: u16,
    /// TPMA_NV.
    pub attributes: u32,
    /// Policy digest.
    pub auth_policy: Vec<u8>,
    /// Data size in bytes.
    pub data_size: u16,
}

/// What TPM2_Quote returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled TPMS_ATTEST (what the AK signed).
    pub attest: Vec<u8>,
    /// The signature over it.
    pub signature: Signature,
}

/// Refuses an argument larger than its TPM2B may be, so that input from
/// the network (nonces, credential blobs) can never overflow a TPM2B size.
fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), TpmError> {
    if len > max {
        return Err(TpmError::ArgumentTooLarge { what, len, max });
    }
    Ok(())
}

impl<T: Transport> Tpm<T> {
    /// A TPM client over `transport`.
    pub fn new(transport: T) -> Self {
        Tpm { transport }
    }

    /// The transport, e.g. to hand it back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    fn run(
        &mut self,
        code: u32,
        handles: &[u32],
        auths: &[Auth],
        params: &[u8],
        response_handles: usize,
    ) -> Result<Response, TpmError> {
        Command {
            code,
            handles,
            auths,
            params,
            response_handles,
        }
        .run(&mut self.transport)
    }

    fn malformed(&self, code: u32, source: WireError) -> TpmError {
        TpmError::Malformed {
            device: self.transport.describe(),
            command: cc::name(code),
            source,
        }
    }

    /// Parses a response's parameters with `f`, requiring it to consume all.
    fn parse<R>(
        &self,
        code: u32,
        params: &[u8],
        f: impl FnOnce(&mut Reader<'_>) -> Result<R, WireError>,
    ) -> Result<R, TpmError> {
        let mut r = Reader::new(params);
        let out = f(&mut r).map_err(|e| self.malformed(code, e))?;
        r.finish(cc::name(code))
            .map_err(|e| self.malformed(code, e))?;
        Ok(out)
    }

    /// TPM2_Startup(CLEAR). Returns false when the TPM was already started
    /// (TPM_RC_INITIALIZE), which is the normal case after firmware.
    pub fn startup(&mut self) -> Result<bool, TpmError> {
        match self.run(cc::STARTUP, &[], &[], &SU_CLEAR.to_be_bytes(), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.response_code() == Some(ResponseCode::INITIALIZE) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// TPM2_GetCapability: one call; returns (moreData, the capability
    /// data after the TPM_CAP selector).
    fn get_capability(
        &mut self,
        capability: u32,
        property: u32,
        count: u32,
    ) -> Result<(bool, Vec<u8>), TpmError> {
        let mut w = Writer::new();
        w.u32(capability).u32(property).u32(count);
        let resp = self.run(cc::GET_CAPABILITY, &[], &[], &w.finish(), 0)?;
        let mut r = Reader::new(&resp.params);
        let parsed = (|| {
            let more = r.u8("moreData")? != 0;
            let got = r.u32("TPMS_CAPABILITY_DATA.capability")?;
            if got != capability {
                return Err(WireError::Unexpected {
                    what: "TPMS_CAPABILITY_DATA.capability",
                    value: got,
                });
            }
            Ok((more, r.take(r.remaining(), "capability data")?.to_vec()))
        })();
        parsed.map_err(|e| self.malformed(cc::GET_CAPABILITY, e))
    }

    /// Supported algorithms: (TPM_ALG_ID, TPMA_ALGORITHM).
    pub fn algorithms(&mut self) -> Result<Vec<(u16, u32)>, TpmError> {
        let mut out = Vec::new();
        let mut next = 0u32;
        loop {
            let (more, data) = self.get_capability(cap::ALGS, next, 64)?;
            let batch = self.parse(cc::GET_CAPABILITY, &data, |r| {
                let n = r.count("TPML_ALG_PROPERTY.count", 256, 6)?;
                (0..n)
                    .map(|_| Ok((r.u16("alg")?, r.u32("algProperties")?)))
                    .collect::<Result<Vec<_>, WireError>>()
            })?;
            let Some(last) = batch.last() else { break };
            next = u32::from(last.0) + 1;
            out.extend(batch);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// The allocated PCR banks and which PCRs each has.
    pub fn pcr_banks(&mut self) -> Result<PcrSelection, TpmError> {
        let (_, data) = self.get_capability(cap::PCRS, 0, 1)?;
        self.parse(cc::GET_CAPABILITY, &data, PcrSelection::read)
    }

    /// Handles of one type, starting at `first` (e.g. 0x81000000 for
    /// persistent objects, 0x01000000 for NV indices).
    pub fn handles(&mut self, first: u32) -> Result<Vec<u32>, TpmError> {
        let kind = first & 0xff00_0000;
        let mut out = Vec::new();
        let mut next = first;
        loop {
            let (more, data) = self.get_capability(cap::HANDLES, next, 64)?;
            let batch = self.parse(cc::GET_CAPABILITY, &data, |r| {
                let n = r.count("TPML_HANDLE.count", 256, 4)?;
                (0..n)
                    .map(|_| r.u32("handle"))
                    .collect::<Result<Vec<_>, WireError>>()
            })?;
            let batch: Vec<u32> = batch
                .into_iter()
                .filter(|h| *h & 0xff00_0000 == kind)
                .collect();
            let Some(last) = batch.last().copied() else {
                break;
            };
            out.extend(batch);
            if !more || last == u32::MAX {
                break;
            }
            next = last + 1;
        }
        Ok(out)
    }

    /// One fixed TPM property (TPM_PT).
    pub fn property(&mut self, property: u32) -> Result<Option<u32>, TpmError> {
        let (_, data) = self.get_capability(cap::TPM_PROPERTIES, property, 1)?;
        let list = self.parse(cc::GET_CAPABILITY, &data, |r| {
            let n = r.count("TPML_TAGGED_TPM_PROPERTY.count", 256, 8)?;
            (0..n)
                .map(|_| Ok((r.u32("property")?, r.u32("value")?)))
                .collect::<Result<Vec<_>, WireError>>()
        })?;
        Ok(list.into_iter().find(|(p, _)| *p == property).map(|p| p.1))
    }

    /// TPM2_PCR_Read of any number of PCRs. A TPM returns at most 8
    /// digests per call and says which ones in pcrSelectionOut; ask again
    /// for the rest until the selection is empty.
    pub fn pcr_read(&mut self, selection: &PcrSelection) -> Result<PcrValues, TpmError> {
        let mut values = PcrValues::new();
        let mut wanted = selection.pairs();
        while !wanted.is_empty() {
            let mut request = PcrSelection::default();
            for bank in &selection.banks {
                let pcrs = wanted.iter().filter(|(b, _)| *b == bank.hash).map(|p| p.1);
                let mut one = PcrSelection::new(bank.hash, pcrs);
                request.banks.append(&mut one.banks);
            }
            let resp = self.run(cc::PCR_READ, &[], &[], &request.to_bytes(), 0)?;
            let (got, digests) = self.parse(cc::PCR_READ, &resp.params, |r| {
                let _update_counter = r.u32("pcrUpdateCounter")?;
                let got = PcrSelection::read(r)?;
                let n = r.count("TPML_DIGEST.count", 8, 2)?;
                let digests = (0..n)
                    .map(|_| Ok(r.tpm2b_max("TPM2B_DIGEST", 64)?.to_vec()))
                    .collect::<Result<Vec<_>, WireError>>()?;
                Ok((got, digests))
            })?;
            let pairs = got.pairs();
            if pairs.len() != digests.len() {
                return Err(self.malformed(
                    cc::PCR_READ,
                    WireError::Unexpected {
                        what: "TPML_DIGEST.count vs pcrSelectionOut",
                        value: digests.len() as u32,
                    },
                ));
            }
            if pairs.is_empty() {
                // Nothing read: the rest is not allocated on this TPM.
                return Err(TpmError::PcrUnavailable {
                    device: self.transport.describe(),
                    bank: wanted[0].0,
                    pcr: wanted[0].1,
                });
            }
            for ((bank, pcr), digest) in pairs.into_iter().zip(digests) {
                wanted.retain(|p| *p != (bank, pcr));
                values.insert(bank, pcr, digest);
            }
        }
        Ok(values)
    }

    /// TPM2_PCR_Extend of one PCR with one digest per bank.
    pub fn pcr_extend(&mut self, pcr: u32, digests: &[(u16, &[u8])]) -> Result<(), TpmError> {
        check_len("PCR banks", digests.len(), 16)?;
        for (_, d) in digests {
            check_len("PCR_Extend digest", d.len(), 64)?;
        }
        let mut w = Writer::new();
        w.u32(digests.len() as u32);
        for (bank, d) in digests {
            w.u16(*bank).bytes(d);
        }
        self.run(cc::PCR_EXTEND, &[pcr], &[Auth::empty()], &w.finish(), 0)?;
        Ok(())
    }

    /// TPM2_ReadPublic: the public area and Name of a loaded object.
    pub fn read_public(&mut self, handle: u32) -> Result<(Public, Vec<u8>), TpmError> {
        let resp = self.run(cc::READ_PUBLIC, &[handle], &[], &[], 0)?;
        self.parse(cc::READ_PUBLIC, &resp.params, |r| {
            let public = Public::read_tpm2b(r)?;
            let name = r.tpm2b_max("TPM2B_NAME", 66)?.to_vec();
            let _qualified = r.tpm2b_max("TPM2B_NAME", 66)?;
            Ok((public, name))
        })
    }

    /// TPM2_NV_ReadPublic.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmError> {
        let resp = self.run(cc::NV_READ_PUBLIC, &[index], &[], &[], 0)?;
        self.parse(cc::NV_READ_PUBLIC, &resp.params, |r| {
            let inner = r.tpm2b("TPM2B_NV_PUBLIC")?;
            let mut p = Reader::new(inner);
            let public = NvPublic {
                index: p.u32("TPMS_NV_PUBLIC.nvIndex")?,
                name_alg: p.u16("TPMS_NV_PUBLIC.nameAlg")?,
                attributes: p.u32("TPMS_NV_PUBLIC.attributes")?,
                auth_policy: p.tpm2b_max("TPMS_NV_PUBLIC.authPolicy", 64)?.to_vec(),
                data_size: p.u16("TPMS_NV_PUBLIC.dataSize")?,
            };
            p.finish("TPMS_NV_PUBLIC")?;
            let _name = r.tpm2b_max("TPM2B_NAME", 66)?;
            Ok(public)
        })
    }

    /// Reads a whole NV index, in chunks of TPM_PT_NV_BUFFER_MAX.
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmError> {
        // Some TPMs report no NV_BUFFER_MAX; 512 is below every real value.
        let chunk = self
            .property(cap::PT_NV_BUFFER_MAX)?
            .map_or(512, |v| v as usize);
        self.nv_read_in_chunks(index, chunk)
    }

    /// Reads a whole NV index, `chunk` bytes per NV_Read (clamped to
    /// 16..=4096). Authorizes with the index itself (AUTHREAD) or the owner
    /// (OWNERREAD), both with the empty authValue as EK certificate
    /// indices are provisioned.
    pub fn nv_read_in_chunks(&mut self, index: u32, chunk: usize) -> Result<Vec<u8>, TpmError> {
        let chunk = chunk.clamp(16, 4096);
        let public = self.nv_read_public(index)?;
        let size = usize::from(public.data_size);
        if size > MAX_NV_READ {
            return Err(TpmError::NvTooLarge {
                device: self.transport.describe(),
                index,
                size,
            });
        }
        let auth_handle = if public.attributes & nv::AUTHREAD != 0 {
            index
        } else if public.attributes & nv::OWNERREAD != 0 {
            rh::OWNER
        } else {
            return Err(TpmError::NvNotReadable {
                device: self.transport.describe(),
                index,
                attributes: public.attributes,
            });
        };
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let want = chunk.min(size - out.len());
            let mut w = Writer::new();
            w.u16(want as u16).u16(out.len() as u16);
            let resp = self.run(
                cc::NV_READ,
                &[auth_handle, index],
                &[Auth::empty()],
                &w.finish(),
                0,
            )?;
            let data = self.parse(cc::NV_READ, &resp.params, |r| {
                Ok(r.tpm2b("TPM2B_MAX_NV_BUFFER")?.to_vec())
            })?;
            if data.len() != want {
                return Err(self.malformed(
                    cc::NV_READ,
                    WireError::Unexpected {
                        what: "TPM2B_MAX_NV_BUFFER.size",
                        value: data.len() as u32,
                    },
                ));
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    /// TPM2_CreatePrimary with an empty authValue, no outside info and no
    /// creation PCRs.
    pub fn create_primary(
        &mut self,
        hierarchy: u32,
        template: &Public,
    ) -> Result<LoadedKey, TpmError> {
        let mut w = Writer::new();
        // TPM2B_SENSITIVE_CREATE { userAuth = empty, data = empty }.
        w.sized(|s| {
            s.tpm2b(&[]).tpm2b(&[]);
        });
        w.sized(|p| template.write(p));
        w.tpm2b(&[]); // outsideInfo
        w.u32(0); // creationPCR: empty TPML_PCR_SELECTION
        let resp = self.run(
            cc::CREATE_PRIMARY,
            &[hierarchy],
            &[Auth::empty()],
            &w.finish(),
            1,
        )?;
        let handle = resp.handles[0];
        let parsed = self.parse(cc::CREATE_PRIMARY, &resp.params, |r| {
            let public = Public::read_tpm2b(r)?;
            let _creation_data = r.tpm2b("TPM2B_CREATION_DATA")?;
            let _creation_hash = r.tpm2b("TPM2B_DIGEST")?;
            let tag = r.u16("TPMT_TK_CREATION.tag")?;
            if tag != st::CREATION {
                return Err(WireError::Unexpected {
                    what: "TPMT_TK_CREATION.tag",
                    value: u32::from(tag),
                });
            }
            let _hierarchy = r.u32("TPMT_TK_CREATION.hierarchy")?;
            let _ticket = r.tpm2b("TPMT_TK_CREATION.digest")?;
            let name = r.tpm2b_max("TPM2B_NAME", 66)?.to_vec();
            Ok((public, name))
        });
        match parsed {
            Ok((public, name)) => Ok(LoadedKey {
                handle,
                public,
                name,
            }),
            Err(e) => {
                let _ = self.flush(handle);
                Err(e)
            }
        }
    }

    /// Creates ironrack's AK: a primary restricted signing key in the
    /// endorsement hierarchy, the same key on every boot of this TPM.
    pub fn create_ak(&mut self, template: AkTemplate) -> Result<LoadedKey, TpmError> {
        self.create_primary(rh::ENDORSEMENT, &template.public())
    }

    /// TPM2_EvictControl: makes the transient `object` persistent at
    /// `persistent`, authorized by the owner (empty authValue).
    pub fn evict_control(&mut self, object: u32, persistent: u32) -> Result<(), TpmError> {
        self.run(
            cc::EVICT_CONTROL,
            &[rh::OWNER, object],
            &[Auth::empty()],
            &persistent.to_be_bytes(),
            0,
        )?;
        Ok(())
    }

    /// The AK at `handle` if one made from `template` is there; otherwise
    /// creates it and tries to persist it at `handle` (falling back to the
    /// transient key when the owner hierarchy refuses). Another kind of
    /// object at `handle` is never evicted: that is an error.
    pub fn load_or_create_ak(
        &mut self,
        template: AkTemplate,
        handle: u32,
    ) -> Result<AttestationKey, TpmError> {
        match self.read_public(handle) {
            Ok((public, name)) if template.matches(&public) => {
                return Ok(AttestationKey {
                    key: LoadedKey {
                        handle,
                        public,
                        name,
                    },
                    persistent: true,
                });
            }
            Ok((public, _)) if template.is_earlier(&public) => {
                tracing::info!(
                    handle,
                    "replacing the AK an earlier ironrack made (without noDA)"
                );
                self.evict_control(handle, handle)?;
            }
            Ok(_) => {
                return Err(TpmError::HandleTaken {
                    device: self.transport.describe(),
                    handle,
                });
            }
            Err(e) if e.response_code().is_some() => {}
            Err(e) => return Err(e),
        }
        let key = self.create_ak(template)?;
        match self.evict_control(key.handle, handle) {
            Ok(()) => {
                self.flush(key.handle)?;
                Ok(AttestationKey {
                    key: LoadedKey { handle, ..key },
                    persistent: true,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, handle, "cannot persist the AK; using a transient one");
                Ok(AttestationKey {
                    key,
                    persistent: false,
                })
            }
        }
    }

    /// TPM2_DictionaryAttackParameters, authorized by the lockout
    /// hierarchy (empty authValue): `max_tries` failures before lockout
    /// (0: locked out now), `recovery_time` seconds per forgiven failure,
    /// `lockout_recovery` seconds after a failed lockout authorization.
    pub fn dictionary_attack_parameters(
        &mut self,
        max_tries: u32,
        recovery_time: u32,
        lockout_recovery: u32,
    ) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.u32(max_tries).u32(recovery_time).u32(lockout_recovery);
        self.run(
            cc::DICTIONARY_ATTACK_PARAMETERS,
            &[rh::LOCKOUT],
            &[Auth::empty()],
            &w.finish(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_StartAuthSession: an unbound, unsalted SHA-256 policy session.
    pub fn start_policy_session(&mut self) -> Result<u32, TpmError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| TpmError::Random {
            reason: e.to_string(),
        })?;
        let mut w = Writer::new();
        w.tpm2b(&nonce) // nonceCaller
            .tpm2b(&[]) // encryptedSalt
            .u8(0x01) // TPM_SE_POLICY
            .u16(alg::NULL) // symmetric
            .u16(alg::SHA256); // authHash
        let resp = self.run(
            cc::START_AUTH_SESSION,
            &[rh::NULL, rh::NULL],
            &[],
            &w.finish(),
            1,
        )?;
        let handle = resp.handles[0];
        self.parse(cc::START_AUTH_SESSION, &resp.params, |r| {
            r.tpm2b_max("nonceTPM", 64).map(|_| ())
        })?;
        Ok(handle)
    }

    /// TPM2_PolicySecret: extends `session`'s policy with proof of
    /// `auth_handle`'s (empty) authValue.
    pub fn policy_secret(&mut self, auth_handle: u32, session: u32) -> Result<(), TpmError> {
        let mut w = Writer::new();
        w.tpm2b(&[]) // nonceTPM
            .tpm2b(&[]) // cpHashA
            .tpm2b(&[]) // policyRef
            .u32(0); // expiration
        let resp = self.run(
            cc::POLICY_SECRET,
            &[auth_handle, session],
            &[Auth::empty()],
            &w.finish(),
            0,
        )?;
        self.parse(cc::POLICY_SECRET, &resp.params, |r| {
            let _timeout = r.tpm2b("TPM2B_TIMEOUT")?;
            let _tag = r.u16("TPMT_TK_AUTH.tag")?;
            let _hierarchy = r.u32("TPMT_TK_AUTH.hierarchy")?;
            let _digest = r.tpm2b("TPMT_TK_AUTH.digest")?;
            Ok(())
        })
    }

    /// TPM2_ActivateCredential: recovers the secret the server sealed to
    /// this EK for the AK named in it. `id_object` is the TPM2B_ID_OBJECT
    /// payload, `encrypted_secret` the TPM2B_ENCRYPTED_SECRET payload.
    pub fn activate_credential(
        &mut self,
        ak: u32,
        ek: u32,
        ek_auth: EkAuth,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        // TPM2B_ID_OBJECT: integrity HMAC and encrypted TPM2B_DIGEST;
        // TPM2B_ENCRYPTED_SECRET: at most an RSA-4096 ciphertext.
        check_len("credential blob", id_object.len(), 2 * (2 + 64))?;
        check_len("encrypted secret", encrypted_secret.len(), 512)?;
        let ek_session = match ek_auth {
            EkAuth::Password => Auth::empty(),
            EkAuth::PolicySecretEndorsement => {
                let session = self.start_policy_session()?;
                if let Err(e) = self.policy_secret(rh::ENDORSEMENT, session) {
                    let _ = self.flush(session);
                    return Err(e);
                }
                Auth::Policy(session)
            }
        };
        let mut w = Writer::new();
        w.tpm2b(id_object).tpm2b(encrypted_secret);
        let result = self.run(
            cc::ACTIVATE_CREDENTIAL,
            &[ak, ek],
            &[Auth::empty(), ek_session.clone()],
            &w.finish(),
            0,
        );
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                // A failed command leaves the policy session loaded.
                if let Auth::Policy(session) = ek_session {
                    let _ = self.flush(session);
                }
                return Err(e);
            }
        };
        self.parse(cc::ACTIVATE_CREDENTIAL, &resp.params, |r| {
            Ok(r.tpm2b_max("certInfo", 64)?.to_vec())
        })
    }

    /// TPM2_Quote with the AK's own scheme.
    pub fn quote(
        &mut self,
        ak: u32,
        nonce: &[u8],
        selection: &PcrSelection,
    ) -> Result<Quote, TpmError> {
        check_len("quote nonce", nonce.len(), 64)?;
        let mut w = Writer::new();
        w.tpm2b(nonce).u16(alg::NULL);
        selection.write(&mut w);
        let resp = self.run(cc::QUOTE, &[ak], &[Auth::empty()], &w.finish(), 0)?;
        self.parse(cc::QUOTE, &resp.params, |r| {
            let attest = r.tpm2b("TPM2B_ATTEST")?.to_vec();
            let signature = Signature::read(r)?;
            Ok(Quote { attest, signature })
        })
    }

    /// TPM2_FlushContext of a transient object or session.
    pub fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        self.run(cc::FLUSH_CONTEXT, &[], &[], &handle.to_be_bytes(), 0)?;
        Ok(())
    }
}
