//! Output for programs: JSON lines on stdout, one object per event (and
//! one for `plugin inspect`'s result).

use super::out::outln;
use serde_json::json;
use stepback::events::{Envelope, EventSink};
use stepback::plugin::PluginInfo;
use stepback::sandbox::Plugin;

pub struct Reporter;

impl EventSink for Reporter {
    fn emit(&self, envelope: Envelope) {
        let line = serde_json::to_string(&envelope).expect("events serialize");
        outln!("{line}");
    }
}

pub fn print_inspection(plugin: &Plugin, info: &PluginInfo, imports: &[String], exports: &[String]) {
    let value = json!({
        "plugin": plugin.label,
        "sha256": plugin.sha256,
        "info": info,
        "imports": imports,
        "exports": exports,
    });
    outln!(
        "{}",
        serde_json::to_string(&value).expect("inspection serializes")
    );
}
