//! Command framing: header, handle area, authorization area, parameters;
//! and the matching response parsing (Part 1 §18, Part 3 §5).

use super::TpmError;
use super::constants::{MAX_MESSAGE, cc, rh, st};
use super::rc::ResponseCode;
use super::transport::Transport;
use super::wire::{Reader, Writer};

/// TPMA_SESSION continueSession.
const CONTINUE_SESSION: u8 = 0x01;

/// How a handle that needs authorization is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A password session (TPM_RS_PW) carrying the authValue in clear.
    /// Every authValue used here is empty, so nothing secret crosses the bus.
    Password(Vec<u8>),
    /// A policy session whose policy digest the caller already satisfied.
    /// Used without continueSession: the TPM flushes it after a successful
    /// command.
    Policy(u32),
}

impl Auth {
    /// The empty password.
    pub fn empty() -> Self {
        Auth::Password(Vec::new())
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Auth::Password(pw) => {
                w.u32(rh::PASSWORD_SESSION)
                    .tpm2b(&[])
                    .u8(CONTINUE_SESSION)
                    .tpm2b(pw);
            }
            Auth::Policy(handle) => {
                w.u32(*handle).tpm2b(&[]).u8(0).tpm2b(&[]);
            }
        }
    }
}

/// A successful response: the handles it returned and its parameter area.
#[derive(Debug, Clone)]
pub struct Response {
    /// Returned handles (e.g. the object CreatePrimary made).
    pub handles: Vec<u32>,
    /// The parameter area, to be parsed by the command.
    pub params: Vec<u8>,
}

/// A command before it is sent.
#[derive(Debug)]
pub struct Command<'a> {
    /// TPM_CC.
    pub code: u32,
    /// The handle area.
    pub handles: &'a [u32],
    /// One authorization per handle that needs one, in handle order.
    pub auths: &'a [Auth],
    /// The marshalled parameter area.
    pub params: &'a [u8],
    /// How many handles the response carries.
    pub response_handles: usize,
}

impl Command<'_> {
    /// The marshalled command.
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let tag = if self.auths.is_empty() {
            st::NO_SESSIONS
        } else {
            st::SESSIONS
        };
        w.u16(tag).u32(0).u32(self.code);
        for h in self.handles {
            w.u32(*h);
        }
        if !self.auths.is_empty() {
            let mut area = Writer::new();
            for a in self.auths {
                a.write(&mut area);
            }
            let area = area.finish();
            w.u32(area.len() as u32).bytes(&area);
        }
        w.bytes(self.params);
        let size = w.len() as u32;
        w.patch_u32(2, size);
        w.finish()
    }

    /// Sends the command, retrying while the TPM says RETRY/YIELDED/TESTING,
    /// and returns the parsed response.
    pub fn run<T: Transport + ?Sized>(&self, transport: &mut T) -> Result<Response, TpmError> {
        let command = cc::name(self.code);
        let bytes = self.marshal();
        let mut attempt = 0u32;
        loop {
            let raw = transport
                .transmit(&bytes)
                .map_err(|source| TpmError::Transport {
                    device: transport.describe(),
                    command,
                    source,
                })?;
            match parse_response(&raw, self.response_handles, !self.auths.is_empty()) {
                Ok(r) => return Ok(r),
                Err(ParseFailure::Rc(rc)) if rc.is_retryable() && attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(command, rc = %rc, attempt, "TPM asked to retry");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(ParseFailure::Rc(rc)) => {
                    return Err(TpmError::Command {
                        device: transport.describe(),
                        command,
                        rc,
                    });
                }
                Err(ParseFailure::Wire(source)) => {
                    return Err(TpmError::Malformed {
                        device: transport.describe(),
                        command,
                        source,
                    });
                }
            }
        }
    }
}

/// Why a response did not yield parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFailure {
    /// The TPM returned an error code.
    Rc(ResponseCode),
    /// The bytes are not a well-formed response.
    Wire(super::wire::WireError),
}

impl From<super::wire::WireError> for ParseFailure {
    fn from(e: super::wire::WireError) -> Self {
        ParseFailure::Wire(e)
    }
}

/// Parses a response: header, `handles` handles, then the parameter area
/// (delimited by parameterSize when the command carried sessions).
pub fn parse_response(
    raw: &[u8],
    handles: usize,
    with_sessions: bool,
) -> Result<Response, ParseFailure> {
    use super::wire::WireError;
    let mut r = Reader::new(raw);
    let tag = r.u16("response tag")?;
    let size = r.u32("response size")? as usize;
    let rc = ResponseCode(r.u32("response code")?);
    if size != raw.len() || size > MAX_MESSAGE {
        return Err(WireError::Unexpected {
            what: "response size",
            value: size as u32,
        }
        .into());
    }
    if rc != ResponseCode::SUCCESS {
        return Err(ParseFailure::Rc(rc));
    }
    let expect_tag = if with_sessions {
        st::SESSIONS
    } else {
        st::NO_SESSIONS
    };
    if tag != expect_tag {
        return Err(WireError::Unexpected {
            what: "response tag",
            value: u32::from(tag),
        }
        .into());
    }
    let mut out_handles = Vec::with_capacity(handles.min(3));
    for _ in 0..handles {
        out_handles.push(r.u32("response handle")?);
    }
    let params = if with_sessions {
        let n = r.u32("parameterSize")? as usize;
        // The session area after the parameters is not checked: every
        // session used here is a password or an unbound policy session,
        // whose response carries no HMAC to verify.
        r.take(n, "response parameters")?.to_vec()
    } else {
        r.take(r.remaining(), "response parameters")?.to_vec()
    };
    Ok(Response {
        handles: out_handles,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_marshals_like_the_spec_example() {
        let params = 0u16.to_be_bytes();
        let cmd = Command {
            code: cc::STARTUP,
            handles: &[],
            auths: &[],
            params: &params,
            response_handles: 0,
        };
        assert_eq!(
            cmd.marshal(),
            [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0]
        );
    }

    #[test]
    fn error_response_yields_the_code() {
        let raw = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x8e];
        assert_eq!(
            parse_response(&raw, 0, false).unwrap_err(),
            ParseFailure::Rc(ResponseCode(0x98e))
        );
    }
}
