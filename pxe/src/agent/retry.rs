//! Retrying a boot step with exponential backoff, one console line per
//! failed attempt, so a serial log shows every try and why it failed.

use std::io::Write;
use std::time::Duration;

use super::init::{Console, chain};

/// How often and how patiently a step is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The pause after the first failure; doubled after each next one.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// The pause after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// The outcome of one failed attempt.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth another try (network, server busy, a transfer cut short).
    Retry(E),
    /// Another try cannot help (a refusal): stop now.
    Final(E),
}

/// Runs `step` until it succeeds, fails finally, or the attempts run out;
/// returns the last error. `sleep` pauses (the real clock on a node).
pub fn retry<T, E: std::error::Error, W: Write>(
    backoff: Backoff,
    what: &str,
    console: &mut Console<W>,
    sleep: &mut dyn FnMut(Duration),
    mut step: impl FnMut(&mut Console<W>, u32) -> Result<T, Failure<E>>,
) -> Result<T, E> {
    let attempts = backoff.attempts.max(1);
    let mut attempt = 1;
    loop {
        match step(console, attempt) {
            Ok(value) => return Ok(value),
            Err(Failure::Final(err)) => {
                console.line(format_args!("{what} FAILED: {}", chain(&err)));
                return Err(err);
            }
            Err(Failure::Retry(err)) if attempt >= attempts => {
                console.line(format_args!(
                    "{what} FAILED (attempt {attempt}/{attempts}, giving up): {}",
                    chain(&err)
                ));
                return Err(err);
            }
            Err(Failure::Retry(err)) => {
                let pause = backoff.delay(attempt);
                console.line(format_args!(
                    "{what} failed (attempt {attempt}/{attempts}, next in {} s): {}",
                    pause.as_secs_f32(),
                    chain(&err)
                ));
                sleep(pause);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("try {0}")]
    struct Oops(u32);

    fn backoff() -> Backoff {
        Backoff {
            attempts: 4,
            first: Duration::from_secs(1),
            max: Duration::from_secs(3),
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_lines_name_each_attempt() {
        let mut console = Console::new(Vec::new());
        let mut pauses = Vec::new();
        let result: Result<(), Oops> = retry(
            backoff(),
            "fetching",
            &mut console,
            &mut |d| pauses.push(d.as_secs()),
            |_, n| Err(Failure::Retry(Oops(n))),
        );
        assert_eq!(result.unwrap_err().0, 4);
        assert_eq!(pauses, [1, 2, 3]);
        let text = String::from_utf8(console.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ironrack agent: fetching failed (attempt 1/4, next in 1 s): try 1",
                "ironrack agent: fetching failed (attempt 2/4, next in 2 s): try 2",
                "ironrack agent: fetching failed (attempt 3/4, next in 3 s): try 3",
                "ironrack agent: fetching FAILED (attempt 4/4, giving up): try 4",
            ]
        );
    }

    #[test]
    fn a_final_failure_stops_at_once_and_success_returns() {
        let mut console = Console::new(Vec::new());
        let mut slept = 0;
        let result: Result<u32, Oops> = retry(
            backoff(),
            "attesting",
            &mut console,
            &mut |_| slept += 1,
            |_, n| {
                if n == 2 {
                    Err(Failure::Final(Oops(n)))
                } else {
                    Err(Failure::Retry(Oops(n)))
                }
            },
        );
        assert_eq!(result.unwrap_err().0, 2);
        assert_eq!(slept, 1);
        let text = String::from_utf8(console.into_inner()).unwrap();
        assert!(
            text.ends_with("ironrack agent: attesting FAILED: try 2\n"),
            "{text}"
        );
        let mut console = Console::new(Vec::new());
        let ok: Result<u32, Oops> =
            retry(backoff(), "x", &mut console, &mut |_| {}, |_, n| Ok(n * 10));
        assert_eq!(ok.unwrap(), 10);
    }
}
