//! The planner's benchmark (BENCHMARKS.md): plans N always-online devices
//! at the default configuration and prints the wall time, the peak memory
//! (VmHWM) and the figures the floors are about.
//!
//! `cargo run --release -p planner --example bench -- 1000000 [--split-quotas]`

use std::time::Instant;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let devices = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000u64);
    let mut options = planner::PlanOptions::new(devices);
    options.split_quotas = args.iter().any(|a| a == "--split-quotas");
    let started = Instant::now();
    let report = match planner::plan(&options, |_, _| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let wall = started.elapsed();
    println!("devices                  {devices}");
    println!("split quotas             {}", options.split_quotas);
    println!("wall                     {:.1} s", wall.as_secs_f64());
    println!("peak memory (VmHWM)      {:.0} MiB", peak_rss_mib());
    println!("rotated                  {} of {devices}", report.rotated);
    println!("makespan                 {:.3} h", report.makespan_hours);
    println!(
        "half / 99 % rotated      {:?} / {:?} h",
        report.rotated_p50_hours, report.rotated_p99_hours
    );
    println!(
        "quota bound              {:.3} h ({})",
        report.bound.seconds / 3600.0,
        report.bound.binding
    );
    println!("makespan / bound         {:.3}", report.makespan_over_bound);
    println!(
        "throttled                {} retried, {} failed",
        report.throttled_retried, report.throttled_failed
    );
    println!("peak open rotations      {}", report.peak_open_rotations);
    println!("simulated                {:.1} h", report.simulated_hours);
    println!("cost                     ${:.2}", report.cost_usd);
}
