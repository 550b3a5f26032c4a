//! AFL++ harness for the `image` target (see `usermgmt_fuzz::image`). Build and run
//! it with `fuzz/run.sh image <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::image::run(data));
}
