//! AFL++ harness for the `http` target (see `usermgmt_fuzz::http`). Build and run
//! it with `fuzz/run.sh http <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::http::run(data));
}
