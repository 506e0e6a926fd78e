//! The agent's configuration, baked into the initramfs at
//! [`AGENT_CONFIG_PATH`] as JSON, next to the trust root at
//! [`TRUST_PATH`]. The agent (`ironrack agent`, PID 1) reads it before
//! anything else; it must refuse unknown keys, like this definition.

use serde::{Deserialize, Serialize};

/// Where the agent's configuration lives in the initramfs.
pub const AGENT_CONFIG_PATH: &str = "etc/ironrack/agent.json";
/// Where the trust root (`trust.json`) lives in the initramfs.
pub const TRUST_PATH: &str = "etc/ironrack/trust.json";

/// What the agent needs to know before it can verify anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentConfig {
    /// Format version of this file (1).
    pub version: u32,
    /// The image name the manifest must carry (`image:` scope).
    pub image: String,
    /// The channel the manifest must be signed for (`channel:` scope).
    pub channel: String,
    /// The trust root in the initramfs (absolute path).
    pub trust: String,
    /// Where to reach the server when the kernel command line names none
    /// (`ironrack.server=` wins), e.g. `http://198.18.0.1:8080`.
    pub server: Option<String>,
    /// Kernel modules to load, in order (dependencies first), by name.
    pub modules: Vec<String>,
    /// The kernel release the modules were taken from.
    pub kernel_release: String,
}

impl AgentConfig {
    /// The canonical bytes written to the initramfs (pretty JSON with a
    /// final newline; fields in declaration order, so deterministic).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("plain data serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Parses the file, refusing unknown keys.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknown_keys() {
        let config = AgentConfig {
            version: 1,
            image: "gpu-node".into(),
            channel: "stable".into(),
            trust: format!("/{TRUST_PATH}"),
            server: None,
            modules: vec!["virtio_net".into()],
            kernel_release: "6.1.0-50-cloud-amd64".into(),
        };
        assert_eq!(AgentConfig::parse(&config.to_bytes()).unwrap(), config);
        let text = String::from_utf8(config.to_bytes()).unwrap();
        assert!(text.contains("\"kernel-release\""));
        let extra = text.replacen('{', "{\"surprise\": 1,", 1);
        assert!(AgentConfig::parse(extra.as_bytes()).is_err());
    }
}
