//! `fleetcert simulate` without the CLI (and so without the AWS SDK in
//! the build): for profiling the emulator and the agents in a release
//! build that compiles in a minute.
//!
//! ```sh
//! cargo run -p harness --release --example simulate -- 2000 [child]
//! ```

use std::time::Duration;

use harness::simulate::{AgentHost, Options, agents_child_main, simulate};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("simulate-agents") {
        return runtime.block_on(agents_child_main(&args[1..]));
    }
    harness::log_to_stderr("error");
    let devices = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let agent_host = if args.get(1).map(String::as_str) == Some("child") {
        AgentHost::Child {
            program: std::env::current_exe()?,
            args: vec!["simulate-agents".to_owned()],
        }
    } else {
        AgentHost::InProcess
    };
    let opts = Options {
        devices,
        agent_host,
        timeout: Duration::from_secs(600),
        progress: std::env::var_os("PROGRESS").is_some(),
        max_open_rotations: std::env::var("WINDOW")
            .ok()
            .and_then(|w| w.parse().ok())
            .map_or(
                Some(harness::simulate::DEFAULT_MAX_OPEN_ROTATIONS),
                |w: usize| (w > 0).then_some(w),
            ),
        ..Options::default()
    };
    let report = runtime.block_on(simulate(&opts))?;
    print!("{}", report.render());
    Ok(())
}
