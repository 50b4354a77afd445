//! Running a plan: the executor, the progress display and the run record.

pub mod evidence;
pub mod executor;
pub mod lock;
pub mod progress;
pub mod record;
