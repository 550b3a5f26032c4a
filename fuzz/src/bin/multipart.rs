//! AFL++ harness for the `multipart` target (see `usermgmt_fuzz::multipart`). Build and run
//! it with `fuzz/run.sh multipart <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::multipart::run(data));
}
