//! `cargo xtask`: runs the deployment-rehearsal pipeline (temporary entry point until the CLI lands).

mod base_image;

fn main() -> anyhow::Result<()> {
    // Temporary: `cargo xtask base-image` creates the base image; the lead's CLI replaces this.
    if std::env::args().nth(1).as_deref() == Some("base-image") {
        let sh = xshell::Shell::new()?;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = base_image::ensure(&sh, &base_image::BaseImageSpec::bookworm(&root))?;
        println!("{status:?}");
    }
    Ok(())
}
