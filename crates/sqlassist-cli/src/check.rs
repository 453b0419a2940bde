//! `sqlassist check SETTINGS`.

use sqlassist::{check_setup, CheckOutcome};

use crate::{fail, SettingsArgs, CLEAN, OPERATOR};

/// Runs every check; exit 0 when all pass, 2 when one warns or fails, 3 when the settings
/// cannot be read.
pub(crate) fn run(args: &SettingsArgs, json: bool) -> u8 {
    let (settings, registry) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return fail("cannot read the settings", &e),
    };
    eprintln!("checking {} engine(s)", registry.names().count());
    let report = check_setup(&registry, &settings);
    if json {
        let items: Vec<serde_json::Value> = report
            .items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "subject": i.subject,
                    "check": i.check,
                    "outcome": i.outcome.as_str(),
                    "detail": i.detail,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "outcome": report.worst().as_str(),
                "items": items,
            })
        );
    } else {
        for item in &report.items {
            println!("{item}");
        }
    }
    match report.worst() {
        CheckOutcome::Pass => CLEAN,
        _ => OPERATOR,
    }
}
