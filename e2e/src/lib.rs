//! End-to-end tests of usermgmt; everything is in `tests/`. The tests spawn the
//! real `tcpserver` and `httpserver` binaries, which they build on first use.
