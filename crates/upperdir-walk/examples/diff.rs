//! Times the upperdir diff of an upperdir over a base directory:
//! `cargo run --release -p upperdir-walk --example diff -- UPPER BASE [THREADS] [REPEAT]`.
//! Prints the stats and the best wall time; with `PRINT=1` also every change line.

use std::time::Instant;

use fs_change::{Change, ChangeSink, SinkError};
use upperdir_walk::{open_base, open_upper, OverlayDiff};

#[derive(Debug, Default)]
struct Sink {
    print: bool,
    n: u64,
}

impl ChangeSink for Sink {
    fn push(&mut self, change: Change) -> Result<(), SinkError> {
        self.n += 1;
        if self.print {
            println!("{}", change.line());
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [upper, base, rest @ ..] = args.as_slice() else {
        eprintln!("usage: diff UPPER BASE [THREADS] [REPEAT]");
        std::process::exit(2);
    };
    let threads: usize = rest.first().map_or(Ok(1), |s| s.parse())?;
    let repeat: usize = rest.get(1).map_or(Ok(1), |s| s.parse())?;
    let metacopy = std::env::var_os("NO_METACOPY").is_none();
    let (upper, base) = (open_upper(upper)?, open_base(base)?);
    let mut best = f64::MAX;
    for i in 0..repeat {
        let mut sink = Sink {
            print: i == 0 && std::env::var_os("PRINT").is_some(),
            n: 0,
        };
        let t = Instant::now();
        let stats = OverlayDiff::new(&upper, &base)
            .threads(threads)
            .metacopy(metacopy)
            .run(&mut sink)?;
        best = best.min(t.elapsed().as_secs_f64());
        if i == 0 {
            eprintln!("{stats:?}");
        }
    }
    eprintln!("best of {repeat}: {:.2} ms", best * 1e3);
    Ok(())
}
