//! `base_image`: makes sure the Debian base image exists, creating it with mmdebstrap when it does not.

use super::{StageCx, StageResult};
use crate::base_image::{self, BaseImageSpec, BaseImageStatus};
use crate::config::BaseImageStage;
use crate::run::record::GateRecord;

pub async fn run(spec: &BaseImageStage, cx: &StageCx<'_>) -> StageResult {
    let mut recipe = BaseImageSpec::bookworm(cx.base_dir);
    recipe.image = spec.image.clone();
    recipe.packages.extend(spec.packages.iter().cloned());
    let image = recipe.image.clone();
    // mmdebstrap runs for minutes and cannot be cancelled halfway safely; it writes under a
    // temporary name, so an interrupted run leaves nothing that looks finished.
    let outcome = tokio::task::spawn_blocking(move || {
        let sh = xshell::Shell::new()?;
        base_image::ensure(&sh, &recipe)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let expected = format!("image {image} present");
    let gate = match outcome {
        Ok(BaseImageStatus::AlreadyPresent) => {
            GateRecord::judged("base image", "base_image", true, expected, "already present")
        }
        Ok(BaseImageStatus::Created { seconds }) => {
            GateRecord::judged("base image", "base_image", true, expected, format!("created in {seconds:.0}s"))
        }
        Err(e) => GateRecord::judged("base image", "base_image", false, expected, format!("{e:#}")),
    };
    StageResult { gates: vec![gate], ..Default::default() }
}
