//! AFL++ harness for the `frame` target (see `usermgmt_fuzz::frame`). Build and run
//! it with `fuzz/run.sh frame <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::frame::run(data));
}
