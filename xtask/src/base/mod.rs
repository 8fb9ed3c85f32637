//! What every stage uses: the cache (`cache`), children that die with the
//! xtask (`children`), the terminal (`ui`) and the events it shows (`event`), private Python tools (`venv`),
//! the Debian packages the runs need (`packages`), and the checkout with
//! its cached cargo builds (`workspace`). Imports nothing from a later
//! stage.

pub mod cache;
pub mod children;
pub mod event;
pub mod packages;
pub mod timings;
pub mod ui;
pub mod venv;
pub mod workspace;
