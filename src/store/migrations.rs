//! Schema versions of the data folder. Each version's layout is described in
//! `migrations/NNNN_*.md`; upgrading from version v to v+1 is `STEPS[v - 1]`, applied in order
//! when a data folder is opened.

use super::catalog::{Catalog, SCHEMA_VERSION};
use crate::error::{Error, Result};

type Step = fn(&Catalog) -> Result<()>;

/// `STEPS[i]` upgrades schema version i+1 to i+2. Version 1 is the first, so none exist yet.
const STEPS: &[Step] = &[];

const _: () = assert!(STEPS.len() + 1 == SCHEMA_VERSION as usize, "one step per version after the first");

pub fn migrate(catalog: &Catalog) -> Result<()> {
    match catalog.schema_version()? {
        None => catalog.set_schema_version(SCHEMA_VERSION),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(Error::Corrupt {
            what: "data folder".into(),
            reason: format!(
                "it has schema version {v}, newer than this imgsearch ({SCHEMA_VERSION}); upgrade imgsearch"
            ),
        }),
        Some(mut v) => {
            while v < SCHEMA_VERSION {
                STEPS[v as usize - 1](catalog)?;
                v += 1;
                catalog.set_schema_version(v)?;
            }
            catalog.flush()
        }
    }
}
