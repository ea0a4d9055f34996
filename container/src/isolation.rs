//! The isolation level a container runs at, and how it is chosen.
//!
//! Three sources may ask for a level: the bundle's annotation
//! [`ANNOTATION`] (per container), the runtime's `--isolation` flag (per
//! runtime handler) and the host's config file default. The strongest level
//! asked for wins: an annotation can raise a container to `vm`, but cannot
//! lower a handler or host that demands `vm` back to `process`, because
//! whoever writes annotations (any podman user) is not the host owner.

use std::fmt;
use std::str::FromStr;

use libcontainer::oci_spec::runtime::Spec;
use serde::Deserialize;

use crate::Error;

/// The annotation that selects a container's isolation level.
pub const ANNOTATION: &str = "io.isola.isolation";

/// How strongly a container is walled off from the host. Ordered weakest
/// first, so `max` picks the strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host kernel.
    Process,
    /// The bundle inside its own KVM microVM.
    Vm,
}

impl FromStr for Isolation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "process" => Ok(Self::Process),
            "vm" => Ok(Self::Vm),
            other => Err(Error::InvalidIsolation(other.to_owned())),
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Process => "process",
            Self::Vm => "vm",
        })
    }
}

/// The level the bundle's annotation asks for, if any.
pub fn from_spec(spec: &Spec) -> Result<Option<Isolation>, Error> {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .map(|v| v.parse())
        .transpose()
}

/// The strongest of the levels asked for; `process` when nobody asks.
pub fn resolve(
    annotation: Option<Isolation>,
    flag: Option<Isolation>,
    config_default: Option<Isolation>,
) -> Isolation {
    [annotation, flag, config_default]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Isolation::Process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_two_levels_only() {
        assert_eq!(
            "process".parse::<Isolation>().ok(),
            Some(Isolation::Process)
        );
        assert_eq!("vm".parse::<Isolation>().ok(), Some(Isolation::Vm));
        assert!("VM".parse::<Isolation>().is_err());
        assert!("".parse::<Isolation>().is_err());
    }

    #[test]
    fn strongest_request_wins() {
        use Isolation::*;
        assert_eq!(resolve(None, None, None), Process);
        assert_eq!(resolve(Some(Vm), None, Some(Process)), Vm);
        assert_eq!(resolve(Some(Process), Some(Vm), None), Vm);
        assert_eq!(resolve(Some(Process), None, Some(Vm)), Vm);
        assert_eq!(resolve(Some(Process), Some(Process), None), Process);
    }

    #[test]
    fn reads_the_annotation() {
        let mut spec = Spec::default();
        assert_eq!(from_spec(&spec).ok().flatten(), None);
        spec.set_annotations(Some([(ANNOTATION.to_owned(), "vm".to_owned())].into()));
        assert_eq!(from_spec(&spec).ok().flatten(), Some(Isolation::Vm));
        spec.set_annotations(Some([(ANNOTATION.to_owned(), "kvm".to_owned())].into()));
        assert!(from_spec(&spec).is_err());
    }
}
