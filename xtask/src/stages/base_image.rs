//! `base_image`: makes sure the Debian base image exists, creating it with mmdebstrap when it does not.

use super::{StageCx, StageResult};
use crate::base_image::{self, BaseImageSpec, BaseImageStatus};
use crate::config::BaseImageStage;
use crate::run::record::{GateRecord, Status};

pub async fn run(spec: &BaseImageStage, cx: &StageCx<'_>) -> StageResult {
    let mut recipe = BaseImageSpec::bookworm(cx.base_dir);
    recipe.image = spec.image.clone();
    recipe.packages.extend(spec.packages.iter().cloned());
    let image = recipe.image.clone();
    // mmdebstrap writes under a temporary name and is stopped with its whole process group when
    // cancelled, so an interrupted run leaves nothing that looks finished.
    let cancel = cx.cancel.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let sh = xshell::Shell::new()?;
        base_image::ensure(&sh, &recipe, &cancel)
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
        Err(e) => {
            let mut gate = GateRecord::judged("base image", "base_image", false, expected, format!("{e:#}"));
            if cx.cancel.is_cancelled() {
                gate.status = Status::Interrupted;
            }
            gate
        }
    };
    StageResult { gates: vec![gate], ..Default::default() }
}
