//! Finding a step's component and compiling it once.
//!
//! A plugin is named in a flow by `uses`: `builtin:NAME` for the plugins
//! shipped inside this binary, or a path to a component `.wasm`. Only
//! components are accepted: a core (preview 1) module would reach the disk
//! through interfaces the host does not mediate.

pub mod builtin;
mod cache;
pub mod defaults;
mod imports;
mod info;
mod source;
mod stamp;

pub use cache::{CacheEntry, CacheOutcome, CompiledCache, DEFAULT_CACHE_LIMIT};
pub use imports::{Interfaces, component_imports, component_interfaces};
pub use info::{MountNeed, Needs, PluginInfo};
pub use source::PluginSource;
pub use stamp::FileStamp;
