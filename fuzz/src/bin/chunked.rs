//! AFL++ harness for the `chunked` target (see `usermgmt_fuzz::chunked`). Build and run
//! it with `fuzz/run.sh chunked <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::chunked::run(data));
}
