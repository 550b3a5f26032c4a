//! AFL++ harness for the `proxy` target (see `usermgmt_fuzz::proxy`). Build and run
//! it with `fuzz/run.sh proxy <seconds>`.

fn main() {
    afl::fuzz!(|data: &[u8]| usermgmt_fuzz::proxy::run(data));
}
