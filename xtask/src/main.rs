// The helm stage kind is wired on main; until then its API is unused here.
#[allow(dead_code)]
mod helm;

fn main() {}
