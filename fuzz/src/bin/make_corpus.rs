//! Writes the generated seed corpus to `corpus/<target>/` (the image seeds are
//! real files kept as they are). Run from `fuzz/`: `cargo run --bin make-corpus`.

use std::fs;
use std::path::Path;

use usermgmt_fuzz::seeds;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let sets = [
        ("frame", seeds::frames()),
        ("http", seeds::http()),
        ("multipart", seeds::multipart()),
        ("chunked", seeds::chunked()),
        ("proxy", seeds::proxy()),
    ];
    for (target, seeds) in sets {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            fs::write(dir.join(&name), bytes)?;
        }
        println!("{}: written", dir.display());
    }
    Ok(())
}
