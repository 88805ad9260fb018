//! The guest's signal state, emulated: dispositions, mask and alternate stack are kept here and
//! never installed in trapbox (invariant 4). Signals the guest sends itself take their default
//! action, as the kernel would with no handler installed. Running guest handlers (signal frames)
//! is not implemented yet: a self-signal whose disposition is a handler is reported and takes
//! the default action.

/// Highest signal number.
pub const NSIG: usize = 64;

/// Kernel `struct sigaction` for x86-64 rt_sigaction (handler, flags, restorer, mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// SIG_DFL (0), SIG_IGN (1) or a handler address.
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// sa_mask.
    pub mask: u64,
}

impl SigAction {
    /// Decodes the kernel layout.
    pub fn from_bytes(b: &[u8; 32]) -> SigAction {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SigAction { handler: w(0), flags: w(1), restorer: w(2), mask: w(3) }
    }

    /// Encodes the kernel layout.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [self.handler, self.flags, self.restorer, self.mask].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// What a signal does by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminate (possibly with a core dump).
    Terminate,
    /// Ignore.
    Ignore,
    /// Stop the process (not emulated: treated as ignore with a warning).
    Stop,
}

/// The default action of `sig` (signal(7)).
pub fn default_action(sig: i32) -> DefaultAction {
    match sig {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH | libc::SIGCONT => DefaultAction::Ignore,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => DefaultAction::Stop,
        _ => DefaultAction::Terminate,
    }
}

/// What delivering a signal to the guest comes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing happens (ignored or blocked).
    Nothing,
    /// The guest dies of the signal.
    Kill(i32),
    /// The guest installed a handler, which trapbox cannot run yet.
    HandlerUnsupported(i32),
}

/// Dispositions, mask and alternate stack.
#[derive(Clone, Debug)]
pub struct SignalState {
    actions: [SigAction; NSIG + 1],
    /// Blocked signals (bit N-1 for signal N).
    pub mask: u64,
    /// sigaltstack's stack_t, raw.
    pub altstack: [u8; 24],
}

impl Default for SignalState {
    fn default() -> Self {
        let mut altstack = [0u8; 24];
        altstack[8..12].copy_from_slice(&(libc::SS_DISABLE as u32).to_le_bytes());
        SignalState { actions: [SigAction::default(); NSIG + 1], mask: 0, altstack }
    }
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

impl SignalState {
    /// The disposition of `sig`.
    pub fn action(&self, sig: i32) -> Option<SigAction> {
        self.actions.get(usize::try_from(sig).ok()?).copied()
    }

    /// rt_sigaction's core: validates and swaps the disposition.
    pub fn set_action(&mut self, sig: i32, new: Option<SigAction>) -> Result<SigAction, i32> {
        if !(1..=NSIG as i32).contains(&sig) {
            return Err(libc::EINVAL);
        }
        if new.is_some() && (sig == libc::SIGKILL || sig == libc::SIGSTOP) {
            return Err(libc::EINVAL);
        }
        let old = self.actions[sig as usize];
        if let Some(n) = new {
            self.actions[sig as usize] = n;
        }
        Ok(old)
    }

    /// What execve does to signal state: handlers go back to the default (ignored signals
    /// stay ignored), the alternate stack is dropped, the mask is kept.
    pub fn reset_for_exec(&mut self) {
        for a in self.actions.iter_mut() {
            let ignored = a.handler == 1;
            *a = SigAction { handler: u64::from(ignored), ..SigAction::default() };
        }
        *self = SignalState { actions: self.actions, mask: self.mask, ..SignalState::default() };
    }

    /// rt_sigprocmask's core.
    pub fn set_mask(&mut self, how: i32, set: Option<u64>) -> Result<u64, i32> {
        let old = self.mask;
        if let Some(s) = set {
            self.mask = match how {
                libc::SIG_BLOCK => old | s,
                libc::SIG_UNBLOCK => old & !s,
                libc::SIG_SETMASK => s,
                _ => return Err(libc::EINVAL),
            } & !(bit(libc::SIGKILL) | bit(libc::SIGSTOP));
        }
        Ok(old)
    }

    /// What sending `sig` to the guest itself does.
    pub fn deliver(&self, sig: i32) -> Delivery {
        if sig == libc::SIGKILL {
            return Delivery::Kill(sig);
        }
        if self.mask & bit(sig) != 0 {
            return Delivery::Nothing;
        }
        match self.actions[sig as usize].handler {
            0 => match default_action(sig) {
                DefaultAction::Terminate => Delivery::Kill(sig),
                DefaultAction::Ignore | DefaultAction::Stop => Delivery::Nothing,
            },
            1 => Delivery::Nothing,
            _ => Delivery::HandlerUnsupported(sig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_action_rejects_kill_and_range() {
        let mut s = SignalState::default();
        assert_eq!(s.set_action(0, None), Err(libc::EINVAL));
        assert_eq!(s.set_action(65, None), Err(libc::EINVAL));
        assert_eq!(s.set_action(libc::SIGKILL, Some(SigAction::default())), Err(libc::EINVAL));
        let h = SigAction { handler: 0x401000, flags: 4, restorer: 0, mask: 0 };
        assert_eq!(s.set_action(libc::SIGINT, Some(h)), Ok(SigAction::default()));
        assert_eq!(s.action(libc::SIGINT), Some(h));
    }

    #[test]
    fn deliver_follows_disposition_and_mask() {
        let mut s = SignalState::default();
        assert_eq!(s.deliver(libc::SIGABRT), Delivery::Kill(libc::SIGABRT));
        assert_eq!(s.deliver(libc::SIGCHLD), Delivery::Nothing);
        s.set_action(libc::SIGTERM, Some(SigAction { handler: 1, ..Default::default() })).unwrap();
        assert_eq!(s.deliver(libc::SIGTERM), Delivery::Nothing);
        s.set_mask(libc::SIG_BLOCK, Some(bit(libc::SIGUSR1))).unwrap();
        assert_eq!(s.deliver(libc::SIGUSR1), Delivery::Nothing);
        s.set_mask(libc::SIG_BLOCK, Some(bit(libc::SIGKILL))).unwrap();
        assert_eq!(s.deliver(libc::SIGKILL), Delivery::Kill(libc::SIGKILL));
    }

    #[test]
    fn sigaction_bytes_roundtrip() {
        let a = SigAction { handler: 1, flags: 2, restorer: 3, mask: 4 };
        assert_eq!(SigAction::from_bytes(&a.to_bytes()), a);
    }
}
