//! The states of a scan-to-log-in code, as both servers name them.
//!
//! A code moves `Pending -> Scanned -> Confirmed | Denied` (a phone may also
//! approve or deny straight from `Pending`), and `Confirmed -> Consumed` when
//! the desktop that holds its binding secret redeems it for a session.
//! `Expired` is what a code no longer in Redis looks like. tcpserver makes
//! every move in one atomic Redis step; these numbers only travel on the wire.

/// Where a scan-to-log-in code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum QrState {
    /// Shown on the desktop, not scanned yet.
    Pending = 0,
    /// A logged-in phone opened it; waiting for Approve or Deny.
    Scanned = 1,
    /// The phone approved: the desktop may redeem it once.
    Confirmed = 2,
    /// The phone refused it.
    Denied = 3,
    /// Past its lifetime (or never existed).
    Expired = 4,
    /// Redeemed for a session: it can do nothing more.
    Consumed = 5,
}

impl QrState {
    /// The state for a wire byte, or `None` if no state has that number.
    pub fn from_u8(b: u8) -> Option<QrState> {
        Some(match b {
            0 => QrState::Pending,
            1 => QrState::Scanned,
            2 => QrState::Confirmed,
            3 => QrState::Denied,
            4 => QrState::Expired,
            5 => QrState::Consumed,
            _ => return None,
        })
    }

    /// The state's name, as Redis stores it and the HTTP API shows it.
    pub fn name(self) -> &'static str {
        match self {
            QrState::Pending => "pending",
            QrState::Scanned => "scanned",
            QrState::Confirmed => "confirmed",
            QrState::Denied => "denied",
            QrState::Expired => "expired",
            QrState::Consumed => "consumed",
        }
    }

    /// The state a Redis value names; an unknown one reads as `Expired`
    /// (nothing can be done with it).
    pub fn from_name(name: &str) -> QrState {
        match name {
            "pending" => QrState::Pending,
            "scanned" => QrState::Scanned,
            "confirmed" => QrState::Confirmed,
            "denied" => QrState::Denied,
            "consumed" => QrState::Consumed,
            _ => QrState::Expired,
        }
    }

    /// True once nothing can change the code any more.
    pub fn is_final(self) -> bool {
        matches!(self, QrState::Denied | QrState::Expired | QrState::Consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_survives_its_byte_and_its_name() {
        for b in 0..=5 {
            let state = QrState::from_u8(b).unwrap();
            assert_eq!(state as u8, b);
            assert_eq!(QrState::from_name(state.name()), state);
        }
        assert_eq!(QrState::from_u8(6), None);
        assert_eq!(QrState::from_name("garbage"), QrState::Expired);
    }
}
