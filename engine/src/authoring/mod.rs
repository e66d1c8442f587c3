//! For step authors: a new plugin project in Rust, Python or JavaScript
//! that builds with one command ([`scaffold`]), and the build itself
//! ([`project`]): the language's own tool, then the component checked
//! and compiled into the cache, so that a flow's first run of it compiles
//! nothing.

mod lang;
pub mod project;
pub mod scaffold;
mod template;

pub use lang::Lang;
