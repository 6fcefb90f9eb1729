use conclave_core::ElectionMode;
use conclave_sim::model_check::{check, CheckOptions};

#[test]
fn explore() {
    let depth: usize = std::env::var("MC_DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(6);
    let mode: ElectionMode = std::env::var("MC_MODE").ok().map(|m| m.parse().unwrap()).unwrap_or(ElectionMode::Raft);
    let mut options = CheckOptions::new(mode, 3, depth);
    if std::env::var("MC_NODROP").is_ok() {
        options.drop_action = false;
    }
    if std::env::var("MC_NOADV").is_ok() {
        options.advance_action = false;
    }
    if std::env::var("MC_CONSUME").is_ok() {
        options.consuming_delivery = true;
    }
    match std::env::var("MC_BUG").as_deref() {
        Ok("vote") => {
            options.config_hook = Some(|c| c.injected_bug = Some(conclave_core::InjectedBug::VoteMoreThanOncePerTerm))
        }
        Ok("vote_noprevote") => {
            options.config_hook = Some(|c| {
                c.pre_vote = false;
                c.injected_bug = Some(conclave_core::InjectedBug::VoteMoreThanOncePerTerm)
            })
        }
        Ok("uptodate") => {
            options.config_hook = Some(|c| c.injected_bug = Some(conclave_core::InjectedBug::SkipUpToDateCheck))
        }
        Ok("uptodate_noprevote") => {
            options.config_hook = Some(|c| {
                c.pre_vote = false;
                c.injected_bug = Some(conclave_core::InjectedBug::SkipUpToDateCheck)
            })
        }
        Ok("commit") => {
            options.config_hook = Some(|c| c.injected_bug = Some(conclave_core::InjectedBug::CommitPreviousTermEntries))
        }
        _ => {}
    }
    if let Ok(c) = std::env::var("MC_CRASH") {
        options.max_crashes = c.parse().unwrap();
    }
    if let Ok(c) = std::env::var("MC_PROP") {
        options.max_proposals = c.parse().unwrap();
    }
    let report = check(options).unwrap();
    println!("{}", report.to_text());
    println!("{:?}", report.states_per_depth);
}
