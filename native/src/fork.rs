//! Hard forks the prover knows, each with its own circuits (and so its own verifying keys) and its
//! own da-codec codec version.
//!
//! Scroll names and orders its forks, and maps them to codec versions, in scroll-tech/da-codec
//! encoding/da.go (`GetHardforkName`, `GetCodecVersion`): homestead (before Bernoulli) codec v0,
//! bernoulli v1, curie v2, darwin v3, darwinV2 v4. Scroll's prover keeps one circuit generation per
//! fork and proves each task with the circuits of the task's `hard_fork_name`; so does this
//! library: every prove and verify call names its fork.

use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fork {
    Homestead,
    Bernoulli,
    Curie,
    Darwin,
    DarwinV2,
}

impl Fork {
    /// Every fork, in chain order.
    pub const ALL: [Fork; 5] = [
        Fork::Homestead,
        Fork::Bernoulli,
        Fork::Curie,
        Fork::Darwin,
        Fork::DarwinV2,
    ];

    /// Scroll's spelling (`darwinV2` as in Scroll's configs).
    pub fn name(self) -> &'static str {
        match self {
            Fork::Homestead => "homestead",
            Fork::Bernoulli => "bernoulli",
            Fork::Curie => "curie",
            Fork::Darwin => "darwin",
            Fork::DarwinV2 => "darwinV2",
        }
    }

    /// da-codec codec version of the fork's batches (0 = codec v0, ... 4 = codec v4).
    pub fn codec(self) -> u8 {
        match self {
            Fork::Homestead => 0,
            Fork::Bernoulli => 1,
            Fork::Curie => 2,
            Fork::Darwin => 3,
            Fork::DarwinV2 => 4,
        }
    }

    /// The constant the fork's chunk circuit hashes into its commitment (first element of the
    /// Poseidon preimage): 1 for homestead .. 5 for darwinV2. It makes every fork's chunk circuit,
    /// and so every key above it (wrap, batch, bundle), differ from every other fork's.
    pub fn tag(self) -> u64 {
        u64::from(self.codec()) + 1
    }

    /// A fork by name, case-insensitively (Scroll writes `darwinV2` in configs and `darwinv2`
    /// elsewhere); an unknown name is an error naming it and the known ones.
    pub fn parse(name: &str) -> Result<Fork> {
        match Fork::ALL
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
        {
            Some(f) => Ok(*f),
            None => bail!(
                "unknown fork {name:?}; known forks: {}",
                Fork::ALL.map(Fork::name).join(", ")
            ),
        }
    }

    /// JSON array of the known fork names, canonical spelling, in chain order.
    pub fn names_json() -> String {
        serde_json::Value::from(Fork::ALL.map(Fork::name).to_vec()).to_string()
    }
}

impl std::fmt::Display for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_unknown_ones_are_named() {
        for f in Fork::ALL {
            assert_eq!(Fork::parse(f.name()).unwrap(), f);
            assert_eq!(Fork::parse(&f.name().to_uppercase()).unwrap(), f);
        }
        assert_eq!(Fork::parse("darwinv2").unwrap(), Fork::DarwinV2);
        assert_eq!(Fork::parse("DarwinV2").unwrap(), Fork::DarwinV2);
        let e = format!("{}", Fork::parse("euclid").unwrap_err());
        assert_eq!(
            e,
            "unknown fork \"euclid\"; known forks: homestead, bernoulli, curie, darwin, darwinV2"
        );
        assert!(Fork::parse("").is_err());
        assert!(Fork::parse(" curie").is_err());
        assert_eq!(
            Fork::names_json(),
            r#"["homestead","bernoulli","curie","darwin","darwinV2"]"#
        );
        let codecs: Vec<u8> = Fork::ALL.iter().map(|f| f.codec()).collect();
        assert_eq!(codecs, vec![0, 1, 2, 3, 4]);
    }
}
