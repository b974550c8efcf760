fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let opts = planner::PlanOptions::new(n);
    let t = std::time::Instant::now();
    let r = planner::plan(&opts, |_, _| {}).unwrap();
    eprintln!("ran in {:?}", t.elapsed());
    print!("{}", r.text());
    std::fs::write("/tmp/plan.svg", planner::chart::svg(&r).unwrap()).unwrap();
}
