//! The usermgmt back end as a library, so that the binary, the integration tests
//! and the seeding tool share one implementation.

pub mod password;
